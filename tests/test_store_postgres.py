"""The metadata store on a real PostgreSQL server, with SQLite for parity, through whole runs.

Each test runs `emews workflow` as a user would (a subprocess: mpiexec, R or Python optimizer,
resident workers) and then checks the store with plain SQL, the way users read it
(docs/store.md). The PostgreSQL server is a throwaway one (tests/pg_server.py, fixture
``postgres_url`` in conftest.py); every test gets its own fresh database on it. Without the
PostgreSQL binaries the PostgreSQL cases fail and say to run `make setup`. The store's own
interface (schema versions, the writer, end_experiment) is tested in tests/test_store.py.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import query
from pg_server import new_database
from pilots.bench import branin

ROOT = Path(__file__).resolve().parent.parent
EMEWS = ROOT / ".venv" / "bin" / "emews"
if not EMEWS.exists():  # a venv somewhere else: the emews next to this Python
    EMEWS = Path(sys.executable).parent / "emews"
BUDGET = 12


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request, tmp_path):
    """(url, runs_dir, db_arg): a fresh, empty store. PostgreSQL: a new database on the session's
    server. SQLite: no --db at all, so the default runs/emews.db is what gets tested."""
    runs = tmp_path / "runs"
    if request.param == "sqlite":
        return f"sqlite:///{runs / 'emews.db'}", runs, None
    url = new_database(request.getfixturevalue("postgres_url"))
    return url, runs, url


def workflow_cmd(algo: str, runs: Path, db: str | None, exp: str | None = None) -> list[str]:
    cmd = [str(EMEWS), "workflow", "--pilot", "bench", "--algo", algo, "--procs", "3",
           "--budget", str(BUDGET), "--runs", str(runs)]
    if db:
        cmd += ["--db", db]
    if exp:
        cmd += ["--exp", exp]
    return cmd


def experiment_id(out: str) -> int:
    m = re.search(r"\(experiment id (\d+)\)", out)
    assert m, f"no experiment id in the output:\n{out[-3000:]}"
    return int(m.group(1))


def run(algo: str, runs: Path, db: str | None, exp: str | None = None) -> int:
    p = subprocess.run(workflow_cmd(algo, runs, db, exp), capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"emews workflow --algo {algo} failed ({p.returncode}):\n{out[-4000:]}"
    return experiment_id(out)


def sql(url: str, q: str, **params) -> list[dict]:
    return query(None, q, db=url, **params)


def as_dt(v) -> dt.datetime:
    # Plain SQL hands back datetimes on PostgreSQL and ISO text on SQLite.
    return v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)


def as_json(v):
    # A JSON column: already decoded by psycopg2, text on SQLite.
    return v if isinstance(v, (dict, list)) else json.loads(v)


def x1_sql(url: str) -> str:
    """The SQL expression for params' x1 as a number, as docs/store.md shows it."""
    if url.startswith("postgresql"):
        return "CAST(params->>'x1' AS DOUBLE PRECISION)"
    return "json_extract(params, '$.x1')"


