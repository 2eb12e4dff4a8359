"""Worker faults cost only their trial: real faults (SIGKILL of a trial's interpreter, a trial
stuck where its time limit cannot reach it, kill -9 of a worker rank, STOP mid-trial) through the
real farm (mpiexec, ZeroMQ, SQLite), checked as a user would: the store and `ps`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import EMEWS, ROOT, json_space, output, query, run_workflow
from helpers import algorithm as algo

from emews_py.config import RunConfig


def processes() -> dict[int, str]:
    """pid -> command line of every live (non-zombie) process, read from /proc as `ps` does."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd and state != "Z":
            out[int(d.name)] = cmd
    return out


def wait_for(cond, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_killed_interpreter_costs_only_its_trial(tmp_path):
    """A trial that kills its interpreter with SIGKILL (as the OOM killer would) in the middle of
    a chunk of fast trials: that trial is `failed` naming the signal; the trials before it in the
    chunk (whose results died with the interpreter) and after it run in a fresh interpreter and
    complete; the experiment completes."""
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "crash", "type": "logical"}])
    env = algo(tmp_path, "crashy.py", """\
        import eqpy

        def run():
            eqpy.batch([{"x1": 1.0, "x2": 2.0, "crash": False}] * 300)  # the farm learns: fast
            pts = [{"x1": 1.0, "x2": 2.0, "crash": False} for _ in range(40)]
            pts[4]["crash"] = True
            eqpy.done([x["status"] for x in eqpy.batch(pts)])
        """)
    p = run_workflow(tmp_path, "--algo", "crashy", "--procs", "3", "--space", str(space),
                     "--budget", "340", env=env, timeout=120)
    assert p.returncode == 0, output(p)
    exp = query(tmp_path, "SELECT status, final_message FROM experiments")[0]
    assert exp["status"] == "completed"
    assert json.loads(exp["final_message"]) == ["completed"] * 4 + ["failed"] + ["completed"] * 35
    rows = query(tmp_path, "SELECT status, error, params FROM trials ORDER BY id")
    crashed = [r for r in rows if json.loads(r["params"])["crash"]]
    assert len(crashed) == 1 and crashed[0]["status"] == "failed"
    assert "killed by signal SIGKILL" in crashed[0]["error"]
    assert sum(r["status"] == "completed" for r in rows) == 339
    assert "a fresh interpreter" in p.stdout  # the worker said it replaced its interpreter


def test_trials_stuck_past_timeout_are_killed_and_no_worker_is_retired(tmp_path):
    """A 20% hang rate in code the cooperative time limit cannot reach (bench `hang`: a sleep
    that never looks at the deadline): each hung trial is `timeout` after TIMEOUT plus 10 s grace,
    the workers go on with the other trials (each worker's first trial hangs, so every other
    trial runs on a worker that had a stuck one), and the experiment completes."""
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "hang", "type": "numeric", "lower": 0, "upper": 600},
        {"id": "sleep", "type": "numeric", "lower": 0, "upper": 1}])
    env = algo(tmp_path, "hangy.py", """\
        import eqpy

        def run():
            pts = [{"x1": float(i), "hang": 600 if i < 2 else 0, "sleep": 0.2} for i in range(10)]
            eqpy.done([x["status"] for x in eqpy.batch(pts)])
        """)
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "hangy", "--procs", "3", "--space", str(space),
                     "--timeout", "1", "--budget", "10", env=env, timeout=120)
    assert p.returncode == 0, output(p)
    assert time.time() - t0 < 45  # 1 s limit + 10 s grace, not the 600 s hang
    exp = query(tmp_path, "SELECT status, final_message FROM experiments")[0]
    assert exp["status"] == "completed"
    assert json.loads(exp["final_message"]) == ["timeout"] * 2 + ["completed"] * 8
    rows = query(tmp_path, "SELECT id, status, error, worker FROM trials ORDER BY id")
    assert {r["worker"] for r in rows[:2]} == {1, 2}   # each worker had a stuck trial ...
    assert {r["worker"] for r in rows[2:]} == {1, 2}   # ... and both ran trials after it
    for r in rows[:2]:
        assert "time limit of 1 s (TIMEOUT)" in r["error"] and "was killed" in r["error"]
    assert "out of service" not in output(p)


