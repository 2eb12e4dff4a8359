"""The store (emews_py/store/), written once against its interface and run on SQLite and on a real
PostgreSQL server (tests/pg_server.py): schema versions and migrations, the single writer, and
ending an experiment. What is stored is read back with plain SQL, as users read it (docs/store.md).
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from emews_py import store
from emews_py.trials import ExperimentStatus, Result, Trial, TrialStatus
from helpers import query
from pg_server import new_database

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


release_0_1_0 = _load(DATA / "release_0_1_0.py")  # the store as release 0.1.0 wrote it

COLUMNS_0_1_0 = {
    "experiments": ["id", "name", "pilot", "algorithm", "space", "space_json", "settings", "status",
                    "run_dir", "mode", "workers", "started_at", "finished_at", "final_message",
                    "error"],
    "trials": ["id", "experiment_id", "params", "status", "objective", "metrics", "worker", "host",
               "submitted_at", "started_at", "finished_at", "error"],
    "events": ["id", "trial_id", "kind", "epoch", "metrics", "at"],
    "models": ["id", "trial_id", "path", "metric", "saved_at"],
}
INDEXES_0_1_0 = {"ix_trials_experiment": ("trials", ["experiment_id", "status"]),
                 "ix_events_trial": ("events", ["trial_id"])}
# What 0003 added (campaigns: segments, the EQ transcript, heartbeats, attempts).
TABLES_0003 = {
    "segments": ["id", "experiment_id", "number", "run_dir", "host", "pid", "procs", "workers",
                 "started_at", "heartbeat_at", "ended_at", "status", "error"],
    "eq_messages": ["id", "experiment_id", "seq", "direction", "payload", "at"],
}
INDEXES_0003 = {"ix_segments_experiment": ("segments", ["experiment_id", "number"]),
                "ix_eq_messages_experiment": ("eq_messages", ["experiment_id", "seq"])}
ADDED_0003 = {"experiments": "heartbeat_at", "trials": "attempts"}
ADDED_0004 = {"trials": ["gpu", "stopped_epoch"]}   # GPUS_PER_NODE and early stopping


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A URL for a fresh, empty database: a file for SQLite, a new database on the session's
    PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'emews.db'}"
    return new_database(request.getfixturevalue("postgres_url"))


def sql(url: str, q: str, **params) -> list[dict]:
    return query(None, q, db=url, **params)


def dump(url: str) -> dict[str, list[dict]]:
    """Every row of the four tables, as plain SQL returns them."""
    return {t: sql(url, f"SELECT * FROM {t} ORDER BY id") for t in COLUMNS_0_1_0}


def as_json(v):
    return v if isinstance(v, (dict, list)) or v is None else json.loads(v)


def as_dt(v):
    return v if isinstance(v, dt.datetime) or v is None else dt.datetime.fromisoformat(v)


def columns(url: str) -> dict[str, list[str]]:
    """The columns of every table the store has (alembic_version aside)."""
    eng = create_engine(url)
    try:
        insp = inspect(eng)
        return {t: [c["name"] for c in insp.get_columns(t)] for t in insp.get_table_names()
                if t != "alembic_version"}
    finally:
        eng.dispose()


def indexes(url: str) -> dict[str, tuple[str, list[str]]]:
    eng = create_engine(url)
    try:
        insp = inspect(eng)
        return {i["name"]: (t, i["column_names"]) for t in insp.get_table_names()
                for i in insp.get_indexes(t)}
    finally:
        eng.dispose()


def schema_0002() -> tuple[dict, dict]:
    """(columns, indexes) at 0002: 0.1.0's plus experiments.config and events (trial_id, kind)."""
    cols = {t: list(c) for t, c in COLUMNS_0_1_0.items()}
    cols["experiments"].append("config")
    return cols, {**INDEXES_0_1_0, "ix_events_trial_kind": ("events", ["trial_id", "kind"])}


