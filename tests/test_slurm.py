"""SITE=slurm for real: a one-node Slurm cluster (slurm-wlm + munge, tests/slurm_cluster.py)
runs bench workflows submitted by `make workflow SITE=slurm`, as a user would; the MPICH wheel's
mpiexec inside the job launches its ranks through Slurm (a job step, srun); `scancel` (SIGTERM,
as at the time limit) records the experiment interrupted and `RESUME=ID` with the same SITE
submits the job that completes it."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT, json_space, output, query
from slurm_cluster import SlurmCluster, missing


@pytest.fixture(scope="module")
def slurm():
    why = missing()
    if why and os.geteuid() != 0:
        pytest.skip(why)
    assert why is None, why
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def make_workflow(slurm: SlurmCluster, runs: Path, *variables: str,
                  walltime: str = "00:05:00") -> tuple[str, Path]:
    """`make workflow SITE=slurm ...` in the repository; the job id and the run directory."""
    env = dict(slurm.env, EMEWS_RUNS=str(runs))
    p = subprocess.run(["make", "-s", "workflow", "SITE=slurm", "NODES=1", f"WALLTIME={walltime}",
                        *variables], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, output(p)
    job = re.search(r"submitted to [\w.-]+: job (\d+)", p.stdout)
    run_dir = re.search(r"run directory: (\S+)", p.stdout)
    assert job and run_dir, output(p)
    assert f"`squeue -j {job.group(1)}`" in p.stdout and f"`scancel {job.group(1)}`" in p.stdout
    return job.group(1), Path(run_dir.group(1))


def worker_pids(run_dir: Path, n: int, limit: float = 60) -> list[int]:
    """The worker ranks' pids, from RUN_DIR/workers.log once all n said hello."""
    deadline = time.time() + limit
    while time.time() < deadline:
        log = run_dir / "workers.log"
        pids = [int(x) for x in re.findall(r"\(pid (\d+) on", log.read_text())] \
            if log.exists() else []
        if len(pids) == n:
            return pids
        time.sleep(0.1)
    out = run_dir / "job.out"
    raise AssertionError(f"{n} workers did not start: {out.read_text() if out.exists() else ''}")


