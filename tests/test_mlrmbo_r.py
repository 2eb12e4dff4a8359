"""Runs the pure-R tests of eq/R/space.R, eq/R/EQ.R and r_algorithms/mlrMBO.R (tests/r/test_mlrMBO.R).

They drive the optimizer through eq/R/sim.R, an in-process stand-in for the EQ driver
with a simulated farm, so no ZeroMQ/MPI is involved.
"""
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent


def test_mlrmbo_r_suite(tmp_path):
    p = subprocess.run(["Rscript", "--vanilla", str(REPO / "tests" / "r" / "test_mlrMBO.R")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, f"R tests failed:\n{p.stdout}\n{p.stderr[-4000:]}"
    assert "all tests passed" in p.stdout
