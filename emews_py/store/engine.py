"""Opening a store: engines, and bringing a database to the schema this code expects.

``init_db(url)`` creates a new database at the head revision, stamps a database made by release
0.1.0 (tables, no ``alembic_version``) as revision 0001 and upgrades it, and refuses a database
written by a newer release. The migrations ship in this package (``migrations/``) and run through
alembic's own commands with a ``Config`` built here, so users need no alembic.ini.
"""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from emews_py.store.schema import SCHEMA_VERSION, json_dumps

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
RELEASE_0_1_0 = "0001"       # the schema of release 0.1.0, which had no alembic_version table
_PG_LOCK_KEY = 720931        # any fixed key: serializes schema changes on one PostgreSQL database


class SchemaTooNew(RuntimeError):
    """The database was written by a newer emews-py than this one."""


BUSY_TIMEOUT = 30           # seconds an SQLite connection waits for another's write lock
WRITER_BUSY_TIMEOUT = 1.0   # ... rank 0's Writer: it must not stall the farm; it retries instead
PG_CONNECT_TIMEOUT = 10     # seconds: an unreachable PostgreSQL server is reported, not waited on
WRITER_CONNECT_TIMEOUT = 3  # ... rank 0's Writer, which retries with back-off (libpq's minimum: 2)
# rank 0's Writer on PostgreSQL: a server that vanished without closing the connection (host down,
# network cut) is noticed within ~30 s instead of the kernel's ~15 min of TCP retransmissions.
WRITER_LIBPQ_ARGS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                     "keepalives_count": 3, "tcp_user_timeout": 30_000}


def _sqlite_engine(url: str, foreign_keys: bool, busy_timeout: float = BUSY_TIMEOUT, **kw) -> Engine:
    eng = create_engine(url, connect_args={"timeout": busy_timeout}, json_serializer=json_dumps, **kw)

    @event.listens_for(eng, "connect")
    def _pragmas(conn, _):  # WAL lets readers (users' SQL) run while rank 0 writes
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Off only while migrating: SQLite's batch mode copies and drops tables that others
        # reference, and the pragma cannot change inside the transaction that does it.
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()
        conn.isolation_level = None  # transactions are begun below, not by pysqlite

    @event.listens_for(eng, "begin")
    def _begin(conn):  # take the write lock up front (see Writer.add_trials and init_db)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    return eng


def _connect_args(url: str, writer: bool = False) -> dict:
    """A connect timeout for PostgreSQL (unless the URL sets its own connect_timeout); for the
    Writer's engine a shorter one and TCP keepalives (libpq drivers only; the URL's own win)."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        return {}
    args = {"connect_timeout": WRITER_CONNECT_TIMEOUT if writer else PG_CONNECT_TIMEOUT}
    if writer and u.get_driver_name() in ("psycopg2", "psycopg"):
        args.update(WRITER_LIBPQ_ARGS)
    return {k: v for k, v in args.items() if k not in u.query}


def make_engine(url: str, writer: bool = False) -> Engine:
    """An engine for the store at ``url``. ``writer``: the engine of rank 0's Writer, which
    retries with back-off while the store is away, so it waits little on each attempt (SQLite
    lock: WRITER_BUSY_TIMEOUT; PostgreSQL connect: WRITER_CONNECT_TIMEOUT); other callers (the
    CLI's `emews sql`, migrations) wait BUSY_TIMEOUT / PG_CONNECT_TIMEOUT."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, foreign_keys=True,
                              busy_timeout=WRITER_BUSY_TIMEOUT if writer else BUSY_TIMEOUT)
    # pool_pre_ping: a pooled connection that a server restart closed is replaced at checkout
    return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps,
                         connect_args=_connect_args(url, writer))


def alembic_config(connection: Connection | None = None):
    """alembic's Config for the shipped migrations, run on ``connection`` (inside its transaction)."""
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    return cfg


def _read_version(c: Connection) -> tuple[str | None, bool]:
    """(revision, whether alembic_version records it). A store made by release 0.1.0 has the
    tables but no alembic_version: it is RELEASE_0_1_0, unrecorded. An empty database: None."""
    from alembic.runtime.migration import MigrationContext
    heads = MigrationContext.configure(c).get_current_heads()
    if heads:
        return heads[0], True
    return (RELEASE_0_1_0 if inspect(c).has_table("experiments") else None), False


def current_version(c: Connection) -> str | None:
    """The database's schema revision (see _read_version)."""
    return _read_version(c)[0]


