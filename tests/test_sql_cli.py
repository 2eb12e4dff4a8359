"""`emews sql` reads by default: on SQLite and PostgreSQL a statement that would change the store
fails with a message that says to add --write, and changes nothing; with --write it is committed.
PostgreSQL is reached with the plain `postgresql://` scheme of the README (psycopg 3)."""
from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import create_engine, inspect, text

from emews_py.store import init_db
from helpers import EMEWS, ROOT


def emews_sql(query: str, db: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([EMEWS, "sql", query, "--db", db, *extra], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A store with one experiment and two trials; the URL as a user would write it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'emews.db'}"
    else:
        from pg_server import new_database
        url = new_database(request.getfixturevalue("postgres_url"))
        url = url.replace("postgresql+psycopg2://", "postgresql://")  # the README's form
    init_db(url).dispose()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status) "
                       "VALUES ('e1', 'bench', 'random', 'completed')"))
        c.execute(text("INSERT INTO trials (experiment_id, params, status, objective) VALUES "
                       "(1, '{\"x\": 1}', 'completed', 0.5), (1, '{\"x\": 2}', 'completed', 0.25)"))
    eng.dispose()
    yield url


def count(url: str, table: str) -> int:
    eng = create_engine(url)
    with eng.connect() as c:
        n = c.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
    eng.dispose()
    return n


def tables(url: str) -> set[str]:
    eng = create_engine(url)
    names = set(inspect(eng).get_table_names())
    eng.dispose()
    return names


def test_reads_print_tab_separated_rows(store):
    p = emews_sql("SELECT id, objective FROM trials ORDER BY objective", store)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["id\tobjective", "2\t0.25", "1\t0.5"]


@pytest.mark.parametrize("statement, table", [("DROP TABLE events", "events"),
                                              ("DELETE FROM trials", "trials"),
                                              ("UPDATE experiments SET name = 'x'", "experiments")])
def test_changes_are_refused_without_write(store, statement, table):
    before = count(store, table)
    p = emews_sql(statement, store)
    assert p.returncode != 0
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "add --write" in err and "read-only" in err, err
    assert "events" in tables(store) and count(store, table) == before
    assert count(store, "experiments") == 1
    eng = create_engine(store)
    with eng.connect() as c:
        assert c.execute(text("SELECT name FROM experiments")).scalar() == "e1"
    eng.dispose()


def test_write_commits_a_delete_and_a_drop(store):
    p = emews_sql("DELETE FROM trials WHERE objective > 0.3", store, "--write")
    assert p.returncode == 0, p.stderr
    assert count(store, "trials") == 1
    p = emews_sql("DROP TABLE events", store, "--write")
    assert p.returncode == 0, p.stderr
    assert "events" not in tables(store)


def test_a_missing_sqlite_store_is_named_not_created(tmp_path):
    db = tmp_path / "nothing-ran-here.db"
    p = emews_sql("SELECT 1", f"sqlite:///{db}")
    assert p.returncode == 2
    assert str(db) in p.stderr and "does not exist" in p.stderr and "--db" in p.stderr
    assert not db.exists()
