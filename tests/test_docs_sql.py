"""Every SQL example in docs/store.md runs, on SQLite and on PostgreSQL, against a store filled
by real runs (a Keras pilot for events and models, a bench run where some trials fail)."""
from __future__ import annotations

import re

from sqlalchemy import create_engine, text

from helpers import ROOT, json_space, output, run_workflow

DOC = (ROOT / "docs" / "store.md").read_text()
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC, re.S)


def _fill(tmp_path, db):
    treat = json_space(tmp_path / "treat.json", [
        {"id": "epochs", "type": "discrete", "values": [2]},
        {"id": "learning_rate", "type": "numeric", "lower": 0.001, "upper": 0.01}])
    flaky = json_space(tmp_path / "flaky.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "fail", "type": "logical"},
        {"id": "sleep", "type": "numeric", "lower": 0, "upper": 0.1}])
    for args in (["--pilot", "treat", "--budget", "3", "--space", str(treat)],
                 # a fixed seed: trials that fail are drawn at random, and some must
                 ["--pilot", "bench", "--budget", "10", "--space", str(flaky), "--exp", "flaky",
                  "--settings", '{"seed": 2}']):
        p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "3", *args, db=db, timeout=300)
        assert p.returncode == 0, output(p)


def _run_blocks(url, dialect):
    blocks = [b for b in BLOCKS if dialect in b.splitlines()[0]]
    assert blocks, f"no {dialect} examples in docs/store.md"
    eng = create_engine(url)
    with eng.connect() as c:
        for b in blocks:
            rows = c.execute(text(b.replace(":", r"\:"))).all()
            assert rows, f"example returned no rows on {dialect}:\n{b}"
    eng.dispose()


def test_store_doc_examples_on_sqlite(tmp_path):
    _fill(tmp_path, None)
    _run_blocks(f"sqlite:///{tmp_path / 'emews.db'}", "SQLite")


def test_store_doc_examples_on_postgresql(tmp_path, postgres_url):
    url = postgres_url.rsplit("/", 1)[0] + "/docs_examples"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP DATABASE IF EXISTS docs_examples"))
        c.execute(text("CREATE DATABASE docs_examples"))
    admin.dispose()
    _fill(tmp_path, url)
    _run_blocks(url, "PostgreSQL")
