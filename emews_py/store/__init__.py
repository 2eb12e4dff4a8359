"""The metadata store (being split into schema, writer and queries)."""
from emews_py.store.schema import *  # noqa: F401,F403
from emews_py.store.schema import (Base, Writer, _finite, init_db, json_dumps, make_engine,  # noqa: F401
                                   summary, ts, utcnow)
