"""Bad values in the workflow's inputs (issue 8 item 7): one paragraph naming the variable, what
was given and the fix, exit status 2, before anything starts: no run directory, no experiment."""
from __future__ import annotations

import pytest

from helpers import query, run_workflow


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
    algos = tmp_path / "algos"
    algos.mkdir()
    (algos / "greedy.R").write_text(OVER_BUDGET_R)
    p = run_workflow(tmp_path, "--algo", "greedy", "--procs", "2", "--budget", "5",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=120)
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
