"""py_algorithms/optuna.py on the real farm (mpiexec, ZeroMQ, SQLite): Optuna's samplers as a
drop-in streaming optimizer over ParamHelpers spaces."""
from __future__ import annotations

import json
import math

import pytest

from helpers import json_space, output, query, run_workflow
from pilots.bench import branin

TRAFO_SPACE = """
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -0.5, upper = 1, trafo = function(x) 10^x),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeIntegerParam("n", lower = 1L, upper = 5L),
  makeDiscreteParam("cat", values = c("a", "b", "c")),
  makeLogicalParam("fail")
)
"""


def experiment(runs, name):
    exp = query(runs, "SELECT * FROM experiments WHERE name = :n", n=name)[0]
    rows = query(runs, "SELECT * FROM trials WHERE experiment_id = :e ORDER BY id", e=exp["id"])
    for r in rows:
        r["params"] = json.loads(r["params"])
    return exp, rows


def test_tpe_on_branin_honours_the_budget_and_reports_the_best(tmp_path):
    p = run_workflow(tmp_path, "--algo", "optuna", "--procs", "4", "--budget", "30",
                     "--exp", "tpe", "--settings", "seed = 7")
    assert p.returncode == 0, output(p)
    exp, rows = experiment(tmp_path, "tpe")
    assert exp["status"] == "completed" and len(rows) == 30
    for r in rows:
        x = r["params"]
        assert r["status"] == "completed" and set(x) == {"x1", "x2"}
        assert -5 <= x["x1"] <= 10 and 0 <= x["x2"] <= 15
        assert r["objective"] == pytest.approx(branin(x["x1"], x["x2"]), rel=1e-9)
    # streaming: the 3 workers were kept busy, so trials overlap in time
    assert len({r["worker"] for r in rows}) == 3
    final = json.loads(exp["final_message"])
    best = min(rows, key=lambda r: r["objective"])
    assert final["sampler"] == "tpe" and final["evaluations"] == 30 and final["failed"] == 0
    assert final["best.y"] == pytest.approx(best["objective"])
    assert final["best.x"] == best["params"]
    assert "tpe sampler" in output(p)


def test_trafo_categories_logicals_and_failed_trials(tmp_path):
    """x1 is sampled on [-0.5, 1] and sent as 10^x; discrete and logical values come from their
    lists; a trial that fails (fail = TRUE) is told FAIL and the search goes on to the budget."""
    space = tmp_path / "space.R"
    space.write_text(TRAFO_SPACE)
    p = run_workflow(tmp_path, "--algo", "optuna", "--procs", "3", "--budget", "12",
                     "--space", str(space), "--exp", "trafo", "--settings", "seed = 3")
    assert p.returncode == 0, output(p)
    exp, rows = experiment(tmp_path, "trafo")
    assert exp["status"] == "completed" and len(rows) == 12
    for r in rows:
        x = r["params"]
        assert 10 ** -0.5 - 1e-9 <= x["x1"] <= 10 + 1e-9 and 0 <= x["x2"] <= 15
        assert x["n"] in range(1, 6) and x["cat"] in ("a", "b", "c")
        assert x["fail"] in (True, False)
        assert r["status"] == ("failed" if x["fail"] else "completed")
    # the trafo was applied: untransformed values would all be <= 1, and half the range is < 1
    assert max(r["params"]["x1"] for r in rows) > 1
    failed = sum(r["status"] == "failed" for r in rows)
    assert 0 < failed < 12
    final = json.loads(exp["final_message"])
    assert final["evaluations"] == 12 and final["failed"] == failed
    ok = [r for r in rows if r["status"] == "completed"]
    assert final["best.y"] == pytest.approx(min(r["objective"] for r in ok))


