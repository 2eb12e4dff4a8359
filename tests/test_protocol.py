"""The EQ protocol state machine (docs/eq-protocol.md), every message kind, without a process."""
from __future__ import annotations

import json
import math

import pytest

from emews_py.farm.protocol import Fail, Finish, InsertTrials, Protocol, Reply, parse_batch
from emews_py.trials import Result, Trial, TrialStatus

SPACE = {"source": "/abs/space.R", "params": [
    {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
    {"id": "act", "type": "discrete", "values": ["a;b", "c"]}]}
SETTINGS = {"max.budget": 10, "workers": 3, "seed": 1, "param.set.file": "/abs/space.R"}
LOAD = {"free": 2, "workers": 3}


class Farm:
    """Plays the driver: inserts trials with ids from 1, finishes them on demand."""

    def __init__(self, algo_file="/a/opt.py", impute=math.nan):
        self.p = Protocol(algo_file, SETTINGS, SPACE, impute)
        self.trials: dict[int, Trial] = {}

    def put(self, text: str, kind: str = "put") -> list:
        out = []
        for a in self.p.on_message(kind, text, LOAD):
            if isinstance(a, InsertTrials):
                new = [Trial(len(self.trials) + i + 1, pt, 0.0) for i, pt in enumerate(a.points)]
                self.trials.update((t.id, t) for t in new)
                out += self.p.on_inserted(new, LOAD)
            else:
                out.append(a)
        return out

    def finish(self, tid: int, objective=None, status=TrialStatus.COMPLETED) -> None:
        t = self.trials[tid]
        t.start(1, "h", 1.0)
        t.finish(Result(tid, status, 1.0, 2.0, 1, "h", objective, {"acc": 0.5}))
        self.p.on_finished(t)


def reply(actions) -> str:
    assert len(actions) == 1 and isinstance(actions[0], Reply), actions
    return actions[0].text


def test_params_for_r_is_r_argument_text():
    f = Farm(algo_file="/a/opt.R")
    assert reply(f.put("Params")) == ("max.budget = 10L, workers = 3L, seed = 1L, "
                                      "param.set.file = '/abs/space.R'")


def test_params_for_python_is_json_with_the_space():
    got = json.loads(reply(Farm().put("Params")))
    assert got == dict(SETTINGS, space=SPACE)


def test_plain_batch_answers_values_in_order_once_all_finished_with_impute():
    f = Farm(impute=1e6)
    assert f.put('{"x1": 1, "act": "c"};{"x1": 2, "act": "c"};{"x1": 3, "act": "c"}') == []
    assert [t.params["x1"] for t in f.trials.values()] == [1, 2, 3]
    f.finish(2, 4.5)
    f.finish(3, None, TrialStatus.FAILED)
    assert f.p.answer(LOAD) == []  # trial 1 still runs
    f.finish(1, 12.25)
    assert reply(f.p.answer(LOAD)) == "12.25;4.5;1000000.0"
    assert f.p.request is None


def test_plain_batch_default_impute_is_nan():
    f = Farm()
    f.put('{"x1": 1, "act": "c"}')
    f.finish(1, None, TrialStatus.TIMEOUT)
    assert reply(f.p.answer(LOAD)) == "nan"


def test_plain_batch_value_containing_a_semicolon():
    f = Farm()
    assert f.put(' {"x1": 1, "act": "a;b"} ; {"x1": 2, "act": "c"}') == []
    assert [t.params for t in f.trials.values()] == [{"x1": 1, "act": "a;b"}, {"x1": 2, "act": "c"}]
    assert parse_batch('{"a": "x;y"};{"b": ";"}') == [{"a": "x;y"}, {"b": ";"}]


@pytest.mark.parametrize("done", ["DONE", "FINAL"])
def test_done_then_final_message(done):
    f = Farm()
    assert f.put(done) == []
    assert f.put("best=1.5") == [Finish("best=1.5")]
    assert f.p.finished and f.p.final_message == "best=1.5"
    assert f.put("", kind="bye") == []  # the clean exit after DONE says nothing more


def test_bye_without_done_finishes_with_a_warning():
    acts = Farm().put("", kind="bye")
    assert len(acts) == 1 and isinstance(acts[0], Finish) and acts[0].final_message is None
    assert "without sending DONE" in acts[0].warning


def test_error_fails_with_the_traceback():
    acts = Farm().put("Traceback ...\nValueError: no more ideas", kind="error")
    assert acts == [Fail("the optimizer /a/opt.py stopped with an error:\n"
                         "Traceback ...\nValueError: no more ideas")]


def test_batch_extension_answers_results_with_ids_in_order():
    f = Farm()
    assert f.put(json.dumps({"eq": "batch", "points": [{"x1": 1, "act": "c"},
                                                       {"x1": 2, "act": "c"}]})) == []
    f.finish(2, None, TrialStatus.FAILED)
    f.finish(1, 0.5)
    got = json.loads(reply(f.p.answer(LOAD)))
    assert got == {"eq": "results", "results": [
        {"id": 1, "params": {"x1": 1, "act": "c"}, "status": "completed", "objective": 0.5,
         "metrics": {"acc": 0.5}},
        {"id": 2, "params": {"x1": 2, "act": "c"}, "status": "failed", "objective": None,
         "metrics": {"acc": 0.5}}]}


def submit(f: Farm, n: int) -> list[int]:
    pts = [{"x1": float(i), "act": "c"} for i in range(n)]
    got = json.loads(reply(f.put(json.dumps({"eq": "submit", "points": pts}))))
    assert got["eq"] == "submitted"
    return got["ids"]


def results(f: Farm, n) -> list:
    return f.put(json.dumps({"eq": "results", "min": n}))


def test_submit_answers_ids_at_once():
    f = Farm()
    assert submit(f, 2) == [1, 2]
    assert submit(f, 1) == [3]


def test_results_min_1_waits_for_one():
    f = Farm()
    submit(f, 3)
    assert results(f, 1) == []          # nothing finished: the request waits
    f.finish(2, 1.0)
    got = json.loads(reply(f.p.answer(LOAD)))
    assert [r["id"] for r in got["results"]] == [2]
    assert got["pending"] == 2 and got["free"] == 2 and got["workers"] == 3


def test_results_min_0_polls_and_never_hangs():
    f = Farm()
    assert json.loads(reply(results(f, 0)))["results"] == []  # nothing pending at all
    submit(f, 2)
    got = json.loads(reply(results(f, 0)))
    assert got["results"] == [] and got["pending"] == 2


def test_results_min_n_waits_for_n_but_not_for_more_than_pending():
    f = Farm()
    submit(f, 3)
    assert results(f, 2) == []
    f.finish(1, 1.0)
    assert f.p.answer(LOAD) == []
    f.finish(3, 3.0)
    got = json.loads(reply(f.p.answer(LOAD)))
    assert [r["id"] for r in got["results"]] == [1, 3] and got["pending"] == 1
    got = results(f, 5)                 # only one pending: waits for that one, not five
    assert got == []
    f.finish(2, 2.0)
    assert [r["id"] for r in json.loads(reply(f.p.answer(LOAD)))["results"]] == [2]


def test_status():
    f = Farm()
    submit(f, 2)
    f.finish(1, 1.0)
    got = json.loads(reply(f.put('{"eq": "status"}')))
    assert got == {"eq": "status", "pending": 1, "free": 2, "workers": 3, "completed": 1}


@pytest.mark.parametrize("msg, expect", [
    ("{'x1': 1}", "not valid"),
    ('{"x1": 1, "act": "c"};', "point 2"),
    ('{"x1": 1, "act": "c"} {"x1": 2, "act": "c"}', "expected ';' after point 1"),
    ('{"x1": 1, "act": "c"};[1, 2]', "it is not a JSON object"),
    ('{"eq": "sumbit", "points": []}', "unknown extension message eq = 'sumbit'"),
    ('{"eq": "batch", "points": {"x1": 1}}', "'points' must be a list of JSON objects"),
    ('{"eq": "results", "min": "all"}', "'min' must be a number"),
])
def test_malformed_messages_fail_naming_the_script_and_the_fix(msg, expect):
    acts = Farm().put(msg)
    assert len(acts) == 1 and isinstance(acts[0], Fail)
    assert expect in acts[0].why and "/a/opt.py" in acts[0].why and "Fix the optimizer" in acts[0].why


def test_a_put_before_reading_the_previous_answer_fails():
    f = Farm()
    f.put('{"x1": 1, "act": "c"}')
    acts = f.put('{"x1": 2, "act": "c"}')
    assert len(acts) == 1 and isinstance(acts[0], Fail)
    assert "before reading the answer" in acts[0].why and "IN_get()" in acts[0].why


@pytest.mark.parametrize("point, expect", [
    ('{"x1": 99, "act": "c"}', "'x1' = 99 is outside [-5, 10]"),
    ('{"x1": 1, "act": "c", "lr": 1}', "parameter 'lr' is not in the search space"),
    ('{"x1": 1}', "'act' of the search space /abs/space.R are missing"),
    ('{"x1": NaN, "act": "c"}', "'x1' = NaN"),
])
def test_points_outside_the_space_fail_before_any_trial(point, expect):
    f = Farm()
    acts = f.put(point)
    assert len(acts) == 1 and isinstance(acts[0], Fail) and expect in acts[0].why
    assert "outside the search space /abs/space.R" in acts[0].why and not f.trials


def test_points_over_the_remaining_budget_fail_naming_budget_submitted_and_count():
    f = Farm()                                      # max.budget = 10
    pts = ";".join(json.dumps({"x1": i / 10, "act": "c"}) for i in range(6))
    assert not any(isinstance(a, Fail) for a in f.put(pts))
    for tid in list(f.trials):
        f.finish(tid, 1.0)
    reply(f.p.answer(LOAD))
    acts = f.put(pts)                               # 6 more: 12 > 10
    assert len(acts) == 1 and isinstance(acts[0], Fail), acts
    why = acts[0].why
    assert "/a/opt.py" in why and "max.budget = 10" in why and "6 trial(s) were already submitted" in why
    assert "proposed 6 point(s)" in why and "only 4 trial(s) of the budget remain" in why
    assert 'point 5 of the batch: {"x1": 0.4, "act": "c"}' in why
    assert len(f.trials) == 6                       # nothing inserted


def test_points_up_to_the_budget_exactly_pass_and_count_every_message_kind():
    f = Farm()
    sub = f.put(json.dumps({"eq": "submit", "points": [{"x1": 1, "act": "c"}] * 3}))
    assert json.loads(reply(sub))["ids"] == [1, 2, 3]
    f.put(json.dumps({"eq": "batch", "points": [{"x1": 2, "act": "c"}] * 4}))
    for tid in range(4, 8):
        f.finish(tid, 1.0)
    reply(f.p.answer(LOAD))
    assert not any(isinstance(a, Fail) for a in f.put(";".join(['{"x1": 3, "act": "c"}'] * 3)))
    assert len(f.trials) == 10
    for tid in range(8, 11):
        f.finish(tid, 1.0)
    reply(f.p.answer(LOAD))
    acts = f.put(json.dumps({"eq": "submit", "points": [{"x1": 1, "act": "c"}]}))
    assert isinstance(acts[0], Fail) and "only 0 trial(s) of the budget remain" in acts[0].why


@pytest.mark.parametrize("point, name", [
    ('{"x1": 1}', "'act'"),
    ('{"x1": Infinity, "act": "c"}', "'x1' = inf"),
    ('{"x1": -Infinity, "act": "c"}', "'x1' = -inf"),
    ('{"x1": NaN, "act": "c"}', "'x1' = NaN"),
])
def test_bad_point_error_names_the_point_and_its_place(point, name):
    f = Farm()
    acts = f.put('{"x1": 0, "act": "c"};' + point)
    why = acts[0].why
    assert isinstance(acts[0], Fail) and name in why and "point 2 of the batch" in why, why
    assert json.dumps(json.loads(point))[:20] in why and not f.trials


def test_a_diverged_objective_reaches_the_optimizer_as_inf_not_as_missing():
    """Plain convention: 'inf' (R's as.numeric and Python's float parse it); extension: the JSON
    string "Infinity"; -inf too is worse than every finite value (+inf), while the store keeps
    -inf; NaN stays missing (the impute value / null)."""
    f = Farm(impute=1e6)
    f.put('{"x1": 1, "act": "c"};{"x1": 2, "act": "c"};{"x1": 3, "act": "c"}')
    f.finish(1, math.inf)
    f.finish(2, math.nan)
    f.finish(3, -math.inf)
    assert reply(f.p.answer(LOAD)) == "inf;1000000.0;inf"
    assert f.trials[1].objective == math.inf and f.trials[2].objective is None
    assert f.trials[3].objective == -math.inf
    f.put(json.dumps({"eq": "batch", "points": [{"x1": 4, "act": "c"}, {"x1": 5, "act": "c"}]}))
    f.finish(4, math.inf)
    f.finish(5, math.nan)
    text = reply(f.p.answer(LOAD))
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert [(r["status"], r["objective"]) for r in res["results"]] == \
        [("completed", "Infinity"), ("completed", None)]