def check_head_schema(url: str) -> None:
    """The schema at SCHEMA_VERSION: 0.1.0's columns (users query them) plus what 0002, 0003 and
    0004 added."""
    assert sql(url, "SELECT version_num FROM alembic_version") == [{"version_num": "0004"}]
    cols, idx = schema_0002()
    for t, c in ADDED_0003.items():
        cols[t].append(c)
    for t, c in ADDED_0004.items():
        cols[t] += c
    assert columns(url) == {**cols, **TABLES_0003}
    assert indexes(url) == {**idx, **INDEXES_0003}


def drop_0003(rows: dict) -> dict:
    """``dump`` rows without the columns 0003 and 0004 added (NULL for rows written before them;
    a dump taken before 0004 lacks its columns)."""
    for t, c in ADDED_0003.items():
        assert all(r.pop(c) is None for r in rows[t])
    for t, cs in ADDED_0004.items():
        assert all(r.pop(c, None) is None for r in rows[t] for c in cs)
    return rows


# ---- schema versions ---------------------------------------------------------------------------

def test_a_new_database_is_created_at_head_and_matches_schema_py(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    assert ScriptDirectory.from_config(store.engine.alembic_config()).get_heads() == \
        [store.SCHEMA_VERSION] == ["0004"]
    eng = store.init_db(url)
    check_head_schema(url)
    assert store.schema_version(eng) == store.SCHEMA_VERSION
    # schema.py (what the code writes) and the migrations (what databases get) agree exactly:
    # an autogenerated revision would be empty.
    with eng.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}),
                                store.Base.metadata)
    assert diff == []
    eng.dispose()
    store.init_db(url).dispose()  # opening it again changes nothing
    check_head_schema(url)


def test_the_migrations_are_installed_with_the_package():
    """They are package modules (found by `packages = find:`), the template is package data."""
    import configparser

    import setuptools
    # What `packages = find:` finds under emews_py/ (walking only that folder, not .venv).
    pkgs = {f"emews_py.{p}" for p in setuptools.find_packages(str(ROOT / "emews_py"))}
    assert {"emews_py.store", "emews_py.store.migrations",
            "emews_py.store.migrations.versions"} <= set(pkgs)
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "script.py.mako" in cfg["options.package_data"]["emews_py.store.migrations"]
    assert "alembic" in cfg["options"]["install_requires"]
    assert (store.engine.MIGRATIONS / "script.py.mako").is_file()
    assert sorted(p.name for p in (store.engine.MIGRATIONS / "versions").glob("0*.py")) == [
        "0001_release_0_1_0.py", "0002_experiment_config_event_kind_index.py",
        "0003_segments_transcript_heartbeat.py", "0004_trial_gpu_stopped_epoch.py"]


def test_a_release_0_1_0_database_file_upgrades_with_no_data_lost(tmp_path):
    """tests/data/emews-0.1.0.db was written by release 0.1.0's own code
    (tests/data/release_0_1_0.py); opening it stamps it 0001 and upgrades it to head."""
    db = tmp_path / "emews.db"
    shutil.copy(DATA / "emews-0.1.0.db", db)
    url = f"sqlite:///{db}"
    assert columns(url) == COLUMNS_0_1_0 and indexes(url) == INDEXES_0_1_0
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()
    before = dump(url)
    # What the release wrote (so this test cannot pass on an empty file).
    assert [len(before[t]) for t in COLUMNS_0_1_0] == [2, 8, 4, 2]
    assert [t["status"] for t in before["trials"]] == [
        "completed", "completed", "failed", "timeout", "cancelled", "queued", "running", "queued"]
    assert as_json(before["trials"][0]["metrics"]) == {"val_loss": 0.5, "acc": None}
    assert before["trials"][2]["error"].endswith("ValueError: bad lr")
    assert as_json(before["events"][1]["metrics"]) == {"loss": 1.5, "val_loss": None}
    assert before["experiments"][1]["status"] == "running"

    eng = store.init_db(url)
    check_head_schema(url)
    after = drop_0003(dump(url))
    assert [e.pop("config") for e in after["experiments"]] == [None, None]
    assert after == before
    rows = sql(url, "PRAGMA foreign_key_check")
    assert rows == []
    # The upgraded store takes new experiments (ids continue) and their config.
    w = store.Writer(eng)
    e = w.create_experiment(name="after", pilot="bench", algorithm="random",
                            config={"budget": 3, "procs": 4})
    (tid,) = w.add_trials(e, [{"x1": 0.5}], submitted=0.0)
    assert (e, tid) == (3, 9)
    assert as_json(sql(url, "SELECT config FROM experiments WHERE id = 3")[0]["config"]) == \
        {"budget": 3, "procs": 4}
    eng.dispose()