def test_cmaes_sampler_runs_and_diverged_trials_count_as_worst(tmp_path):
    space = tmp_path / "space.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("x1", lower = -5, upper = 10),'
                     ' makeNumericParam("x2", lower = 0, upper = 15),'
                     ' makeLogicalParam("diverge"))\n')
    p = run_workflow(tmp_path, "--algo", "optuna", "--procs", "3", "--budget", "14",
                     "--space", str(space), "--exp", "cma",
                     "--settings", "sampler = 'cmaes', n.startup.trials = 4, seed = 5")
    assert p.returncode == 0, output(p)
    exp, rows = experiment(tmp_path, "cma")
    assert exp["status"] == "completed" and len(rows) == 14
    assert all(r["status"] == "completed" for r in rows)
    final = json.loads(exp["final_message"])
    assert final["sampler"] == "cmaes" and final["evaluations"] == 14
    finite = [r["objective"] for r in rows if r["objective"] is not None
              and math.isfinite(r["objective"])]
    assert any(r["params"]["diverge"] for r in rows)
    # an infinite objective is never the best
    assert final["best.y"] == pytest.approx(min(finite)) and not final["best.x"]["diverge"]


@pytest.mark.parametrize("settings, says", [
    ("sampler = 'bayes'", ["sampler = 'bayes'", "'tpe', 'cmaes', 'gp', 'nsga2', 'random', 'qmc'"]),
    ("n.startup = 5", ["unknown setting 'n.startup'", "did you mean 'n.startup.trials'"]),
])
def test_bad_settings_fail_the_run_naming_the_setting(tmp_path, settings, says):
    p = run_workflow(tmp_path, "--algo", "optuna", "--procs", "2", "--budget", "4",
                     "--exp", "bad", "--settings", settings)
    assert p.returncode != 0
    exp, rows = experiment(tmp_path, "bad")
    assert exp["status"] == "failed" and rows == []
    for s in says:
        assert s in exp["error"] and s in output(p)


def test_a_stopped_optuna_search_resumes_without_rerunning_completed_trials(tmp_path):
    """Optuna with a seed is deterministic given the same answers, so a resume can replay its EQ
    transcript: the completed trials keep their single attempt and the budget is met exactly."""
    import os
    import signal
    import subprocess
    import time

    from helpers import EMEWS, ROOT
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"params": [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "sleep", "type": "discrete", "values": [0.6]}]}))
    proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(tmp_path), "--algo", "optuna",
                             "--procs", "3", "--budget", "12", "--space", str(space),
                             "--settings", "sampler = 'cmaes', n.startup.trials = 4, seed = 9"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            if query(tmp_path, "SELECT COUNT(*) AS n FROM trials "
                               "WHERE status = 'completed'")[0]["n"] >= 4:
                break
        except Exception:  # noqa: BLE001 - the store may not exist yet
            pass
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "RESUME=1" in out, out
    before = {r["id"]: r for r in experiment(tmp_path, "bench-optuna")[1]
              if r["status"] == "completed"}
    assert 4 <= len(before) < 12
    p = run_workflow(tmp_path, "--resume", "1")
    assert p.returncode == 0, output(p)
    exp, rows = experiment(tmp_path, "bench-optuna")
    assert exp["status"] == "completed" and len(rows) == 12
    assert all(r["status"] == "completed" for r in rows)
    for i, r in before.items():
        after = next(x for x in rows if x["id"] == i)
        assert after["attempts"] == 1 and after["params"] == r["params"]
    assert json.loads(exp["final_message"])["evaluations"] == 12


def test_stopped_trials_are_told_as_pruned(tmp_path):
    """With a STOPPER, Optuna is told a stopped training as PRUNED (its objective at the stop
    reported at the epoch it reached), not as FAIL; it is never the best."""
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "epochs", "type": "discrete", "values": [4]},
        {"id": "sleep", "type": "discrete", "values": [2.0]}])
    p = run_workflow(tmp_path, "--algo", "optuna", "--procs", "4", "--budget", "12",
                     "--space", str(space), "--stopper", "asha:eta=2", "--exp", "pruned",
                     "--settings", "seed = 5, sampler = 'random'", timeout=180)
    assert p.returncode == 0, output(p)
    exp, rows = experiment(tmp_path, "pruned")
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and len(rows) == 12
    final = json.loads(exp["final_message"])
    assert final["stopped"] == len(stopped) and final["failed"] == 0
    best = min((r for r in rows if r["status"] == "completed"), key=lambda r: r["objective"])
    assert final["best.y"] == pytest.approx(best["objective"])
    assert f"{len(stopped)} stopped" in output(p)
