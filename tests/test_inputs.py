"""Bad values in the workflow's inputs (issue 8 item 7): one paragraph naming the variable, what
was given and the fix, exit status 2, before anything starts: no run directory, no experiment."""
from __future__ import annotations

import pytest

from helpers import run_workflow


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