def test_a_store_made_by_release_0_1_0_upgrades_on_each_backend(url):
    """The same, with a store the release's code creates here and now (PostgreSQL included)."""
    release_0_1_0.fill(url)
    assert columns(url) == COLUMNS_0_1_0
    before = dump(url)
    assert [len(before[t]) for t in COLUMNS_0_1_0] == [2, 8, 4, 2]
    store.init_db(url).dispose()
    check_head_schema(url)
    after = drop_0003(dump(url))
    assert [e.pop("config") for e in after["experiments"]] == [None, None]
    assert after == before


def test_a_database_newer_than_the_code_is_refused_and_left_alone(url):
    store.init_db(url).dispose()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    eng.dispose()
    with pytest.raises(store.SchemaTooNew) as e:
        store.init_db(url)
    msg = str(e.value)
    assert url.split("://", 1)[1] in msg
    assert "0999" in msg and "newer release" in msg and "--db" in msg and "\n" not in msg
    assert sql(url, "SELECT version_num FROM alembic_version") == [{"version_num": "0999"}]


def test_revision_0002_is_the_one_migration_that_adds_experiments_config(url):
    """Down to 0001 removes config and the events(trial_id, kind) index, keeping every row; up
    again adds them back."""
    eng = store.init_db(url)
    w = store.Writer(eng)
    e = w.create_experiment(name="m", pilot="bench", algorithm="random", config={"procs": 3})
    ids = w.add_trials(e, [{"x1": 1.0}, {"x1": 2.0}], submitted=1.0)
    w.add_events([{"trial_id": ids[0], "kind": "epoch_end", "epoch": 0, "metrics": {"loss": 1.0}}])
    w.add_model(ids[0], "/m/trial.keras", 0.1)
    w.flush()
    eng.dispose()
    before = dump(url)

    store.migrate(url, "0001", downgrade=True)
    assert store.schema_version(url) == "0001"
    assert columns(url) == COLUMNS_0_1_0 and indexes(url) == INDEXES_0_1_0
    after = dump(url)
    drop_0003(before)
    before["experiments"][0].pop("config")
    assert after == before
    if url.startswith("sqlite"):
        assert sql(url, "PRAGMA foreign_key_check") == []

    store.migrate(url)
    check_head_schema(url)
    assert sql(url, "SELECT config FROM experiments") == [{"config": None}]