def check_experiment(url: str, exp_id: int, algo: str) -> list[int]:
    """Everything one finished bench experiment must have left in the store; returns its trial ids."""
    exps = sql(url, "SELECT * FROM experiments WHERE id = :e", e=exp_id)
    assert len(exps) == 1
    e = exps[0]
    assert (e["status"], e["pilot"], e["algorithm"], e["mode"], e["workers"]) == \
        ("completed", "bench", algo, "resident", 2), e
    assert e["error"] is None
    assert as_json(e["settings"])["max.budget"] == BUDGET
    assert "makeNumericParam" in e["space"]
    e_start, e_end = as_dt(e["started_at"]), as_dt(e["finished_at"])
    assert e_start <= e_end

    rows = sql(url, "SELECT id, experiment_id, params, status, objective, worker, host, "
                    "submitted_at, started_at, finished_at, error FROM trials "
                    "WHERE experiment_id = :e ORDER BY id", e=exp_id)
    assert len(rows) == BUDGET
    host = socket.gethostname()
    for t in rows:
        assert t["status"] == "completed" and t["error"] is None, t
        p = as_json(t["params"])
        assert set(p) == {"x1", "x2"} and -5 <= p["x1"] <= 10 and 0 <= p["x2"] <= 15, p
        assert t["objective"] == pytest.approx(branin(p["x1"], p["x2"]), rel=1e-12), t
        assert t["worker"] in (1, 2), t
        assert t["host"] == host
        sub, st, fin = as_dt(t["submitted_at"]), as_dt(t["started_at"]), as_dt(t["finished_at"])
        assert e_start <= sub <= st <= fin <= e_end, t  # naive UTC, one clock

    # The same facts in SQL, as users would ask them (the timestamp order too: on SQLite the
    # stored text sorts as time does).
    agg = sql(url, f"""SELECT COUNT(*) AS n,
                             SUM(CASE WHEN submitted_at <= started_at AND started_at <= finished_at
                                      THEN 1 ELSE 0 END) AS ordered,
                             MIN(objective) AS best, MIN({x1_sql(url)}) AS min_x1,
                             MIN(worker) AS w_lo, MAX(worker) AS w_hi
                      FROM trials WHERE experiment_id = :e AND status = 'completed'""", e=exp_id)[0]
    assert (agg["n"], agg["ordered"]) == (BUDGET, BUDGET)
    assert 1 <= agg["w_lo"] <= agg["w_hi"] <= 2
    assert agg["min_x1"] == pytest.approx(min(as_json(t["params"])["x1"] for t in rows), rel=1e-12)
    # What the optimizer saw is what the store holds for this experiment (no trial of another).
    final = json.loads(e["final_message"])
    assert final["evaluations"] == BUDGET
    assert final["best.y"] == pytest.approx(agg["best"], rel=1e-12)
    return [t["id"] for t in rows]


def check_schema_types(url: str) -> None:
    """JSON columns are JSON and timestamps naive (docs/store.md says so)."""
    if url.startswith("postgresql"):
        rows = sql(url, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'public'")
        types = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
        json_t, ts_t = "json", "timestamp without time zone"
    else:
        types = {}
        for tbl in ("experiments", "trials", "events", "models"):
            for r in sql(url, f"PRAGMA table_info({tbl})"):
                types[(tbl, r["name"])] = r["type"]
        json_t, ts_t = "JSON", "DATETIME"
    for col in [("experiments", "settings"), ("experiments", "space_json"), ("trials", "params"),
                ("trials", "metrics"), ("events", "metrics")]:
        assert types[col] == json_t, (col, types.get(col))
    for col in [("experiments", "started_at"), ("trials", "submitted_at"), ("events", "at"),
                ("models", "saved_at")]:
        assert types[col] == ts_t, (col, types.get(col))


@pytest.mark.parametrize("algo", ["random", "py_random"])
def test_workflow_run_is_stored(store, algo):
    """(a) R random search and (b) the EQ/Py random search, 12 trials on 2 workers."""
    url, runs, db = store
    exp_id = run(algo, runs, db)
    exps = sql(url, "SELECT id, status FROM experiments")
    assert exps == [{"id": exp_id, "status": "completed"}]
    check_experiment(url, exp_id, algo)
    check_schema_types(url)
    if db is None:
        assert (runs / "emews.db").is_file()  # the default store is RUNS/emews.db


def test_two_experiments_at_once_keep_separate_trials(store):
    """(c) Two experiments started together against one (fresh) database: both create the
    schema, both write, and each keeps exactly its own trials."""
    url, runs, db = store
    procs = {algo: subprocess.Popen(workflow_cmd(algo, runs, db, exp=f"sep-{algo}"), cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for algo in ("random", "py_random")}
    ids = {}
    for algo, p in procs.items():
        out = p.communicate(timeout=120)[0]
        assert p.returncode == 0, f"{algo} failed ({p.returncode}):\n{out[-4000:]}"
        ids[algo] = experiment_id(out)
    assert ids["random"] != ids["py_random"]
    names = {r["id"]: r["name"] for r in sql(url, "SELECT id, name FROM experiments")}
    assert names == {ids["random"]: "sep-random", ids["py_random"]: "sep-py_random"}
    trials = {algo: set(check_experiment(url, ids[algo], algo)) for algo in ids}
    assert not trials["random"] & trials["py_random"]
    per_exp = {r["experiment_id"]: r["n"] for r in sql(
        url, "SELECT experiment_id, COUNT(*) AS n FROM trials GROUP BY experiment_id")}
    assert per_exp == {ids["random"]: BUDGET, ids["py_random"]: BUDGET}