def test_app_mode_trial_processes_die_with_a_killed_worker_rank(tmp_path):
    """kill -9 of a worker rank while its app-mode trial sleeps: the MPI job dies (MPI cannot
    lose a rank), and no trial process is left behind (on a cluster it would hold a GPU)."""
    space = json_space(tmp_path / "s.json", [{"id": "hang", "type": "numeric", "lower": 0,
                                              "upper": 600}])
    env = algo(tmp_path, "sleepy.py", """\
        import eqpy

        def run():
            eqpy.batch([{"hang": 300}, {"hang": 300}])
        """)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(runs), "--algo", "sleepy",
                             "--procs", "3", "--space", str(space), "--mode", "app"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, **env})
    try:
        def trials():  # the app-mode trial processes of this run
            return {pid: cmd for pid, cmd in processes().items()
                    if "emews_py.app" in cmd and str(runs) in cmd}
        found = wait_for(lambda: len(trials()) == 2 and trials(), 60, "two trial processes")
        trial = min(found)
        rank = int(Path(f"/proc/{trial}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert "emews_py.farm" in processes()[rank]  # its parent: the worker rank
        os.kill(rank, signal.SIGKILL)
        proc.wait(timeout=60)
        # Both trial processes are gone: the killed rank's by PR_SET_PDEATHSIG, the other's
        # with its rank when MPI tore the job down.
        wait_for(lambda: not trials(), 10, f"no trial process left ({trials()})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


STOP_DRIVER = textwrap.dedent("""\
    # Rank 0 acting as the driver: one long trial to worker 1, then STOP while it runs.
    import json, sys, time
    from mpi4py import MPI
    from emews_py.config import RunConfig
    from emews_py.farm.transport import Tag
    comm = MPI.COMM_WORLD
    cfg = RunConfig.read(sys.argv[1])
    if comm.Get_rank() == 0:
        hello = comm.recv(source=1, tag=Tag.HELLO)
        comm.send([(7, {"sleep": 60.0}), (8, {"sleep": 0.0})], dest=1, tag=Tag.TASKS)
        time.sleep(2.0)
        print(json.dumps(hello), flush=True)
        t0 = time.time()
        comm.send(None, dest=1, tag=Tag.STOP)
        comm.recv(source=1, tag=99)
        print(json.dumps({"stop_s": time.time() - t0}), flush=True)
    else:
        from emews_py.farm.worker import Worker
        Worker(comm, cfg).serve()
        comm.send(None, dest=0, tag=99)
    """)


@pytest.mark.parametrize("mode", ["resident", "app"])
def test_stop_while_a_long_trial_runs_ends_the_worker_and_its_trial_process(tmp_path, mode):
    """The worker reads STOP mid-trial (it never blocks in a trial) and leaves within a second or
    two, and the process running the trial is gone."""
    cfg = RunConfig(exp="stop", pilot="bench", algo="x", algo_file="x", db="sqlite://",
                    run_dir=str(tmp_path), endpoint="ipc://x", mode=mode)
    cfg.write(tmp_path / "config.json")
    (tmp_path / "driver.py").write_text(STOP_DRIVER)
    p = subprocess.run([str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable,
                        str(tmp_path / "driver.py"), str(tmp_path / "config.json")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, output(p)
    hello, stopped = [json.loads(line) for line in p.stdout.splitlines()[-2:]]
    assert stopped["stop_s"] < 3.0
    assert hello["mode"] == mode and "error" not in hello
    left = [pid for pid, cmd in processes().items()
            if ("emews_py.farm.child" in cmd and pid == hello.get("child_pid"))
            or ("emews_py.app" in cmd and str(tmp_path) in cmd)]
    assert left == []


CRASH_AT_START = textwrap.dedent("""\
    # The worker's interpreter dies with SIGSEGV before it can import anything (as a pilot whose
    # import crashes in native code would): rank 0 prints the worker's hello.
    import json, os, sys
    from mpi4py import MPI
    from emews_py.config import RunConfig
    from emews_py.farm.transport import Tag
    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 0:
        hello = comm.recv(source=1, tag=Tag.HELLO)
        comm.send(None, dest=1, tag=Tag.STOP)
        comm.recv(source=1, tag=99)
        print(json.dumps(hello), flush=True)
    else:
        from emews_py.farm import worker
        worker.sys.executable = sys.argv[2]  # the child command starts with it
        worker.Worker(comm, RunConfig.read(sys.argv[1])).serve()
        comm.send(None, dest=0, tag=99)
    """)


def test_an_interpreter_that_dies_at_every_start_is_given_up_after_three(tmp_path):
    cfg = RunConfig(exp="seg", pilot="bench", algo="x", algo_file="x", db="sqlite://",
                    run_dir=str(tmp_path), endpoint="ipc://x")
    cfg.write(tmp_path / "config.json")
    (tmp_path / "driver.py").write_text(CRASH_AT_START)
    segv = tmp_path / "segv.sh"
    segv.write_text("#!/bin/sh\nkill -SEGV $$\n")
    segv.chmod(0o755)
    p = subprocess.run([str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable,
                        str(tmp_path / "driver.py"), str(tmp_path / "config.json"), str(segv)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, output(p)
    hello = json.loads(p.stdout.splitlines()[-1])
    assert "died 3 times in a row" in hello["error"] and "SIGSEGV" in hello["error"]
    assert "while importing the pilot" in hello["error"]