def test_revision_0003_adds_segments_the_transcript_heartbeats_and_attempts(url):
    """Up from 0002 adds the two tables and two columns, keeping every row (the new columns NULL);
    down to 0002 removes exactly them, keeping every other row; up again works."""
    store.migrate(url, "0002")
    assert store.schema_version(url) == "0002"
    cols, idx = schema_0002()
    assert columns(url) == cols and indexes(url) == idx
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status, config) "
                       "VALUES ('old', 'bench', 'random', 'running', '{\"procs\": 3}')"))
        c.execute(text("INSERT INTO trials (experiment_id, params, status, objective) "
                       "VALUES (1, '{\"x\": 1}', 'completed', 0.5)"))
    eng.dispose()
    before = dump(url)

    store.init_db(url).dispose()   # what any run does: upgrade to head
    check_head_schema(url)
    assert drop_0003(dump(url)) == before
    w = store.Writer(store.init_db(url))
    e = w.create_experiment(name="new", pilot="bench", algorithm="random")
    w.flush()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("UPDATE experiments SET heartbeat_at = :t, status = 'interrupted' "
                       "WHERE id = 1"), {"t": dt.datetime(2026, 11, 29, 13, 0, 5)})
        c.execute(text("UPDATE trials SET attempts = 2 WHERE id = 1"))
        c.execute(text("INSERT INTO segments (experiment_id, number, run_dir, host, pid, procs, "
                       "workers, started_at, heartbeat_at, ended_at, status) VALUES (1, 1, '/r', "
                       "'node1', 42, 4, 3, :a, :b, :b, 'interrupted')"),
                  {"a": dt.datetime(2026, 11, 29, 13), "b": dt.datetime(2026, 11, 29, 13, 0, 5)})
        c.execute(text("INSERT INTO eq_messages (experiment_id, seq, direction, payload, at) "
                       "VALUES (1, 1, 'in', 'Params', :a), (1, 2, 'out', '{\"ids\": []}', :a)"),
                  {"a": dt.datetime(2026, 11, 29, 13)})
    eng.dispose()
    seg = sql(url, "SELECT number, host, procs, status, started_at, ended_at FROM segments")[0]
    assert (seg["number"], seg["host"], seg["procs"], seg["status"]) == (1, "node1", 4, "interrupted")
    assert as_dt(seg["ended_at"]) - as_dt(seg["started_at"]) == dt.timedelta(seconds=5)
    assert [r["direction"] for r in sql(url, "SELECT direction FROM eq_messages ORDER BY seq")] \
        == ["in", "out"]
    assert sql(url, "SELECT attempts FROM trials") == [{"attempts": 2}]

    store.migrate(url, "0002", downgrade=True)
    assert store.schema_version(url) == "0002"
    assert columns(url) == cols and indexes(url) == idx
    after = dump(url)
    assert [x["name"] for x in after["experiments"]] == ["old", "new"] and e == 2
    assert after["trials"] == before["trials"]
    assert after["experiments"][0] == dict(before["experiments"][0], status="interrupted")
    if url.startswith("sqlite"):
        assert sql(url, "PRAGMA foreign_key_check") == []
    store.migrate(url)
    check_head_schema(url)
    assert sql(url, "SELECT COUNT(*) AS n FROM segments") == [{"n": 0}]


def test_revision_0004_adds_trials_gpu_and_stopped_epoch(url):
    """Up from 0003 adds the two columns (NULL for old rows), the writer stores them from the
    trial, and down to 0003 removes exactly them, keeping every row."""
    from emews_py.trials import Result, Trial, TrialStatus
    store.migrate(url, "0003")
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status) "
                       "VALUES ('old', 'bench', 'random', 'completed')"))
        c.execute(text("INSERT INTO trials (experiment_id, params, status, objective, attempts) "
                       "VALUES (1, '{\"x\": 1}', 'completed', 0.5, 1)"))
    eng.dispose()
    before = dump(url)
    eng = store.init_db(url)
    check_head_schema(url)
    assert dump(url)["trials"] == [dict(r, gpu=None, stopped_epoch=None) for r in before["trials"]]
    w = store.Writer(eng)
    e = w.create_experiment(name="new", pilot="bench", algorithm="random")
    a, b = w.add_trials(e, [{"x": 2}, {"x": 3}], submitted=1.0)
    ta, tb = Trial(a, {"x": 2}, 1.0), Trial(b, {"x": 3}, 1.0)
    ta.start(1, "node1", 2.0)
    tb.start(2, "node1", 2.0)
    ta.finish(Result(a, TrialStatus.STOPPED, 2.0, 3.0, 1, "node1", 0.7, {"val_loss": 0.7},
                     gpu="1", stopped_epoch=3))
    tb.finish(Result(b, TrialStatus.COMPLETED, 2.0, 4.0, 2, "node1", 0.2, None, gpu="0"))
    w.trial_changed(ta)
    w.trial_changed(tb)
    assert w.flush()
    eng.dispose()
    assert sql(url, "SELECT id, status, gpu, stopped_epoch, attempts FROM trials ORDER BY id") == [
        {"id": 1, "status": "completed", "gpu": None, "stopped_epoch": None, "attempts": 1},
        {"id": a, "status": "stopped", "gpu": "1", "stopped_epoch": 3, "attempts": 1},
        {"id": b, "status": "completed", "gpu": "0", "stopped_epoch": None, "attempts": 1}]
    store.migrate(url, "0003", downgrade=True)
    assert "gpu" not in columns(url)["trials"] and "stopped_epoch" not in columns(url)["trials"]
    assert [r["status"] for r in sql(url, "SELECT status FROM trials ORDER BY id")] == \
        ["completed", "stopped", "completed"]
    store.migrate(url)
    check_head_schema(url)


