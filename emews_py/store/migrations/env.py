"""alembic's environment for the store. emews_py.store.engine runs it on a connection it has already
opened and locked (Config.attributes["connection"]), so the migration is part of that transaction;
without one (alembic's own command line) it connects to sqlalchemy.url."""
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from emews_py.store.schema import Base


def _run(connection) -> None:
    # SQLite alters tables by copying them ("batch mode"); elsewhere batch ops are plain ALTERs.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


conn = context.config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:
    eng = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with eng.connect() as c:
        _run(c)
        c.commit()
    eng.dispose()
