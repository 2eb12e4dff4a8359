"""Long campaigns, with real faults: SIGTERM/SIGINT to the job's process group, `kill -9` of the
whole job, and resumes that must not run a completed trial again (issue 8, items 1, 2 and 6)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from helpers import EMEWS, ROOT, algorithm, output, query, run_workflow

BRANIN_SLOW = """\
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeDiscreteParam("sleep", values = c(0.4))
)
"""


def slow_space(tmp_path):
    """Branin with trials of 0.4 s, so a job can be stopped in the middle."""
    f = tmp_path / "space.R"
    f.write_text(BRANIN_SLOW)
    return f


def start(runs, *args, db=None, env=None) -> subprocess.Popen:
    """`emews workflow` in a session of its own, so the test can signal its whole process group
    as a batch system or a terminal would."""
    cmd = [EMEWS, "workflow", "--runs", str(runs), *args] + (["--db", db] if db else [])
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **(env or {})), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(runs, sql: str, at_least: int, proc: subprocess.Popen, limit: float = 240,
             db: str | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < limit:
        try:
            if query(runs, sql, db=db)[0]["n"] >= at_least:
                return
        except Exception:  # noqa: BLE001 - the store may not exist yet
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended early:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {sql} >= {at_least}")


def completed(runs) -> str:
    return "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'"


def midway(k: int) -> str:
    """At least k trials completed and some running: the job is stopped in the middle."""
    return ("SELECT CASE WHEN (SELECT COUNT(*) FROM trials WHERE status = 'completed') >= "
            f"{int(k)} THEN (SELECT COUNT(*) FROM trials WHERE status = 'running') ELSE 0 END AS n")


def leftovers(runs) -> list[str]:
    """Processes of these runs still alive: anything whose command line names a run directory
    (ranks, trial processes) or a run's EQ endpoint (the optimizer), or that runs inside one."""
    runs = Path(runs)
    markers = [str(runs)] + [json.loads(f.read_text())["endpoint"]
                             for f in runs.glob("*/config.json")]
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            args = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
            state = (d / "stat").read_text().split(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (any(m in args for m in markers) or cwd.startswith(str(runs))):
            out.append(f"{d.name} {args}")
    return out


def trials(runs, exp=None) -> list[dict]:
    where = f"WHERE experiment_id = {int(exp)}" if exp else ""
    return query(runs, f"SELECT id, params, status, attempts, objective FROM trials {where} "
                       f"ORDER BY id")


def resume(runs, exp: int, *args, timeout=400) -> subprocess.CompletedProcess:
    return run_workflow(runs, "--resume", str(exp), *args, timeout=timeout)


MBO = ["--pilot", "bench", "--algo", "mlrMBO", "--procs", "3", "--budget", "14"]


def mbo_settings(mode: str) -> str:
    return f"mode = '{mode}', design.size = 6, propose.points = 2, seed = 11"


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_kill_9_then_resume_runs_no_completed_trial_again(tmp_path, mode, request):
    """kill -9 of the whole job mid-run, then resume (twice for batch): the experiment completes
    as the same id, no trial that had completed is started again, and in batch mode the points
    are exactly those of an uninterrupted run with the same seed."""
    space = slow_space(tmp_path)
    args = [*MBO, "--space", str(space), "--settings", mbo_settings(mode)]
    ref_runs = tmp_path / "reference"
    if mode == "batch":   # the uninterrupted run goes alongside the killed ones, in its own store
        ref_runs.mkdir()
        with open(ref_runs / "out.txt", "w") as f:
            ref_proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(ref_runs), *args],
                                        cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        request.addfinalizer(lambda: ref_proc.poll() is None and
                             os.killpg(ref_proc.pid, signal.SIGKILL))
    runs = tmp_path / "runs"
    kills = 2 if mode == "batch" else 1
    done_before: dict[int, int] = {}   # trial id -> its attempts when a kill found it completed
    for k in range(kills):
        if k == 0:
            proc = start(runs, *args)
        else:
            proc = start(runs, "--resume", "1")
        wait_for(runs, completed(runs), 4 + 4 * k, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        done_before.update((r["id"], r["attempts"]) for r in trials(runs)
                           if r["status"] == "completed")
        proc.wait()
        time.sleep(0.5)
        assert not leftovers(runs), leftovers(runs)
        exp = query(runs, "SELECT id, status FROM experiments")
        assert exp == [{"id": 1, "status": "running"}]  # killed: nobody could record anything
    p = resume(runs, 1)
    assert p.returncode == 0, output(p)
    assert "resuming experiment 1" in p.stdout and "transcript replayed" in p.stdout
    rows = trials(runs)
    assert query(runs, "SELECT status FROM experiments") == [{"status": "completed"}]
    assert len(rows) == 14 and all(r["status"] == "completed" for r in rows), rows
    for r in rows:   # a trial that had completed before a kill never ran again
        if r["id"] in done_before:
            assert r["attempts"] == done_before[r["id"]], r
    segs = query(runs, "SELECT number, status FROM segments ORDER BY number")
    assert [s["number"] for s in segs] == list(range(1, kills + 2))
    assert [s["status"] for s in segs] == ["killed"] * kills + ["completed"]
    if mode == "batch":
        assert ref_proc.wait(400) == 0, (ref_runs / "out.txt").read_text()
        ref = trials(ref_runs)
        assert [json.loads(r["params"]) for r in rows] == [json.loads(r["params"]) for r in ref]


def test_sigterm_to_the_job_interrupts_cleanly_and_resume_completes(tmp_path):
    """What a batch system does at the time limit: SIGTERM to every process of the job."""
    space = slow_space(tmp_path)
    runs = tmp_path / "runs"
    args = ["--pilot", "bench", "--algo", "random", "--procs", "3", "--budget", "16",
            "--space", str(space), "--settings", "seed = 5, propose.points = 4"]
    proc = start(runs, *args)
    wait_for(runs, midway(3), 1, proc)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    took = time.time() - t0
    assert proc.returncode != 0, out
    assert took < 10, (took, out)
    assert "Traceback" not in out, out
    assert out.count("Resume with") == 1 and "RESUME=1" in out, out
    time.sleep(0.5)
    assert not leftovers(runs), leftovers(runs)
    assert query(runs, "SELECT status FROM experiments") == [{"status": "interrupted"}]
    st = {r["status"] for r in trials(runs)}
    assert st <= {"completed", "interrupted"} and "interrupted" in st, st
    done_before = {r["id"] for r in trials(runs) if r["status"] == "completed"}
    assert query(runs, "SELECT status FROM segments") == [{"status": "interrupted"}]

    p = resume(runs, 1)
    assert p.returncode == 0, output(p)
    rows = trials(runs)
    assert len(rows) == 16 and all(r["status"] == "completed" for r in rows), rows
    assert all(r["attempts"] == 1 for r in rows if r["id"] in done_before)
    assert any(r["attempts"] == 2 for r in rows)   # the interrupted ones ran again
    assert query(runs, "SELECT status FROM experiments") == [{"status": "completed"}]


def test_ctrl_c_while_mlrmbo_fits_interrupts_within_10_s(tmp_path):
    """SIGINT to the process group (Ctrl-C) while R is busy: the store says interrupted, not
    running, and the terminal gets one line, no traceback storm."""
    runs = tmp_path / "runs"
    proc = start(runs, "--pilot", "bench", "--algo", "mlrMBO", "--procs", "3", "--budget", "60",
                 "--settings", "design.size = 8, propose.points = 2, seed = 2")
    wait_for(runs, completed(runs), 10, proc)   # past the design: now it fits models
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert time.time() - t0 < 10, out
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert query(runs, "SELECT status FROM experiments") == [{"status": "interrupted"}]
    assert not [r for r in trials(runs) if r["status"] in ("running", "queued")]
    time.sleep(0.5)
    assert not leftovers(runs)


PY_OPT = """\
import random

import eqpy


def run():
    s = eqpy.settings()
    rng = random.Random(s["seed"])
    n = int(s["max.budget"])
    sent = 0
    while sent < n:
        k = min(3, n - sent)
        pts = [{"x1": rng.uniform(-5, 10), "x2": rng.uniform(0, 15), "sleep": 0.4}
               for _ in range(k)]
        eqpy.submit(pts)
        sent += k
    got = 0
    while got < n:
        got += len(eqpy.results(min=1)["results"])
    eqpy.done({"seen": got})
"""


def test_eqpy_stream_optimizer_resumes_after_kill(tmp_path):
    env = algorithm(tmp_path, "pystream.py", PY_OPT)
    space = slow_space(tmp_path)
    runs = tmp_path / "runs"
    proc = start(runs, "--pilot", "bench", "--algo", "pystream", "--procs", "3", "--budget",
                 "12", "--space", str(space), "--settings", "seed = 4", env=env)
    wait_for(runs, completed(runs), 4, proc)
    done_before = {r["id"] for r in trials(runs) if r["status"] == "completed"}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    p = run_workflow(runs, "--resume", "1", env=env, timeout=300)
    assert p.returncode == 0, output(p)
    rows = trials(runs)
    assert len(rows) == 12 and all(r["status"] == "completed" for r in rows), rows
    assert all(r["attempts"] == 1 for r in rows if r["id"] in done_before)
    final = json.loads(query(runs, "SELECT final_message FROM experiments")[0]["final_message"])
    assert final == {"seen": 12}   # every result reached the optimizer exactly once


def test_resume_with_a_changed_optimizer_names_the_first_message_that_differs(tmp_path):
    opt = """\
    import eqpy


    def run():
        s = eqpy.settings()
        for i in range(int(s["max.budget"])):
            eqpy.OUT_put('{"x1": %s, "x2": 1.0, "sleep": 0.4}' % X)
            eqpy.IN_get()
        eqpy.OUT_put("DONE")
        eqpy.OUT_put("bye")
    """
    opt = textwrap.dedent(opt)
    env = algorithm(tmp_path, "seq.py", "X = '1.0'\n" + opt)
    space = slow_space(tmp_path)
    runs = tmp_path / "runs"
    proc = start(runs, "--pilot", "bench", "--algo", "seq", "--procs", "2", "--budget", "20",
                 "--space", str(space), env=env)
    wait_for(runs, completed(runs), 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    algorithm(tmp_path, "seq.py", "X = '2.0'\n" + opt)   # the code changed in between
    p = run_workflow(runs, "--resume", "1", env=env, timeout=120)
    assert p.returncode != 0
    err = output(p)
    assert "diverged from the transcript of experiment 1 at its message 2" in err, err
    assert '"x1": 2.0' in err and '"x1": 1.0' in err and "warm.start = 1" in err


def test_optimizer_that_never_answers_fails_after_opt_timeout(tmp_path):
    env = algorithm(tmp_path, "spin.py", """\
    import time

    import eqpy


    def run():
        eqpy.settings()
        while True:        # never proposes anything
            time.sleep(0.1)
    """)
    t0 = time.time()
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "spin", "--procs", "2",
                     "--opt-timeout", "3", env=env, timeout=120)
    assert p.returncode != 0
    assert time.time() - t0 < 60
    err = output(p)
    assert "has sent nothing for" in err and "OPT_TIMEOUT" in err, err
    exp = query(tmp_path, "SELECT status, error FROM experiments")[0]
    assert exp["status"] == "failed" and "OPT_TIMEOUT" in exp["error"]
