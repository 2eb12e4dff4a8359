"""The metadata store: experiments, trials, callback events and saved models, in plain SQL tables.

Any SQLAlchemy URL works; SQLite is the embedded default and PostgreSQL the store for clusters.
The schema is public (users write SQL against it) and documented in docs/store.md.

- ``schema``: the tables as this code expects them, ``SCHEMA_VERSION``, the value formats.
- ``engine``: ``make_engine``, and ``init_db``, which brings any database to ``SCHEMA_VERSION``
  through the alembic migrations in ``migrations/``.
- ``writer``: ``Writer``, rank 0's single, batched writer, which rides out a store that is away
  (``StoreAway``, ``is_transient``), and ``import_spill`` for what it could not write.
- ``queries``: ``summary`` and ``end_experiment``.
"""
from emews_py.store.engine import (SchemaTooNew, init_db, make_engine, migrate,  # noqa: F401
                                   schema_version)
from emews_py.store.queries import end_experiment, summary  # noqa: F401
from emews_py.store.schema import (SCHEMA_VERSION, TRIAL_STATUSES, Base, eq_messages,  # noqa: F401
                                   events, experiments, json_dumps, models, segments, trials, ts,
                                   utcnow)
from emews_py.store.writer import StoreAway, Writer, import_spill, is_transient  # noqa: F401