def _migrate(c: Connection, url: str, target: str, downgrade: bool) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    cfg = alembic_config(c)
    have, recorded = _read_version(c)
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    if have is not None and have not in known:
        shown = make_url(url).render_as_string(hide_password=True)
        raise SchemaTooNew(
            f"The store {shown} has schema version {have}, which this emews-py does not know (it "
            f"knows versions up to {SCHEMA_VERSION}): a newer release of emews-py wrote to it. "
            f"Upgrade emews-py where you run this (git pull, then `make setup`; or `pip install "
            f"-U emews-py`), or give this run a database of its own with DB=URL / --db URL. The "
            f"database was not changed.")
    if have is not None and not recorded:
        command.stamp(cfg, have)  # 0.1.0 made these tables; alembic takes over from here
    if downgrade:
        command.downgrade(cfg, target)
    else:
        command.upgrade(cfg, target)


def _locked(eng: Engine, url: str, work) -> None:
    """Run ``work(connection)`` in one transaction that holds the schema lock. Experiments started
    together against a fresh database race to create it: on PostgreSQL an advisory lock
    serializes them; on SQLite BEGIN IMMEDIATE does, and we retry if the wait ran out."""
    for attempt in range(5):
        try:
            with eng.begin() as c:
                if eng.dialect.name == "postgresql":
                    c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                work(c)
            return
        except DBAPIError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))


def _migration_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, foreign_keys=False, poolclass=NullPool)
    return create_engine(url, poolclass=NullPool, connect_args=_connect_args(url))


def migrate(url: str, target: str = "head", downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the database at ``url`` to revision ``target``."""
    eng = _migration_engine(url)
    try:
        _locked(eng, url, lambda c: _migrate(c, url, target, downgrade))
    finally:
        eng.dispose()


def schema_version(url_or_engine: str | Engine) -> str | None:
    eng = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with eng.connect() as c:
            return current_version(c)
    finally:
        if isinstance(url_or_engine, str):
            eng.dispose()


def init_db(url: str, writer: bool = False) -> Engine:
    """The engine for the store at ``url``, its schema brought to SCHEMA_VERSION first.
    ``writer``: for rank 0's Writer (short waits, see make_engine)."""
    eng = make_engine(url, writer)
    with eng.connect() as c:  # the usual case, a database at head: no migration scripts loaded
        have = current_version(c)
        c.rollback()
    if have != SCHEMA_VERSION:
        migrate(url)
    return eng


class StoreUnavailable(RuntimeError):
    """The store cannot be opened; the message is one paragraph naming DB, the URL and the fix."""


def shown_url(url: str) -> str:
    """``url`` with its password hidden (also when it is not a valid SQLAlchemy URL)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: hide anything that looks like user:password@
        import re
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def check_store(url: str) -> None:
    """Open the store at ``url`` once (``init_db``: the schema is created or upgraded) and close
    it, or raise StoreUnavailable with one paragraph that names DB, the URL and the fix."""
    try:
        init_db(url).dispose()
    except Exception as e:  # noqa: BLE001 - open_error picks the ones that mean "cannot open"
        why = open_error(url, e)
        if why is None:
            raise
        raise StoreUnavailable(why) from None


def open_error(url: str, e: BaseException) -> str | None:
    """The paragraph for ``e``, raised while opening the store at ``url``: it names DB, the URL
    (password hidden) and the fix. None when ``e`` is not about opening the store."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
    where = f"DB={shown_url(url)}"
    if isinstance(e, SchemaTooNew):
        why = str(e)
    elif isinstance(e, (ArgumentError, NoSuchModuleError)):
        why = (f"{where} is not a database URL this emews-py can open ({e}). DB must be a "
               f"SQLAlchemy URL, e.g. sqlite:////abs/path/emews.db (four slashes for an absolute "
               f"path), sqlite:///relative/emews.db or postgresql://user@host/dbname.")
    elif isinstance(e, ImportError):
        why = (f"{where}: the Python driver for this database is not installed ({e}). Run "
               f"`make setup` (PostgreSQL URLs use psycopg 3: `pip install 'psycopg[binary]'`), "
               f"or write the driver into the URL, e.g. postgresql+psycopg2://user@host/dbname.")
    elif isinstance(e, (SQLAlchemyError, OSError)):
        cause = " ".join(str(getattr(e, "orig", None) or e).split())
        if url.startswith("sqlite"):
            db = make_url(url).database or ""
            folder = str(Path(db).parent.resolve()) if db else "."
            why = (f"{where}: the SQLite store cannot be opened or written ({cause}). Check that "
                   f"the directory {folder} exists and is writable by you and that the file is a "
                   f"database, or give DB another path (e.g. DB=sqlite:////home/me/runs/emews.db).")
        else:
            u = make_url(url)
            why = (f"{where}: the database server cannot be reached or refused the connection "
                   f"({cause}). Check that the server at {u.host or 'localhost'}:"
                   f"{u.port or 'default port'} is running and reachable from here (connections "
                   f"time out after {PG_CONNECT_TIMEOUT} s), that database '{u.database}' exists "
                   f"and that user '{u.username}' may connect and create tables there; or give DB "
                   f"another URL.")
    else:
        return None
    return f"the store cannot be opened, nothing was started: {why}"
