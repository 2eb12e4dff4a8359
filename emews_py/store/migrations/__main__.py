"""The store's migrations by hand (no alembic.ini needed).

    python -m emews_py.store.migrations current URL
    python -m emews_py.store.migrations upgrade URL [REV]       # default: head
    python -m emews_py.store.migrations downgrade URL REV
    python -m emews_py.store.migrations revision "add trials.segment" [--autogenerate]

``revision`` writes ``versions/NNNN_<message>.py`` numbered after the current head. With
``--autogenerate`` alembic fills it in by comparing emews_py/store/schema.py with a scratch SQLite
database at the current head: edit schema.py first, then review what it wrote.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from emews_py.store import engine
    ap = argparse.ArgumentParser(prog="python -m emews_py.store.migrations",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("current").add_argument("url")
    up = sub.add_parser("upgrade")
    up.add_argument("url")
    up.add_argument("rev", nargs="?", default="head")
    down = sub.add_parser("downgrade")
    down.add_argument("url")
    down.add_argument("rev")
    rev = sub.add_parser("revision")
    rev.add_argument("message")
    rev.add_argument("--autogenerate", action="store_true")
    a = ap.parse_args(argv)

    if a.cmd == "current":
        print(engine.schema_version(a.url))
    elif a.cmd in ("upgrade", "downgrade"):
        engine.migrate(a.url, a.rev, downgrade=a.cmd == "downgrade")
        print(engine.schema_version(a.url))
    else:
        from alembic import command
        from alembic.script import ScriptDirectory
        head = ScriptDirectory.from_config(engine.alembic_config()).get_current_head()
        rev_id = f"{int(head) + 1:04d}"
        with tempfile.TemporaryDirectory() as d:
            url = f"sqlite:///{Path(d) / 'head.db'}"
            engine.migrate(url, head)
            eng = engine.make_engine(url)
            with eng.connect() as c:
                c.rollback()  # alembic's environment begins its own transaction
                command.revision(engine.alembic_config(c), message=a.message, rev_id=rev_id,
                                 autogenerate=a.autogenerate)
            eng.dispose()
        print(f"wrote {engine.MIGRATIONS / 'versions'}/{rev_id}_*.py: review it, set "
              f"SCHEMA_VERSION = {rev_id!r} in emews_py/store/schema.py, document the change in "
              f"docs/store.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
