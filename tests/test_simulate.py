"""`emews simulate`: R and Python optimizers, unmodified, against the simulated farm (eq/R/sim.R)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EMEWS = Path(sys.executable).parent / "emews"
BRANIN_MIN = 0.397887357729739


def simulate(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EMEWS), "simulate", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def rows(out: str) -> list[dict]:
    lines = out.splitlines()
    i = next(k for k, l in enumerate(lines) if l.split()[:3] == ["run", "seed", "evaluations"])
    names = lines[i].split()
    res = []
    for l in lines[i + 1:]:
        if not re.match(r"\s*\d+\s", l):
            break
        res.append({k: float(v) for k, v in zip(names, l.split())})
    return res


@pytest.mark.parametrize("algo", ["random", "py_random"])
def test_simulate_prints_regret_evaluations_and_proposal_times(algo, tmp_path):
    p = simulate(algo, "--function", "branin", "--budget", "20", "--workers", "4", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (r,) = rows(p.stdout)
    assert r["evaluations"] == 20 and r["failed"] == 0
    assert r["proposals"] == 5                      # 20 points in batches of 4 workers
    assert r["regret"] >= 0
    assert r["best"] - r["regret"] == pytest.approx(BRANIN_MIN, abs=1e-5)
    assert 0 <= r["prop_median_s"] <= r["prop_max_s"] < 60
    assert 0 < r["utilization"] <= 1
    m = re.search(r"^regret: median (\S+) over 1 run\(s\)", p.stdout, re.M)
    assert m and float(m.group(1)) == pytest.approx(r["regret"], rel=1e-4)
    assert "evaluations: 20;" in p.stdout


def test_repeat_runs_one_seed_each_and_the_same_seed_gives_the_same_run(tmp_path):
    p = simulate("py_random", "--function", "mixed", "--budget", "12", "--workers", "3",
                 "--seed", "5", "--repeat", "2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    a, b = rows(p.stdout)
    assert (a["seed"], b["seed"]) == (5, 6)
    assert a["evaluations"] == b["evaluations"] == 12
    again = rows(simulate("py_random", "--function", "mixed", "--budget", "12", "--workers", "3",
                          "--seed", "6", cwd=tmp_path).stdout)[0]
    assert again["best"] == b["best"]


def test_unknown_algorithm_or_function_is_one_clear_error(tmp_path):
    p = simulate("no_such_algo", "--function", "branin", cwd=tmp_path)
    assert p.returncode == 2
    assert "unknown ALGO 'no_such_algo'" in p.stderr and "Available:" in p.stderr
    assert "random" in p.stderr and "Traceback" not in p.stderr
    p = simulate("random", "--function", "rosenbrock", cwd=tmp_path)
    assert p.returncode == 2
    assert "unknown --function 'rosenbrock'" in p.stderr and "branin, hartmann6, mixed" in p.stderr


def test_optimizer_errors_and_protocol_breaks_are_reported(tmp_path):
    bad_r = tmp_path / "bad.R"
    bad_r.write_text('s <- eq_settings()\npropose <- function() stop("no more ideas")\npropose()\n')
    p = simulate(str(bad_r), "--budget", "4", cwd=tmp_path)
    assert p.returncode == 1
    assert "no more ideas" in p.stderr and str(bad_r) in p.stderr and "propose()" in p.stderr
    rude = tmp_path / "rude.py"
    rude.write_text("import eqpy\n\ndef run():\n    eqpy.OUT_put('Params')\n    eqpy.IN_get()\n"
                    "    eqpy.IN_get()\n")
    p = simulate(str(rude), "--budget", "4", cwd=tmp_path)
    assert p.returncode == 1
    assert "no request outstanding" in p.stderr and "rude.py" in p.stderr


def test_settings_reach_the_optimizer_and_bad_settings_are_refused(tmp_path):
    p = simulate("random", "--budget", "12", "--workers", "4", "--settings", "propose.points = 3L",
                 cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert rows(p.stdout)[0]["proposals"] == 4      # 12 points in batches of 3, not of 4 workers
    p = simulate("random", "--settings", "design.size = = 3", cwd=tmp_path)
    assert p.returncode == 2 and "SETTINGS 'design.size = = 3' is not valid R argument text" in p.stderr
    p = simulate("random", "--settings", "20", cwd=tmp_path)
    assert p.returncode == 2 and "every setting needs a name" in p.stderr
