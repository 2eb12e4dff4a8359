"""The R tests (testthat, tests/r/test-*.R): one pytest test per R file, so a failure names the
R module that broke (space, EQ, sim, mbo-settings, mbo-codec, ...).

The R files run in ONE Rscript (tests/r/run.R: testthat::test_dir with EQ_HOME set to the
repository root), restricted to the files this pytest session selected, because loading R and
its packages once keeps the suite's time about that of the tests themselves. They drive the
optimizers through eq/R/sim.R, the simulated farm, so no ZeroMQ/MPI is involved.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
R_DIR = REPO / "tests" / "r"
R_FILES = sorted(p.name for p in R_DIR.glob("test-*.R"))


def _name(file: str) -> str:
    return file[len("test-"):-len(".R")]


@pytest.fixture(scope="session")
def r_run(request, tmp_path_factory):
    """Runs the selected R files once; returns (records by file, exit status, R output)."""
    wanted = sorted({item.callspec.params["rfile"] for item in request.session.items
                     if getattr(item, "callspec", None) and "rfile" in item.callspec.params})
    out = tmp_path_factory.mktemp("r") / "results.json"
    pattern = "^(" + "|".join(re.escape(_name(f)) for f in wanted) + ")$"
    env = dict(os.environ, EQ_HOME=str(REPO))
    p = subprocess.run(["Rscript", "--vanilla", str(R_DIR / "run.R"), str(out), pattern],
                       cwd=tmp_path_factory.mktemp("rwd"), env=env, capture_output=True, text=True,
                       timeout=600)
    log = f"{p.stdout}\n{p.stderr[-6000:]}"
    if not out.exists():
        pytest.fail(f"the R test run wrote no results (exit status {p.returncode}):\n{log}", pytrace=False)
    by_file: dict[str, list[dict]] = {}
    for rec in json.loads(out.read_text() or "[]"):
        by_file.setdefault(rec["file"], []).append(rec)
    return by_file, p.returncode, log


@pytest.mark.parametrize("rfile", R_FILES, ids=[_name(f) for f in R_FILES])
def test_r_file(r_run, rfile):
    by_file, status, log = r_run
    recs = by_file.get(rfile)
    assert recs, f"{rfile}: no tests ran (a file that fails to load shows here):\n{log}"
    failed = [r for r in recs if r["failed"] or r["error"]]
    report = "\n".join(f"  {r['test']}: " + " | ".join(r["messages"]) for r in failed)
    assert not failed, f"{rfile}: {len(failed)} test(s) failed:\n{report}\n\nR output:\n{log}"
    assert sum(r["expectations"] for r in recs) > 0
    # run.R's exit status agrees: non-zero exactly when some selected file failed
    if status != 0:
        assert any(r["failed"] or r["error"] for rs in by_file.values() for r in rs), log


def test_runner_fails_on_a_failing_expectation(tmp_path):
    """run.R exits non-zero and names the failure, so a broken R module cannot pass unseen."""
    d = tmp_path / "r"
    d.mkdir()
    (d / "run.R").write_text((R_DIR / "run.R").read_text())
    (d / "test-broken.R").write_text('test_that("one plus one", { expect_equal(1 + 1, 3) })\n')
    out = tmp_path / "res.json"
    p = subprocess.run(["Rscript", "--vanilla", str(d / "run.R"), str(out)], capture_output=True, text=True,
                       env=dict(os.environ, EQ_HOME=str(REPO)), timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    rec = json.loads(out.read_text())[0]
    assert rec["file"] == "test-broken.R" and rec["failed"] == 1 and "not equal to 3" in rec["messages"][0]