def test_experiments_started_together_create_a_fresh_database_once(url):
    """Four processes open the same fresh database at once (as experiments submitted together
    do): all succeed, the schema is made once, and each gets its own experiment."""
    code = textwrap.dedent("""
        import sys
        from emews_py import store
        w = store.Writer(store.init_db(sys.argv[1]))
        print(w.create_experiment(name="together", pilot="bench", algorithm="random"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert sorted(int(o.strip()) for o, _ in outs) == [1, 2, 3, 4]
    check_head_schema(url)


# ---- the writer and the queries --------------------------------------------------------------

def test_writer_records_trial_records_events_and_models(url):
    eng = store.init_db(url)
    w = store.Writer(eng)
    e = w.create_experiment(name="w", pilot="bench", algorithm="random", settings={"seed": 1},
                            status=ExperimentStatus.RUNNING)
    other = w.create_experiment(name="other", pilot="bench", algorithm="random")
    ids = w.add_trials(e, [{"x1": 1.0}, {"x1": 2.0}, {"x1": 3.0}], submitted=1_800_000_000.0)
    ids_other = w.add_trials(other, [{"x1": 9.0}], submitted=1_800_000_000.0)
    assert ids == sorted(ids) and len(set(ids + ids_other)) == 4
    assert w.add_trials(e, [], submitted=1_800_000_000.0) == []

    ok, bad, idle = (Trial(i, {"x1": float(k + 1)}, 1_800_000_000.0) for k, i in enumerate(ids))
    ok.start(1, "node01", 1_800_000_001.0)
    w.trial_changed(ok)
    ok.finish(Result(ok.id, TrialStatus.COMPLETED, 1_800_000_001.0, 1_800_000_002.5, 1, "node01",
                     objective=0.25, metrics={"val_loss": 0.25, "acc": math.nan}))
    w.trial_changed(ok)  # changed twice before a flush: written once, in its last state
    bad.start(2, "node02", 1_800_000_001.0)
    bad.finish(Result(bad.id, TrialStatus.FAILED, 1_800_000_001.0, 1_800_000_003.0, 2, "node02",
                      objective=math.inf, error="Traceback ...\nValueError: x"))
    w.trial_changed(bad)
    w.add_events([{"trial_id": ok.id, "kind": "epoch_end", "epoch": 0,
                   "metrics": {"loss": 1.0}, "at": 1_800_000_002.0}])
    w.add_model(ok.id, "/runs/m/trial.keras", 0.25)
    assert w.dirty
    w.flush()
    assert not w.dirty

    rows = {r["id"]: r for r in sql(url, "SELECT * FROM trials WHERE experiment_id = :e", e=e)}
    r = rows[ok.id]
    assert (r["status"], r["objective"], r["worker"], r["host"], r["error"]) == \
        ("completed", 0.25, 1, "node01", None)
    assert as_json(r["metrics"]) == {"val_loss": 0.25, "acc": None}
    assert as_dt(r["submitted_at"]) == dt.datetime(2027, 1, 15, 8, 0, 0)
    assert as_dt(r["started_at"]) == dt.datetime(2027, 1, 15, 8, 0, 1)
    assert as_dt(r["finished_at"]) == dt.datetime(2027, 1, 15, 8, 0, 2, 500000)
    if url.startswith("sqlite"):  # the text format docs/store.md promises, from both hot paths
        assert (r["submitted_at"], r["finished_at"], r["params"]) == \
            ("2027-01-15 08:00:00.000000", "2027-01-15 08:00:02.500000", '{"x1": 1.0}')
    r = rows[bad.id]
    assert (r["status"], r["objective"], r["worker"], r["error"]) == \
        ("failed", math.inf, 2, "Traceback ...\nValueError: x")   # issue 8: inf stored as such
    assert rows[idle.id]["status"] == "queued" and rows[idle.id]["started_at"] is None
    ev = sql(url, "SELECT * FROM events")
    assert [(x["trial_id"], x["kind"], x["epoch"], as_json(x["metrics"])) for x in ev] == \
        [(ok.id, "epoch_end", 0, {"loss": 1.0})]
    assert as_dt(ev[0]["at"]) == dt.datetime(2027, 1, 15, 8, 0, 2)
    assert [(m["trial_id"], m["path"], m["metric"]) for m in sql(url, "SELECT * FROM models")] == \
        [(ok.id, "/runs/m/trial.keras", 0.25)]
    w.delete_model("/runs/m/trial.keras")
    assert sql(url, "SELECT * FROM models") == []

    # A trial written again after a flush: the second state is what the table holds.
    idle.finish(Result(idle.id, TrialStatus.TIMEOUT, 1_800_000_004.0, 1_800_000_005.0, 1, None,
                       0.5, error="trial time limit 1 s passed"))
    w.trial_changed(idle)
    w.flush()
    r = sql(url, "SELECT status, objective, error FROM trials WHERE id = :t", t=idle.id)[0]
    assert r == {"status": "timeout", "objective": 0.5, "error": "trial time limit 1 s passed"}

    s = store.summary(eng, e)
    assert s["counts"] == {"completed": 1, "failed": 1, "timeout": 1}
    assert s["best"] == {"id": ok.id, "objective": 0.25, "params": {"x1": 1.0}}
    assert s["experiment"]["name"] == "w" and s["experiment"]["status"] == "running"
    assert s["experiment"]["settings"] == {"seed": 1}
    assert store.summary(eng, other)["counts"] == {"queued": 1}
    eng.dispose()


def test_json_columns_hold_strict_json(url):
    """NaN/inf (a diverged loss) become null, which PostgreSQL's json type requires; the
    store's own Writer, as rank 0 uses it."""
    eng = store.init_db(url)
    w = store.Writer(eng)
    e = w.create_experiment(name="nan", pilot="bench", algorithm="none",
                            settings={"impute": math.nan})
    (tid,) = w.add_trials(e, [{"x1": 1.0}], submitted=0.0)
    t = Trial(tid, {"x1": 1.0}, 0.0)
    t.finish(Result(tid, TrialStatus.COMPLETED, 1.0, 2.0, objective=math.nan,
                    metrics={"val_loss": math.nan, "hist": [1.0, math.inf]}))
    w.trial_changed(t)
    w.add_events([{"trial_id": tid, "kind": "epoch_end", "epoch": 0, "metrics": {"loss": -math.inf}}])
    w.flush()
    eng.dispose()
    t = sql(url, "SELECT objective, metrics FROM trials WHERE id = :t", t=tid)[0]
    assert t["objective"] is None
    assert as_json(t["metrics"]) == {"val_loss": None, "hist": [1.0, None]}
    ev = sql(url, "SELECT metrics FROM events WHERE trial_id = :t", t=tid)[0]
    assert as_json(ev["metrics"]) == {"loss": None}
    assert as_json(sql(url, "SELECT settings FROM experiments")[0]["settings"]) == {"impute": None}


def test_end_experiment_cancels_the_open_trials_and_ends_it_in_one_step(url):
    eng = store.init_db(url)
    w = store.Writer(eng)
    e = w.create_experiment(name="end", pilot="bench", algorithm="random")
    other = w.create_experiment(name="other", pilot="bench", algorithm="random")
    done, running, queued = w.add_trials(e, [{"x": 1}, {"x": 2}, {"x": 3}], submitted=0.0)
    (other_t,) = w.add_trials(other, [{"x": 4}], submitted=0.0)
    t = Trial(done, {"x": 1}, 0.0)
    t.finish(Result(done, TrialStatus.COMPLETED, 4.0, 5.0, 1, "h", objective=1.0))
    w.trial_changed(t)
    t = Trial(running, {"x": 2}, 0.0)
    t.start(1, "h", 4.0)
    w.trial_changed(t)
    w.flush()
    t0 = store.utcnow()

    n = store.end_experiment(eng, e, ExperimentStatus.FAILED, error="the optimizer died",
                             final_message=None, why_cancelled="cancelled: the MPI job ended")
    assert n == 2
    rows = {r["id"]: r for r in sql(url, "SELECT id, status, error, finished_at FROM trials")}
    assert rows[done]["status"] == "completed" and rows[done]["error"] is None
    for t in (running, queued):
        assert (rows[t]["status"], rows[t]["error"]) == ("cancelled", "cancelled: the MPI job ended")
        assert t0 <= as_dt(rows[t]["finished_at"]) <= store.utcnow()
    assert rows[other_t]["status"] == "queued"  # another experiment's trials are not touched
    exp = sql(url, "SELECT status, error, final_message, finished_at FROM experiments "
                   "WHERE id = :e", e=e)[0]
    assert (exp["status"], exp["error"], exp["final_message"]) == \
        ("failed", "the optimizer died", None)
    assert t0 <= as_dt(exp["finished_at"]) <= store.utcnow()

    # The normal end: the reason follows from the status; the Writer flushes its buffer first.
    (late,) = w.add_trials(other, [{"x": 5}], submitted=0.0)
    t = Trial(other_t, {"x": 4}, 0.0)
    t.finish(Result(other_t, TrialStatus.COMPLETED, 4.0, 5.0, 1, "h", objective=2.0))
    w.trial_changed(t)
    assert w.end_experiment(other, ExperimentStatus.COMPLETED, final_message='{"best": 2}') == 1
    rows = {r["id"]: r for r in sql(url, "SELECT id, status, error FROM trials")}
    assert rows[other_t]["status"] == "completed"
    assert (rows[late]["status"], rows[late]["error"]) == \
        ("cancelled", "the optimizer finished before this trial was needed")
    exp = sql(url, "SELECT status, final_message, error FROM experiments WHERE id = :e", e=other)[0]
    assert exp == {"status": "completed", "final_message": '{"best": 2}', "error": None}
    assert store.end_experiment(eng, other, "completed") == 0  # nothing left open
    with pytest.raises(ValueError, match="completed, failed or interrupted"):
        store.end_experiment(eng, e, ExperimentStatus.RUNNING)
    eng.dispose()


def test_end_experiment_as_interrupted_keeps_open_trials_resumable_and_ends_the_segment(url):
    """The post-mortem of a stopped job: queued and running trials become ``interrupted`` (a
    resume runs them again), the open segment ends with the status given; an earlier, ended
    segment and finished trials are not touched."""
    eng = store.init_db(url)
    w = store.Writer(eng)
    e = w.create_experiment(name="stop", pilot="bench", algorithm="random")
    done, running, queued = w.add_trials(e, [{"x": 1}, {"x": 2}, {"x": 3}], submitted=0.0)
    t = Trial(done, {"x": 1}, 0.0)
    t.finish(Result(done, TrialStatus.COMPLETED, 4.0, 5.0, 1, "h", objective=1.0))
    w.trial_changed(t)
    t = Trial(running, {"x": 2}, 0.0)
    t.start(1, "h", 4.0)
    w.trial_changed(t)
    w.flush()
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO segments (experiment_id, number, started_at, ended_at, status) "
                       "VALUES (:e, 1, :a, :a, 'killed'), (:e, 2, :a, NULL, 'running')"),
                  {"e": e, "a": dt.datetime(2026, 11, 29, 13)})
    engine.dispose()
    t0 = store.utcnow()
    n = store.end_experiment(eng, e, ExperimentStatus.INTERRUPTED, error="stopped: SIGKILL",
                             open_as=TrialStatus.INTERRUPTED, segment_status="killed")
    assert n == 2
    rows = {r["id"]: r for r in sql(url, "SELECT id, status, error FROM trials")}
    assert rows[done]["status"] == "completed" and rows[done]["error"] is None
    for tid in (running, queued):
        assert rows[tid]["status"] == "interrupted" and "resume runs it again" in rows[tid]["error"]
    assert sql(url, "SELECT status, error FROM experiments WHERE id = :e", e=e) == \
        [{"status": "interrupted", "error": "stopped: SIGKILL"}]
    segs = sql(url, "SELECT number, status, ended_at, error FROM segments ORDER BY number")
    assert [(s["number"], s["status"]) for s in segs] == [(1, "killed"), (2, "killed")]
    assert as_dt(segs[0]["ended_at"]) == dt.datetime(2026, 11, 29, 13) and segs[0]["error"] is None
    assert t0 <= as_dt(segs[1]["ended_at"]) <= store.utcnow()
    assert segs[1]["error"] == "stopped: SIGKILL"
    eng.dispose()


