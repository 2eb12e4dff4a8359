"""emews_py.trials / emews_py.events and `emews trials`: the search as DataFrames, read from a
store made by real `emews workflow` runs (events and metrics written through the real Writer)."""
from __future__ import annotations

import io
import json
import math
import subprocess

import pandas as pd
import pytest

import emews_py
from emews_py import store
from emews_py.data import DataError
from emews_py.trials import Result, Trial, TrialStatus
from helpers import EMEWS, ROOT, output, query, run_workflow
from pilots.bench import mixed

SPACE = """
param.set <- makeParamSet(
  makeDiscreteParam("function", values = "mixed"),
  makeNumericParam("x1", lower = -1, upper = 1),
  makeNumericParam("x2", lower = -1, upper = 1),
  makeIntegerParam("n", lower = 1L, upper = 20L),
  makeDiscreteParam("cat", values = c("a", "b", "c", "d")),
  makeLogicalParam("fail")
)
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two runs named 'mix' (ids 1 and 2; some trials fail), epoch events for two trials of the
    first, and an experiment with trial metrics, all in one SQLite store."""
    runs = tmp_path_factory.mktemp("data")
    space = runs / "space.R"
    space.write_text(SPACE)
    for budget in (8, 3):
        p = run_workflow(runs, "--algo", "py_random", "--procs", "3", "--budget", str(budget),
                         "--space", str(space), "--exp", "mix", "--settings", "seed = 11")
        assert p.returncode == 0, output(p)
    url = f"sqlite:///{runs / 'emews.db'}"
    eng = store.init_db(url)
    w = store.Writer(eng)
    first = [r["id"] for r in query(runs, "SELECT id FROM trials WHERE experiment_id = 1 "
                                          "ORDER BY id LIMIT 2")]
    w.add_events([{"trial_id": t, "kind": "epoch_end", "epoch": e, "at": 1_800_000_000.0 + e,
                   "metrics": {"loss": 1.0 / (e + 1), "val_loss": 2.0 / (e + 1) + t}}
                  for t in first for e in range(3)])
    w.add_events([{"trial_id": first[0], "kind": "train_end", "at": 1_800_000_010.0,
                   "metrics": {"epochs": 3}}])
    e3 = w.create_experiment(name="metrics", pilot="treat", algorithm="random")
    tid, tinf = w.add_trials(e3, [{"lr": 0.01}, {"lr": 9.0}], submitted=1_800_000_000.0)
    t = Trial(tid, {"lr": 0.01}, 1_800_000_000.0)
    t.start(1, "node01", 1_800_000_001.0)
    t.finish(Result(tid, TrialStatus.COMPLETED, 1_800_000_001.0, 1_800_000_003.5, 1, "node01",
                    objective=0.25, metrics={"val_loss": 0.25, "acc": math.nan}))
    w.trial_changed(t)
    t = Trial(tinf, {"lr": 9.0}, 1_800_000_000.0)   # a diverged loss
    t.start(1, "node01", 1_800_000_004.0)
    t.finish(Result(tinf, TrialStatus.COMPLETED, 1_800_000_004.0, 1_800_000_005.0, 1, "node01",
                    objective=math.inf))
    w.trial_changed(t)
    w.flush()
    eng.dispose()
    return runs, url, first


def test_trials_has_one_row_per_trial_with_params_in_columns(made):
    runs, url, _ = made
    df = emews_py.trials(url, 1)
    rows = query(runs, "SELECT * FROM trials WHERE experiment_id = 1 ORDER BY id")
    assert len(df) == len(rows) == 8 and list(df.trial_id) == [r["id"] for r in rows]
    assert list(df.columns) == ["trial_id", "experiment_id", "status", "objective",
                                "param_function", "param_x1", "param_x2", "param_n", "param_cat",
                                "param_fail", "worker", "host", "attempts", "submitted_at",
                                "started_at", "finished_at", "seconds", "error"]
    assert df.attrs["experiment"] == {"id": 1, "name": "mix"}
    assert str(df.submitted_at.dtype).startswith("datetime64")
    assert str(df.at[0, "started_at"].tz) == "UTC"
    for (_, d), r in zip(df.iterrows(), rows):
        x = json.loads(r["params"])
        assert {k: d[f"param_{k}"] for k in x} == x
        assert d.status == r["status"] and d.status == ("failed" if x["fail"] else "completed")
        if d.status == "completed":
            assert d.objective == pytest.approx(mixed(x["x1"], x["x2"], x["n"], x["cat"]))
            assert pd.isna(d.error)
        else:
            assert math.isnan(d.objective) and "fail = True" in d.error
        assert d.started_at.tz_localize(None) == pd.Timestamp(r["started_at"])
        assert d.seconds == pytest.approx((d.finished_at - d.started_at).total_seconds())
        assert d.worker in (1, 2) and d.attempts == 1 and d.host == r["host"]
    assert 0 < (df.status == "failed").sum() < 8   # the seed gives both kinds


def test_a_name_means_the_latest_experiment_of_that_name(made):
    _, url, _ = made
    assert emews_py.trials(url, "mix").attrs["experiment"]["id"] == 2
    assert len(emews_py.trials(url, "mix")) == 3
    assert len(emews_py.trials(url, "1")) == 8     # digits that name no experiment: an id


