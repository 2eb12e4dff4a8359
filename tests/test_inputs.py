"""Bad values in the workflow's inputs (issue 8 item 7): one paragraph naming the variable, what
was given and the fix, exit status 2, before anything starts: no run directory, no experiment."""
from __future__ import annotations

import json
import math

import pytest

from helpers import algorithm, json_space, query, run_workflow


@pytest.mark.parametrize("args, name, given", [
    (["--procs", "abc"], "PROCS", "abc"),
    (["--procs", "2.5"], "PROCS", "2.5"),
    (["--procs", "-3"], "PROCS", "-3"),
    (["--budget", "1.5"], "BUDGET", "1.5"),
    (["--budget", "0"], "BUDGET", "0"),
    (["--budget", "ten"], "BUDGET", "ten"),
    (["--timeout", "abc"], "TIMEOUT", "abc"),
    (["--timeout", "-1"], "TIMEOUT", "-1"),
    (["--timeout", "0"], "TIMEOUT", "0"),
    (["--timeout", "nan"], "TIMEOUT", "nan"),
    (["--settings", "max.budget = 0"], "max.budget", "0"),
    (["--settings", "max.budget = 2.5"], "max.budget", "2.5"),
    (["--settings", "max.budget = 'many'"], "max.budget", "many"),
    (["--settings", '{"max.budget": -4}'], "max.budget", "-4"),
])
def test_bad_number_is_one_paragraph_and_nothing_starts(tmp_path, args, name, given):
    p = run_workflow(tmp_path, *args, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip()
    assert "Traceback" not in err, err
    assert err.startswith("emews: error:") and "\n" not in err, err   # one paragraph
    assert f"{name}={given!r}" in err, err                                 # the variable, as given
    assert "greater than 0" in err and f"e.g. {name}=" in err, err         # and the fix
    assert not (tmp_path / "emews.db").exists()                            # no experiment
    assert not [d for d in tmp_path.iterdir() if d.is_dir()]               # no run directory
    assert "[emews] run directory" not in p.stdout


def test_good_numbers_in_any_spelling_run(tmp_path):
    """Whole numbers written as floats and a budget from SETTINGS are accepted and used."""
    p = run_workflow(tmp_path, "--procs", "2.0", "--timeout", "30.5",
                     "--settings", "max.budget = 3", timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "trials by status: completed 3" in p.stdout, p.stdout


OVER_BUDGET_R = """\
OUT_put("Params")
s <- eval(parse(text = paste0("list(", IN_get(), ")")))
pt <- '{"x1": 1.5, "x2": 2.5}'
OUT_put(paste(rep(pt, 3), collapse = ";"))
y <- IN_get()
OUT_put(paste(rep(pt, s$max.budget), collapse = ";"))   # the whole budget again: 3 too many
y <- IN_get()
OUT_put("DONE")
OUT_put("unreachable")
"""


def test_more_points_than_the_remaining_budget_fail_the_experiment(tmp_path):
    """Through the real farm: an R optimizer that ignores what it has already spent."""
    env = algorithm(tmp_path, "greedy.R", OVER_BUDGET_R)
    p = run_workflow(tmp_path, "--algo", "greedy", "--procs", "2", "--budget", "5",
                     env=env, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    expect = ["proposed 5 point(s) but only 2 trial(s) of the budget remain",
              "max.budget = 5", "3 trial(s) were already submitted", "greedy.R",
              'point 3 of the batch: {"x1": 1.5, "x2": 2.5}']
    for e in expect:
        assert e in out, out
    exp = query(tmp_path, "SELECT id, status, error FROM experiments")[0]
    assert exp["status"] == "failed" and all(e in exp["error"] for e in expect), exp
    rows = query(tmp_path, "SELECT status, COUNT(*) AS n FROM trials GROUP BY status")
    assert rows == [{"status": "completed", "n": 3}], rows   # the over-budget batch never ran


DIVERGE_PY = """\
import json, math
import eqpy

def run():
    eqpy.settings()
    pts = [{"x1": 1.0, "x2": 2.0, "diverge": True}, {"x1": 1.0, "x2": 2.0, "diverge": False}]
    ext = [r["objective"] for r in eqpy.batch(pts)]
    eqpy.OUT_put(";".join(json.dumps(p) for p in pts))
    plain = [float(v) for v in eqpy.IN_get().split(";")]
    ok = ext[0] == math.inf and plain[0] == math.inf and math.isfinite(ext[1]) and ext[1] == plain[1]
    eqpy.done({"ext0": repr(ext[0]), "plain0": repr(plain[0]), "ok": ok})
"""

DIVERGE_R = """\
s <- eq_settings()
pts <- list(list(x1 = 1, x2 = 2, diverge = TRUE), list(x1 = 1, x2 = 2, diverge = FALSE))
ext <- vapply(eq_batch(pts), function(r) r$objective, 0)
OUT_put('{"x1": 1, "x2": 2, "diverge": true};{"x1": 1, "x2": 2, "diverge": false}')
plain <- as.numeric(strsplit(IN_get(), ";", fixed = TRUE)[[1]])   # what a raw EMEWS script does
best <- min(c(ext, plain))
OUT_put("DONE")
OUT_put(sprintf('{"ext0": "%s", "plain0": "%s", "ok": %s}', format(ext[1]), format(plain[1]),
                if (identical(ext[1], Inf) && identical(plain[1], Inf) && is.finite(best) &&
                    best == ext[2]) "true" else "false"))
"""


@pytest.mark.parametrize("lang", ["py", "R"])
def test_a_diverged_objective_is_stored_as_inf_and_reaches_the_optimizer_as_worst(tmp_path, lang,
                                                                                  request):
    """The bench pilot's diverge = True returns inf: the trial row holds +inf (not NULL), the
    optimizer gets inf (Python) / Inf (R) by both the extension and the plain convention."""
    env = algorithm(tmp_path, f"div.{lang}", DIVERGE_PY if lang == "py" else DIVERGE_R)
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "diverge", "type": "logical"}])
    p = run_workflow(tmp_path, "--algo", "div", "--procs", "2", "--budget", "4", "--space",
                     str(space), env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    exp = query(tmp_path, "SELECT status, final_message FROM experiments")[0]
    final = json.loads(exp["final_message"])
    assert exp["status"] == "completed" and final["ok"] is True, final
    assert final["ext0"] in ("inf", "Inf") and final["plain0"] in ("inf", "Inf"), final
    rows = query(tmp_path, "SELECT status, objective, json_extract(params, '$.diverge') AS d "
                           "FROM trials ORDER BY id")
    assert [(r["status"], r["d"]) for r in rows] == [("completed", 1), ("completed", 0)] * 2
    assert [r["objective"] == math.inf for r in rows] == [True, False, True, False], rows
    assert query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE objective IS NULL")[0]["n"] == 0
    assert "best trial: id 2 " in p.stdout, p.stdout    # a diverged trial is never the best


def test_a_diverged_objective_is_stored_as_inf_in_postgresql(tmp_path, postgres_url):
    env = algorithm(tmp_path, "div.py", DIVERGE_PY)
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "diverge", "type": "logical"}])
    exp = f"diverge-{tmp_path.name}"[:60].replace("[", "-").replace("]", "")
    p = run_workflow(tmp_path, "--algo", "div", "--procs", "2", "--budget", "4", "--space",
                     str(space), "--exp", exp, env=env,
                     db=postgres_url, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    e = query(tmp_path, "SELECT id, status, final_message FROM experiments WHERE name = :n",
              db=postgres_url, n=exp)[0]
    assert e["status"] == "completed" and json.loads(e["final_message"])["ok"] is True, e
    rows = query(tmp_path, "SELECT objective FROM trials WHERE experiment_id = :e ORDER BY id",
                 db=postgres_url, e=e["id"])
    assert [r["objective"] == math.inf for r in rows] == [True, False, True, False], rows
    inf = query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE experiment_id = :e AND "
                          "objective = 'Infinity'::float", db=postgres_url, e=e["id"])
    assert inf[0]["n"] == 2


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_mlrmbo_takes_diverged_trials_as_worst_and_goes_on(tmp_path, mode):
    space = tmp_path / "s.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("x1", lower = -5, upper = 10),\n'
                     '  makeNumericParam("x2", lower = 0, upper = 15), makeLogicalParam("diverge"))\n')
    p = run_workflow(tmp_path, "--algo", "mlrMBO", "--procs", "3", "--budget", "16", "--space",
                     str(space), "--settings", f"mode = '{mode}', propose.points = 4, seed = 3",
                     timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    exp = query(tmp_path, "SELECT status, final_message FROM experiments")[0]
    final = json.loads(exp["final_message"])
    assert exp["status"] == "completed" and final["evaluations"] == 16, final
    rows = query(tmp_path, "SELECT status, objective FROM trials")
    assert len(rows) == 16 and all(r["status"] == "completed" for r in rows)
    diverged = [r for r in rows if r["objective"] == math.inf]
    assert diverged and final["failed"] == len(diverged)     # imputed like failures
    assert math.isfinite(final["value"]) and final["best"]["diverge"] is False
    assert final["value"] == pytest.approx(min(r["objective"] for r in rows))