def under_slurm_step(pid: int) -> tuple[dict, list[str]]:
    """The process's Slurm variables and the names of its ancestors."""
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text()
               .split("\0") if kv.startswith("SLURM_"))
    names, p = [], pid
    while p > 1:
        stat = Path(f"/proc/{p}/stat").read_text()
        p = int(stat.rsplit(")", 1)[1].split()[1])
        names.append(Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ").strip())
    return env, names


def sleepy_space(tmp_path: Path, sleep: float) -> Path:
    return json_space(tmp_path / "space.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "sleep", "type": "discrete", "values": [sleep]}])


def test_make_workflow_site_slurm_runs_to_completion_with_workers_in_a_job_step(slurm, tmp_path):
    """Also GPUS_PER_NODE through a real sbatch: the job asks Slurm for the node's 2 (placeholder)
    GPUs, and each worker records its own."""
    runs = tmp_path / "runs"
    space = sleepy_space(tmp_path, 0.6)
    job, run_dir = make_workflow(slurm, runs, "PPN=3", "ALGO=py_random", "BUDGET=8",
                                 f"SPACE={space}", "EXP=slurm-done", "GPUS_PER_NODE=2")
    # The workers (2 of PPN=3 ranks) run in step 0 of this job, which hydra started with srun,
    # not as children of the batch script.
    for pid in worker_pids(run_dir, 2):
        env, ancestors = under_slurm_step(pid)
        assert env.get("SLURM_JOB_ID") == job and env.get("SLURM_STEP_ID") == "0", env
        assert f"slurmstepd: [{job}.0]" in ancestors, ancestors
        assert not any(a.startswith(f"slurmstepd: [{job}.batch]") for a in ancestors), ancestors
    assert slurm.wait_done(job, 90) == "COMPLETED", slurm.logs()
    out = (run_dir / "job.out").read_text()
    assert "[emews] experiment status: completed" in out, out
    assert query(runs, "SELECT status, run_dir FROM experiments") == [
        {"status": "completed", "run_dir": str(run_dir)}]
    rows = query(runs, "SELECT status, COUNT(*) AS n, COUNT(DISTINCT worker) AS w FROM trials "
                       "GROUP BY status")
    assert rows == [{"status": "completed", "n": 8, "w": 2}], (rows, out)
    gpus = query(runs, "SELECT DISTINCT worker, gpu FROM trials ORDER BY worker")
    assert gpus == [{"worker": 1, "gpu": "0"}, {"worker": 2, "gpu": "1"}], gpus
    assert "TresPerNode=gres:gpu:2" in slurm.run("scontrol", "show", "job", job).stdout
    assert query(runs, "SELECT procs, status FROM segments") == [{"procs": 3,
                                                                  "status": "completed"}]


def test_scancel_records_interrupted_and_resume_through_slurm_completes(slurm, tmp_path):
    runs = tmp_path / "runs"
    space = sleepy_space(tmp_path, 0.6)
    job, run_dir = make_workflow(slurm, runs, "PPN=3", "ALGO=py_random", "BUDGET=10",
                                 f"SPACE={space}", "EXP=slurm-cut")
    worker_pids(run_dir, 2)
    deadline = time.time() + 60
    while time.time() < deadline and not query(
            runs, "SELECT 1 FROM trials WHERE status = 'completed'"):
        time.sleep(0.2)
    # scancel: SIGTERM to every process of the job (SIGKILL KillWait s later), as at the time limit
    slurm.run("scancel", job)
    assert slurm.wait_done(job, 60) == "CANCELLED", slurm.logs()
    out = (run_dir / "job.out").read_text()
    x = query(runs, "SELECT id, status FROM experiments")
    assert x == [{"id": 1, "status": "interrupted"}], out
    done = [r["id"] for r in query(runs, "SELECT id FROM trials WHERE status = 'completed'")]
    assert 1 <= len(done) < 10, out
    # recorded by the driver's clean stop, not by a post-mortem of a killed job
    assert "[emews] experiment 1 interrupted by SIGTERM:" in out and "RESUME=1" in out, out

    job2, run_dir2 = make_workflow(slurm, runs, "RESUME=1", "PPN=3")
    assert run_dir2 != run_dir
    assert slurm.wait_done(job2, 90) == "COMPLETED", slurm.logs()
    out2 = (run_dir2 / "job.out").read_text()
    assert query(runs, "SELECT id, status FROM experiments") == [
        {"id": 1, "status": "completed"}], out2
    assert query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"] \
        == 10, out2
    # no trial completed by the first job ran again
    ran = {r["id"]: r["attempts"] for r in query(runs, "SELECT id, attempts FROM trials")}
    assert all(ran[t] == 1 for t in done), ran
    assert query(runs, "SELECT procs, status FROM segments ORDER BY number") == [
        {"procs": 3, "status": "interrupted"}, {"procs": 3, "status": "completed"}]


def test_time_limit_kills_the_job_recorded_interrupted_and_resume_completes_it(slurm, tmp_path):
    """A real time limit: WALLTIME=00:01:00 (Slurm's smallest) on a search of about two minutes.
    Slurm ends the job at its limit (slurmctld looks every 30 s, so 60-90 s after the start:
    this test takes 2-3 minutes, the reason it is over 60 s) with SIGTERM, SIGKILL KillWait s
    later; the driver records the stop itself, and RESUME=1 in the same command completes it."""
    runs = tmp_path / "runs"
    space = sleepy_space(tmp_path, 4.0)   # 2 workers: 56 trials are ~112 s of work
    job, run_dir = make_workflow(slurm, runs, "PPN=3", "ALGO=py_random", "BUDGET=56",
                                 f"SPACE={space}", "EXP=slurm-limit", walltime="00:01:00")
    assert slurm.wait_done(job, 200) == "TIMEOUT", slurm.logs()
    shown = slurm.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T %l").stdout.split()
    assert shown == ["TIMEOUT", "1:00"], shown
    rec = slurm.completion(job)
    assert rec.get("JobState") == "TIMEOUT", rec
    ran = _seconds(rec["EndTime"]) - _seconds(rec["StartTime"])
    assert 60 <= ran < 150, rec   # killed at its limit, not before, not long after

    out = (run_dir / "job.out").read_text()
    # recorded by the driver's clean stop within KillWait, not by a post-mortem
    assert "[emews] experiment 1 interrupted by SIGTERM:" in out and "RESUME=1" in out, out
    assert query(runs, "SELECT id, status FROM experiments") == [
        {"id": 1, "status": "interrupted"}], out
    (seg,) = query(runs, "SELECT status, ended_at FROM segments")
    assert seg["status"] == "interrupted", seg
    # recorded before Slurm saw the job end: within KillWait of the limit's SIGTERM
    recorded = _seconds(str(seg["ended_at"]).replace(" ", "T"))
    start = _seconds(rec["StartTime"])
    print(f"time limit: job ended {ran:.0f} s after its start, the stop recorded at "
          f"{recorded - start:.1f} s")
    assert start + 60 <= recorded <= _seconds(rec["EndTime"]) + 1, (rec, seg)
    done = [r["id"] for r in query(runs, "SELECT id FROM trials WHERE status = 'completed'")]
    assert 8 <= len(done) < 56, out   # the minute's work is kept
    assert not query(runs, "SELECT id FROM trials WHERE status IN ('queued', 'running')")

    job2, run_dir2 = make_workflow(slurm, runs, "RESUME=1", "PPN=3")
    assert slurm.wait_done(job2, 150) == "COMPLETED", slurm.logs()
    out2 = (run_dir2 / "job.out").read_text()
    assert query(runs, "SELECT id, status FROM experiments") == [
        {"id": 1, "status": "completed"}], out2
    assert query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"] \
        == 56, out2
    attempts = {r["id"]: r["attempts"] for r in query(runs, "SELECT id, attempts FROM trials")}
    assert all(attempts[t] == 1 for t in done), attempts   # the first job's trials kept
    assert query(runs, "SELECT status FROM segments ORDER BY number") == [
        {"status": "interrupted"}, {"status": "completed"}]


def _seconds(stamp: str) -> float:
    """A Slurm time stamp (2026-11-29T18:40:02) as seconds."""
    import datetime as dt
    return dt.datetime.fromisoformat(stamp).timestamp()


def test_an_earlier_signal_from_a_site_file_copy_stops_the_run_before_its_limit(slurm, tmp_path):
    """docs/sites.md's advice for a site with a short KillWait, for real: a copy of the site
    file with `#SBATCH --signal=B:TERM@60` (a new site is one file). Slurm signals the batch
    step, whose `emews launch` (the script execs it) passes the stop to the driver, which records
    it, and the job ends by itself before its 2-minute limit. Slurm sends it up to a minute early
    (it looks every 30 s): 2 minutes at most."""
    runs = tmp_path / "runs"
    site = tmp_path / "slurm-early.toml"
    text = (ROOT / "workflows" / "sites" / "slurm.toml").read_text()
    assert "#SBATCH --time={walltime}\n" in text
    site.write_text(text.replace("#SBATCH --time={walltime}\n",
                                 "#SBATCH --time={walltime}\n#SBATCH --signal=B:TERM@60\n"))
    space = sleepy_space(tmp_path, 4.0)
    job, run_dir = make_workflow(slurm, runs, f"SITE={site}", "PPN=3", "ALGO=py_random",
                                 "BUDGET=80", f"SPACE={space}", "EXP=slurm-early",
                                 walltime="00:02:00")
    assert "#SBATCH --signal=B:TERM@60" in (run_dir / "job.sh").read_text()
    state = slurm.wait_done(job, 200)
    rec = slurm.completion(job)
    out = (run_dir / "job.out").read_text()
    ran = _seconds(rec["EndTime"]) - _seconds(rec["StartTime"])
    print(f"--signal=B:TERM@60 with a 2-minute limit: the job ended {state} after {ran:.0f} s")
    assert state == "FAILED" and ran < 120, (state, rec, out)   # ended by itself, not killed
    assert "[emews] experiment 1 interrupted by SIGTERM:" in out and "RESUME=1" in out, out
    assert query(runs, "SELECT status FROM experiments") == [{"status": "interrupted"}], out
    assert query(runs, "SELECT status FROM segments") == [{"status": "interrupted"}], out
    assert not query(runs, "SELECT id FROM trials WHERE status IN ('queued', 'running')")