def test_trial_metrics_become_columns(made):
    _, url, _ = made
    df = emews_py.trials(url, "metrics")
    assert list(df.columns[4:7]) == ["param_lr", "metric_val_loss", "metric_acc"]
    assert df.at[0, "metric_val_loss"] == 0.25 and pd.isna(df.at[0, "metric_acc"])
    assert df.at[0, "seconds"] == pytest.approx(2.5)
    assert df.at[1, "objective"] == math.inf and pd.isna(df.at[1, "metric_val_loss"])
    p = emews("trials", "metrics", "--db", url, "--format", "json")
    assert p.returncode == 0, output(p)
    recs = json.loads(p.stdout)     # strict JSON: infinity as the EQ protocol writes it
    assert [r["objective"] for r in recs] == [0.25, "Infinity"]
    assert recs[0]["metric_acc"] is None and recs[1]["metric_val_loss"] is None


def test_events_are_rows_with_their_logged_values_in_columns(made):
    _, url, first = made
    ev = emews_py.events(url, 1)
    assert list(ev.columns) == ["event_id", "trial_id", "kind", "epoch", "at", "metric_loss",
                                "metric_val_loss", "metric_epochs"]
    assert len(ev) == 7 and set(ev.trial_id) == set(first)
    curves = ev[ev.kind == "epoch_end"].pivot(index="epoch", columns="trial_id",
                                              values="metric_val_loss")
    assert curves.shape == (3, 2)
    assert curves.loc[2, first[1]] == pytest.approx(2.0 / 3 + first[1])
    end = ev[ev.kind == "train_end"].iloc[0]
    assert pd.isna(end.epoch) and end.metric_epochs == 3
    assert ev["at"].iloc[0] == pd.Timestamp("2027-01-15 08:00:00", tz="UTC")
    empty = emews_py.events(url, 2)     # the bench pilot writes no events
    assert empty.empty and list(empty.columns) == ["event_id", "trial_id", "kind", "epoch", "at"]


def emews(*args):
    return subprocess.run([EMEWS, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_emews_trials_prints_the_same_table_as_csv_and_json(made):
    runs, url, _ = made
    df = emews_py.trials(url, 1)
    p = emews("trials", "1", "--runs", str(runs))
    assert p.returncode == 0, output(p)
    csv = pd.read_csv(io.StringIO(p.stdout))
    assert list(csv.columns) == list(df.columns) and len(csv) == 8
    assert csv.param_x1.tolist() == df.param_x1.tolist()   # full precision
    p = emews("trials", "mix", "--db", url, "--format", "json")
    assert p.returncode == 0, output(p)
    recs = json.loads(p.stdout)
    latest = emews_py.trials(url, "mix")
    assert [r["trial_id"] for r in recs] == latest.trial_id.tolist()
    assert recs[0]["param_x2"] == latest.param_x2[0] and recs[0]["status"] in ("completed", "failed")
    assert recs[0]["started_at"].endswith("Z")
    assert all(r["objective"] is None for r in recs if r["status"] == "failed")


def test_unknown_experiment_store_or_format_is_one_line_and_exit_2(made, tmp_path):
    runs, url, _ = made
    with pytest.raises(DataError, match="has no experiment 'nope'"):
        emews_py.trials(url, "nope")
    for args, says in [(["trials", "99", "--runs", str(runs)], "has no experiment '99'"),
                       (["trials", "1", "--runs", str(runs), "--format", "xml"],
                        "--format 'xml' is not known"),
                       (["trials", "1", "--runs", str(tmp_path)], "does not exist")]:
        p = emews(*args)
        assert p.returncode == 2 and p.stdout == ""
        assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "emews.db").exists()     # read-only: a missing store is not created


def test_postgresql_store_gives_the_same_frames(postgres_url):
    """The same API on a real PostgreSQL server (JSON and timestamps come back through psycopg);
    the space's order puts b before a."""
    eng = store.init_db(postgres_url)
    w = store.Writer(eng)
    e = w.create_experiment(name="pg-data", pilot="bench", algorithm="random",
                            space_json={"params": [{"id": "b", "type": "numeric"},
                                                   {"id": "a", "type": "discrete"}]})
    ids = w.add_trials(e, [{"a": "x", "b": 1.5}, {"a": "y", "b": 2.5}], submitted=1_800_000_000.0)
    t = Trial(ids[0], {"a": "x", "b": 1.5}, 1_800_000_000.0)
    t.start(2, "node02", 1_800_000_001.0)
    t.finish(Result(ids[0], TrialStatus.FAILED, 1_800_000_001.0, 1_800_000_002.0, 2, "node02",
                    error="ValueError: x"))
    w.trial_changed(t)
    w.add_events([{"trial_id": ids[0], "kind": "epoch_end", "epoch": 0, "at": 1_800_000_001.5,
                   "metrics": {"loss": 0.5}}])
    w.flush()
    eng.dispose()
    df = emews_py.trials(postgres_url, e)
    assert list(df.columns[:6]) == ["trial_id", "experiment_id", "status", "objective",
                                    "param_b", "param_a"]
    assert df.status.tolist() == ["failed", "queued"] and df.param_a.tolist() == ["x", "y"]
    assert df.at[0, "error"] == "ValueError: x" and df.at[0, "seconds"] == pytest.approx(1.0)
    assert pd.isna(df.at[1, "started_at"]) and pd.isna(df.at[1, "worker"])
    assert df.at[0, "submitted_at"] == pd.Timestamp("2027-01-15 08:00:00", tz="UTC")
    ev = emews_py.events(postgres_url, "pg-data")
    assert ev[["trial_id", "epoch", "metric_loss"]].values.tolist() == [[ids[0], 0, 0.5]]
