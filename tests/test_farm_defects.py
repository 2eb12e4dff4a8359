"""Farm defects found by reading and by trying, each through the real farm (mpiexec, ZeroMQ, R or
Python optimizer, SQLite): what a user sees in the store and on the terminal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, json_space, output, query, run_workflow
from helpers import algorithm as algo

from emews_py.config import RunConfig


def test_watchdog_blames_the_trial_that_hangs_inside_a_chunk(tmp_path):
    """Fast trials travel in chunks; the one that hangs in the middle of a chunk is the one
    blamed, those before it stay completed, those behind it run elsewhere."""
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "hang", "type": "numeric", "lower": 0, "upper": 600}])
    env = algo(tmp_path, "chunkhang.py", """\
        import eqpy

        def run():
            eqpy.batch([{"x1": 1.0, "x2": 2.0, "hang": 0}] * 300)  # the farm learns: fast trials
            pts = [{"x1": 1.0, "x2": 2.0, "hang": 0} for _ in range(40)]
            pts[4]["hang"] = 600
            eqpy.done([x["status"] for x in eqpy.batch(pts)])
        """)
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "chunkhang", "--procs", "3", "--space", str(space),
                     "--timeout", "1", "--budget", "340", env=env, timeout=120)  # 300 + 40 trials
    assert p.returncode == 0, output(p)
    assert time.time() - t0 < 60
    final = json.loads(query(tmp_path, "SELECT final_message FROM experiments")[0]["final_message"])
    assert final == ["completed"] * 4 + ["timeout"] + ["completed"] * 35
    rows = query(tmp_path, "SELECT status, error, params FROM trials ORDER BY id")[300:]
    hung = [r for r in rows if json.loads(r["params"])["hang"] == 600]
    assert len(hung) == 1 and hung[0]["status"] == "timeout"
    # its worker killed the trial's interpreter and went on (no worker is retired any more)
    assert "time limit of 1 s (TIMEOUT)" in hung[0]["error"] and "was killed" in hung[0]["error"]
    assert sum(r["status"] == "completed" for r in rows) == 39
    assert query(tmp_path, "SELECT status FROM experiments")[0]["status"] == "completed"


def test_plain_batch_value_with_a_semicolon_is_not_blamed_on_the_optimizer(tmp_path):
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "function", "type": "discrete", "values": ["branin", "a;b"]}])
    env = algo(tmp_path, "semi.py", """\
        import eqpy

        def run():
            eqpy.OUT_put('{"x1": 1.0, "x2": 2.0, "function": "a;b"};'
                         '{"x1": 1.0, "x2": 2.0, "function": "branin"}')
            got = eqpy.IN_get()
            eqpy.OUT_put("DONE")
            eqpy.OUT_put(got)
        """)
    p = run_workflow(tmp_path, "--algo", "semi", "--procs", "2", "--space", str(space), env=env)
    assert p.returncode == 0, output(p)
    rows = query(tmp_path, "SELECT status, params, error FROM trials ORDER BY id")
    assert json.loads(rows[0]["params"])["function"] == "a;b"
    assert rows[0]["status"] == "failed" and "a;b" in rows[0]["error"]  # the pilot's verdict
    assert rows[1]["status"] == "completed"
    assert query(tmp_path, "SELECT final_message FROM experiments")[0]["final_message"] \
        .startswith("nan;")


def test_integer_inf_and_missing_parameter_fail_clearly(tmp_path):
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "n", "type": "integer", "lower": 1, "upper": 20}])
    for i, (msg, expect) in enumerate([('{"x1": 1, "n": Infinity}', "'n' = inf is not a finite"),
                                       ('{"x1": 1}', "'n' of the search space")]):
        runs = tmp_path / str(i)
        env = algo(runs, "pt.py", f"import eqpy\n\ndef run():\n    eqpy.OUT_put({msg!r})\n"
                                  f"    eqpy.IN_get()\n")
        p = run_workflow(runs, "--algo", "pt", "--procs", "2", "--space", str(space), env=env,
                         timeout=60)
        assert p.returncode != 0 and expect in output(p)
        assert "internal error" not in output(p)
        exp = query(runs, "SELECT status, error FROM experiments")[0]
        assert exp["status"] == "failed" and expect in exp["error"] and str(space) in exp["error"]
        assert query(runs, "SELECT COUNT(*) AS n FROM trials")[0]["n"] == 0


BROKEN_IMPORT = """\
import importlib.abc, os, sys, time

class _Broken(importlib.abc.MetaPathFinder):
    # A resident worker's pilot import fails (as a missing CUDA library would), after a while.
    def find_spec(self, name, path=None, target=None):
        if name == "pilots.bench" and os.environ.get("PMI_RANK", "0") != "0":
            time.sleep(3)
            raise ImportError("libcudart.so.12: cannot open shared object file (simulated)")
        return None

