"""mlrMBO's ``warm.start = ID`` and the EQ ``history`` message it is built on: a new experiment
seeded with the finished trials of an earlier one of the same store (docs/mlrmbo.md)."""
from __future__ import annotations

import json
import math

import pytest

from emews_py.farm.protocol import Fail, Protocol, Reply
from helpers import algorithm, json_space, output, query, run_workflow

LOAD = {"free": 2, "workers": 3}

# A CANDLE-style space with trafos (inverted by the warm start) and a logical that makes the bench
# pilot fail (failed trials reach the surrogate imputed).
SPACE = """\
param.set <- makeParamSet(
  makeDiscreteParam("function", values = c("mixed")),
  makeNumericParam("x1", lower = -3, upper = 0, trafo = function(x) 10^x),
  makeNumericParam("x2", lower = -1, upper = 1),
  makeIntegerParam("n", lower = 0, upper = 4, trafo = function(x) 2L^x),
  makeDiscreteParam("cat", values = c("a", "b", "c", "d")),
  makeLogicalParam("fail")
)
"""


# ---- the protocol's history message, without a process ---------------------------------------

def _history(exp_id):
    if exp_id != 3:
        return None
    return {"experiment": 3, "name": "first", "space": {"params": [{"id": "x", "type": "numeric"}]},
            "results": [
                {"id": 7, "params": {"x": 1.5}, "status": "completed", "objective": 2.0, "metrics": {"a": 1}},
                {"id": 8, "params": {"x": 2.5}, "status": "completed", "objective": math.inf, "metrics": None},
                {"id": 9, "params": {"x": 0.5}, "status": "completed", "objective": None, "metrics": None},
                {"id": 10, "params": {"x": 0.1}, "status": "failed", "objective": None, "metrics": None}]}


def test_history_message_answers_the_space_and_results_like_live_results():
    p = Protocol("/a/opt.py", {}, None, history=_history)
    [a] = p.on_message("put", '{"eq": "history", "experiment": 3}', LOAD)
    assert isinstance(a, Reply)
    r = json.loads(a.text)
    assert r["eq"] == "history" and r["experiment"] == 3 and r["space"]["params"][0]["id"] == "x"
    assert [x["id"] for x in r["results"]] == [7, 8, 9, 10]
    # the shape and the non-finite rule of Protocol.result: a diverged loss is "Infinity"
    assert r["results"][0] == {"id": 7, "params": {"x": 1.5}, "status": "completed", "objective": 2.0,
                               "metrics": {"a": 1}}
    assert r["results"][1]["objective"] == "Infinity"
    assert r["results"][2]["objective"] is None and r["results"][3]["objective"] is None
    assert p.request is None and p.n_submitted == 0      # nothing inserted, nothing pending


@pytest.mark.parametrize("msg, words", [
    ('{"eq": "history", "experiment": 99999}', ["experiment 99999", "store of this run has no experiment 99999"]),
    ('{"eq": "history", "experiment": "last"}', ['"last"', "not an experiment id"]),
    ('{"eq": "history"}', ["null", "not an experiment id"]),
    ('{"eq": "history", "experiment": true}', ["true", "not an experiment id"]),
])
def test_history_of_an_unknown_experiment_or_a_bad_id_is_an_optimizer_error(msg, words):
    [a] = Protocol("/a/opt.py", {}, None, history=_history).on_message("put", msg, LOAD)
    assert isinstance(a, Fail) and "/a/opt.py" in a.why and "\n" not in a.why
    for w in words:
        assert w in a.why


def test_history_without_a_store_says_so():
    [a] = Protocol("/a/opt.py", {}, None).on_message("put", '{"eq": "history", "experiment": 3}', LOAD)
    assert isinstance(a, Fail) and "no store" in a.why


# ---- through the farm ------------------------------------------------------------------------