def test_a_new_column_is_one_generated_revision(tmp_path):
    """The developer's path in docs/store.md, on a copy of the package: add a column to
    schema.py, generate the revision, set SCHEMA_VERSION; a store at 0004 then upgrades to it."""
    pkg = tmp_path / "emews_py"
    shutil.copytree(ROOT / "emews_py", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    schema = pkg / "store" / "schema.py"
    src = schema.read_text()
    anchor = "    error = Column(Text)              # traceback or time-limit message\n"
    assert src.count(anchor) == 1
    schema.write_text(src.replace(anchor, anchor + "    segment = Column(Integer)\n"))
    env = {"PYTHONPATH": str(tmp_path), "PATH": ""}
    db = f"sqlite:///{tmp_path / 'emews.db'}"
    store.init_db(db).dispose()  # a store at 0004, made by this code

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "emews_py.store.migrations", *args], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout.strip()
    cli("revision", "add trials.segment", "--autogenerate")
    (rev,) = (pkg / "store" / "migrations" / "versions").glob("0005_*.py")
    assert rev.name == "0005_add_trials_segment.py"
    body = rev.read_text()
    assert "down_revision = '0004'" in body
    assert "batch_op.add_column(sa.Column('segment', sa.Integer()" in body
    assert "batch_op.drop_column('segment')" in body
    schema.write_text(schema.read_text().replace('SCHEMA_VERSION = "0004"', 'SCHEMA_VERSION = "0005"'))
    assert cli("current", db) == "0004"
    assert cli("upgrade", db) == "0005"
    assert "segment" in columns(db)["trials"]
    assert cli("downgrade", db, "0004") == "0004"
    assert "segment" not in columns(db)["trials"]
    # This code (which knows 0004 only) refuses the store once the copy has upgraded it.
    cli("upgrade", db)
    with pytest.raises(store.SchemaTooNew):
        store.init_db(db)


def test_sqlite_hot_path_formats_timestamps_as_sqlalchemy_does():
    """The writer's fast timestamp text equals SQLAlchemy's (ts(t).isoformat), rounding included."""
    import random

    from emews_py.store.writer import _sqlite_ts
    rng = random.Random(7)
    values = [rng.uniform(0, 4e9) for _ in range(20000)] + [
        1_800_000_002.5, 1.9999995, 1.0000005, 0.0, 1e9 + 0.9999996, -1.5, -0.0000004]
    assert [_sqlite_ts(v) for v in values] == \
        [store.ts(v).isoformat(" ", "microseconds") for v in values]
    assert _sqlite_ts(None) is None