sys.meta_path.insert(0, _Broken())
"""


def test_failed_resident_import_fails_clearly_and_never_runs_trials_in_app_mode(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BROKEN_IMPORT)
    p = run_workflow(tmp_path, "--algo", "random", "--procs", "2", "--budget", "4",
                     env={"PYTHONPATH": str(site)}, timeout=90)
    assert p.returncode != 0
    exp = query(tmp_path, "SELECT status, error, run_dir FROM experiments")[0]
    assert exp["status"] == "failed"
    for e in ("worker 1 on ", "could not import pilot 'bench'", "MODE=resident", "libcudart.so.12"):
        assert e in exp["error"] and e in output(p)
    assert not (Path(exp["run_dir"]) / "trials").exists()  # no app-mode subprocess ran
    assert all(r["status"] != "completed" for r in query(tmp_path, "SELECT status FROM trials"))


def test_optimizer_that_cannot_be_started_ends_the_experiment_failed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    db = f"sqlite:///{tmp_path / 'emews.db'}"
    cfg = RunConfig(exp="nostart", pilot="bench", algo="py_random",
                    algo_file=str(ROOT / "py_algorithms" / "py_random.py"), db=db,
                    run_dir=str(run_dir), endpoint="ipc:///nonexistent-dir/emews-x.sock",
                    settings={"max.budget": 2})
    cfg.write(run_dir / "config.json")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    p = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "emews_py.farm",
                        str(run_dir / "config.json")], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode != 0
    exp = query(tmp_path, "SELECT status, error FROM experiments")[0]
    assert exp["status"] == "failed"
    assert "ipc:///nonexistent-dir/emews-x.sock" in exp["error"] and "cannot be bound" in exp["error"]
    assert "internal error" not in exp["error"]


def test_optimizer_gone_from_its_socket_fails_the_run_instead_of_blocking(tmp_path):
    # The trial sleeps 2 s, so the optimizer's socket is surely closed before the answer is ready
    # (an answer handed over before the close would just sit unread in the pipe).
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "sleep", "type": "numeric", "lower": 0, "upper": 5}])
    env = algo(tmp_path, "gone.py", """\
        import time
        import eqpy
        from emews_py import eq

        def run():
            eqpy.OUT_put('{"x1": 1.0, "sleep": 2.0}')
            # alive, but nobody will read the answer; the linger lets the put above leave first
            # (linger=0 may drop it, and the driver would then wait for a message never sent)
            eq.client().sock.close(linger=5000)
            time.sleep(120)
        """)
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "gone", "--procs", "2", "--space", str(space), env=env,
                     timeout=90)
    assert p.returncode != 0 and time.time() - t0 < 45, output(p)
    exp = query(tmp_path, "SELECT status, error FROM experiments")[0]
    assert exp["status"] == "failed" and "the optimizer is gone" in exp["error"]


def test_post_mortem_uses_the_one_rule_for_leftover_trials(tmp_path):
    """kill -9 of a worker rank kills the job under the driver (MPI cannot lose a rank); the CLI
    records it, with the same rule for every trial left open."""
    space = json_space(tmp_path / "s.json", [{"id": "sleep", "type": "numeric", "lower": 0,
                                              "upper": 60}])
    env = algo(tmp_path, "sleep3.py", "import eqpy\n\ndef run():\n"
                                      "    eqpy.OUT_put('{\"sleep\": 30};{\"sleep\": 0};"
                                      "{\"sleep\": 0}')\n    eqpy.IN_get()\n")
    cmd = [str(Path(sys.executable).parent / "emews"), "workflow", "--runs", str(tmp_path),
           "--algo", "sleep3", "--procs", "2", "--space", str(space)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env={**os.environ, **env})
    try:
        rank = None
        for _ in range(600):  # the worker rank: its MPI rank is in its environment
            time.sleep(0.1)
            for d in Path("/proc").iterdir():
                try:
                    if (d.name.isdigit() and str(tmp_path) in (d / "cmdline").read_text()
                            and b"PMI_RANK=1\0" in (d / "environ").read_bytes()):
                        rank = int(d.name)
                except OSError:
                    continue
            if rank and (tmp_path / "emews.db").exists() and query(
                    tmp_path, "SELECT id FROM trials WHERE status = 'running'"):
                break
        assert rank, "no worker rank found"
        os.kill(rank, 9)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    exp = query(tmp_path, "SELECT status, error FROM experiments")[0]
    assert exp["status"] == "failed" and "MPI job ended abnormally" in exp["error"]
    rows = query(tmp_path, "SELECT status, error, finished_at FROM trials ORDER BY id")
    # running or queued when the job died: all open, so all interrupted (a resume runs them)
    assert [r["status"] for r in rows] == ["interrupted"] * 3
    assert all(r["finished_at"] and r["error"] for r in rows)