def _exp(tmp_path, p) -> dict:
    assert p.returncode == 0, output(p)
    return query(tmp_path, "SELECT * FROM experiments ORDER BY id DESC LIMIT 1")[0]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One short mlrMBO experiment (design 6 + one batch of 4) whose trials the tests reuse."""
    d = tmp_path_factory.mktemp("warm")
    (d / "space.R").write_text(SPACE)
    p = run_workflow(d, "--pilot", "bench", "--algo", "mlrMBO", "--procs", "3", "--budget", "10",
                     "--space", str(d / "space.R"), "--settings",
                     "mode = 'batch', design.size = 6, propose.points = 4, seed = 4", timeout=400)
    return d, _exp(d, p)


def test_warm_start_skips_the_design_and_reuses_every_finished_trial(first):
    d, e1 = first
    t1 = query(d, "SELECT id, status, objective, params FROM trials WHERE experiment_id = :e", e=e1["id"])
    n1 = len([t for t in t1 if t["status"] in ("completed", "failed", "timeout")])
    assert n1 == 10
    p = run_workflow(d, "--pilot", "bench", "--algo", "mlrMBO", "--procs", "3", "--budget", "4",
                     "--space", str(d / "space.R"), "--settings",
                     f"warm.start = {e1['id']}, mode = 'batch', propose.points = 4, seed = 4",
                     timeout=400)
    e2 = _exp(d, p)
    out = output(p)
    assert f"warm start from experiment {e1['id']}: {n1} points (0 dropped)" in out
    # the default design for budget 4 is 4 points: the 10 warm points take its place, so the
    # one batch this run submits is model-based, and the budget counts only its own trials
    assert "design 0 (+ 10 warm-start points)" in out
    t2 = query(d, "SELECT id, status, objective, params FROM trials WHERE experiment_id = :e", e=e2["id"])
    assert len(t2) == 4 and e2["status"] == "completed"
    assert not {r["params"] for r in t2} & {r["params"] for r in t1}   # nothing re-run
    for r in t2:                                                       # trafos applied as usual
        x = json.loads(r["params"])
        assert 1e-3 - 1e-12 <= x["x1"] <= 1 + 1e-12 and x["n"] in (1, 2, 4, 8, 16)
    final = json.loads(e2["final_message"])
    assert final["evaluations"] == 4 and final["warm"]["points"] == n1
    assert final["warm"]["completed"] == len([t for t in t1 if t["status"] == "completed"])
    # the incumbent includes the warm points: never worse than the first experiment's best
    best1 = min(t["objective"] for t in t1 if t["status"] == "completed")
    assert final["value"] <= best1 + 1e-12


def test_warm_start_from_an_unknown_experiment_fails_naming_it(first):
    """Checked before anything starts: one paragraph, exit 2, no experiment recorded (the
    optimizer-side error for a store that lost it is the protocol test above)."""
    d, _ = first
    before = query(d, "SELECT COUNT(*) AS n FROM experiments")[0]["n"]
    p = run_workflow(d, "--pilot", "bench", "--algo", "mlrMBO", "--procs", "2", "--budget", "4",
                     "--space", str(d / "space.R"), "--settings", "warm.start = 99999", timeout=300)
    assert p.returncode == 2, output(p)
    assert "warm.start = 99999" in p.stderr and "no experiment 99999" in p.stderr, output(p)
    assert "Traceback" not in output(p)
    assert query(d, "SELECT COUNT(*) AS n FROM experiments")[0]["n"] == before


HISTORY_PY = """\
import json
import eqpy


def run():
    s = eqpy.settings()
    h = eqpy.history(s["from"])
    eqpy.done({"experiment": h["experiment"], "space": [p["id"] for p in h["space"]["params"]],
               "ids": [r["id"] for r in h["results"]], "status": [r["status"] for r in h["results"]],
               "objective": [None if r["objective"] is None else repr(r["objective"]) for r in h["results"]]})
"""


def test_eqpy_history_returns_the_finished_trials_with_the_non_finite_rule(tmp_path):
    space = json_space(tmp_path / "space.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "fail", "type": "logical"}, {"id": "diverge", "type": "logical"}])
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "py_random", "--procs", "3", "--budget", "16",
                     "--space", str(space), "--settings", "seed = 2")
    e1 = _exp(tmp_path, p)
    env = algorithm(tmp_path, "hist.py", HISTORY_PY)
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "hist", "--procs", "2", "--budget", "1",
                     "--space", str(space), "--settings", json.dumps({"from": e1["id"]}), env=env)
    final = json.loads(_exp(tmp_path, p)["final_message"])
    rows = query(tmp_path, "SELECT id, status, objective FROM trials WHERE experiment_id = :e ORDER BY id",
                 e=e1["id"])
    assert final["experiment"] == e1["id"] and final["space"] == ["x1", "x2", "fail", "diverge"]
    assert final["ids"] == [r["id"] for r in rows] and final["status"] == [r["status"] for r in rows]
    statuses = set(final["status"])
    assert {"completed", "failed"} <= statuses, statuses     # seed 2 draws both
    for r, o in zip(rows, final["objective"]):
        if r["status"] != "completed":
            assert o is None
        else:
            assert o == repr(float(r["objective"]))          # inf for a diverged loss, as live
    assert "inf" in final["objective"]


def test_history_from_the_store_keeps_early_stopped_trials_with_their_value(tmp_path):
    """queries.history: a stopped trial (STOPPER) is a finished evaluation of its point: it comes
    with status "stopped" and the objective at the stop; cancelled ones stay out."""
    from emews_py import store
    from emews_py.store.queries import history
    from emews_py.trials import Result, Trial, TrialStatus as S
    eng = store.init_db(f"sqlite:///{tmp_path / 'h.db'}")
    w = store.Writer(eng)
    e = w.create_experiment(name="h", pilot="bench", algorithm="mlrMBO")
    ids = w.add_trials(e, [{"x": 1}, {"x": 2}, {"x": 3}], submitted=1.0)
    for i, (st, obj) in zip(ids, [(S.COMPLETED, 0.5), (S.STOPPED, 0.9), (S.CANCELLED, None)]):
        t = Trial(i, {}, 1.0)
        t.start(1, "h", 2.0)
        t.finish(Result(i, st, 2.0, 3.0, 1, "h", obj, None, stopped_epoch=2 if st is S.STOPPED else None))
        w.trial_changed(t)
    assert w.flush()
    h = history(eng, e)
    assert [(r["id"], r["status"], r["objective"]) for r in h["results"]] == \
        [(ids[0], "completed", 0.5), (ids[1], "stopped", 0.9)]
    eng.dispose()
