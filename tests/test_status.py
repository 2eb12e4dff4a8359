"""Campaigns from the user's side (issue 8 items 1-3): `emews status` over real runs, the CLI's
post-mortem when a job dies under the driver or is stopped, and `--resume` refusals. Faults are
real: SIGKILL to a whole job's process group, to rank 0 only, SIGTERM to the CLI only."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from emews_py.store import init_db
from emews_py.store.queries import STALE_AFTER_S
from helpers import EMEWS, ROOT, json_space, output, query, run_workflow


def status(runs: Path | None, *args: str, db: str | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EMEWS, "status", *args, "--db", db or f"sqlite:///{runs / 'emews.db'}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))


def rows_of(listing: str) -> dict[str, dict[str, str]]:
    """`emews status` as {id: {column: value}} (columns split on runs of 2+ spaces)."""
    lines = listing.splitlines()
    head = re.split(r"\s{2,}", lines[0].strip())
    out = {}
    for ln in lines[1:]:
        if not ln.strip():
            break
        cells = re.split(r"\s{2,}", ln.strip())
        out[cells[0]] = dict(zip(head, cells))
    return out


def sleepy_space(tmp_path: Path, sleep: float) -> Path:
    return json_space(tmp_path / "sleepy.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "sleep", "type": "discrete", "values": [sleep]}])


def start_job(runs: Path, *args: str) -> subprocess.Popen:
    """`emews workflow` in its own session (as a batch job is), output to files in ``runs``."""
    runs.mkdir(exist_ok=True)
    return subprocess.Popen([EMEWS, "workflow", "--runs", str(runs), *args], cwd=ROOT,
                            stdout=open(runs / "out.txt", "w"), stderr=open(runs / "err.txt", "w"),
                            text=True, start_new_session=True)


def job_output(runs: Path) -> str:
    return (runs / "out.txt").read_text() + (runs / "err.txt").read_text()


def wait_for_completed(runs: Path, n: int, proc: subprocess.Popen, limit: float = 90) -> None:
    end = time.time() + limit
    while time.time() < end:
        assert proc.poll() is None, job_output(runs)
        try:
            done = query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"]
        except Exception:  # noqa: BLE001 - the store is being created
            done = 0
        if done >= n:
            return
        time.sleep(0.2)
    pytest.fail(f"fewer than {n} trials completed in {limit} s:\n{job_output(runs)}")


def job_pids(run_dir: Path) -> dict[int, dict]:
    """The processes of the job whose config is in ``run_dir``: {pid: environment}."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            if str(run_dir / "config.json").encode() in cmd:
                env = dict(kv.split("=", 1) for kv in (d / "environ").read_bytes().decode(
                    errors="replace").split("\0") if "=" in kv)
                found[int(d.name)] = env
        except OSError:
            continue
    return found


def gone(run_dir: Path, limit: float = 15) -> bool:
    end = time.time() + limit
    while time.time() < end:
        if not job_pids(run_dir):
            return True
        time.sleep(0.2)
    return False


def the_run_dir(runs: Path) -> Path:
    (d,) = [p for p in runs.iterdir() if p.is_dir()]
    return d


# ---- a completed run ---------------------------------------------------------------------------

def test_status_of_a_completed_run_lists_counts_budget_and_best(tmp_path):
    p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "3", "--budget", "8")
    assert p.returncode == 0, output(p)
    best = query(tmp_path, "SELECT id, objective, params FROM trials WHERE status = 'completed' "
                           "ORDER BY objective LIMIT 1")[0]

    s = status(tmp_path)
    assert s.returncode == 0, s.stderr
    row = rows_of(s.stdout)["1"]
    assert (row["NAME"], row["STATUS"], row["TRIALS"], row["RUNNING"], row["FAILED"],
            row["INTERRUPTED"]) == ("bench-py_random", "completed", "8/8", "0", "0", "0")
    assert float(row["BEST"]) == pytest.approx(best["objective"], rel=1e-5)
    assert re.fullmatch(r"\d+s", row["ELAPSED"]), row
    assert "RESUME" not in s.stdout          # nothing to resume
    for bad in ("soon", "3"):   # not a number; not above the 5 s heartbeat period
        b = status(tmp_path, env={"EMEWS_STALE_AFTER_S": bad})
        err = b.stderr.strip()
        assert b.returncode == 2 and "\n" not in err and f"EMEWS_STALE_AFTER_S='{bad}'" in err, err
        assert "heartbeat period (5 s)" in err and b.stdout == ""

    d = status(tmp_path, "1")
    assert d.returncode == 0, d.stderr
    assert "experiment 1 'bench-py_random'" in d.stdout
    assert re.search(r"status\s+completed", d.stdout)
    assert re.search(r"trials\s+8 completed of 8 \(budget\); 0 running", d.stdout)
    params = json.loads(best["params"])
    assert f"trial {best['id']}: objective" in d.stdout and json.dumps(params) in d.stdout
    assert str(the_run_dir(tmp_path)) in d.stdout

    # Refusals of --resume: one paragraph, exit 2, nothing started.
    for args, words in [(["--resume", "1"], ["completed", "nothing to resume", "warm.start = 1"]),
                        (["--resume", "9"], ["no experiment 9", "experiments are 1 to 1", "--db"]),
                        (["--resume", "x"], ["RESUME='x'", "whole number"]),
                        (["--opt-timeout", "soon"], ["OPT_TIMEOUT='soon'", "greater than 0"])]:
        r = run_workflow(tmp_path, *args, timeout=60)
        err = r.stderr.strip()
        assert r.returncode == 2 and err.startswith("emews: error:") and "\n" not in err, output(r)
        assert all(w in err for w in words), err
        assert "Traceback" not in output(r)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1   # no new run directory
    assert query(tmp_path, "SELECT COUNT(*) AS n FROM experiments")[0]["n"] == 1

    # An experiment recorded before schema 0002 has no config: it cannot be resumed.
    eng = create_engine(f"sqlite:///{tmp_path / 'emews.db'}")
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status, started_at) "
                       "VALUES ('old', 'bench', 'random', 'interrupted', :t)"),
                  {"t": dt.datetime(2026, 1, 1)})
    eng.dispose()
    r = run_workflow(tmp_path, "--resume", "2", timeout=60)
    assert r.returncode == 2 and "before schema version 0002" in r.stderr, output(r)
    assert "warm.start = 2" in r.stderr


def test_status_of_an_empty_or_missing_store_is_one_line(tmp_path):
    s = status(tmp_path)
    assert s.returncode == 2 and "does not exist" in s.stderr and len(s.stderr.splitlines()) == 1
    assert not (tmp_path / "emews.db").exists()
    init_db(f"sqlite:///{tmp_path / 'emews.db'}").dispose()
    s = status(tmp_path)
    assert s.returncode == 1 and s.stderr.strip().endswith("has no experiments yet"), s.stderr
    s = status(tmp_path, "3")
    assert s.returncode == 1 and len(s.stderr.splitlines()) == 1, s.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'emews.db'}"
    from pg_server import new_database
    return new_database(request.getfixturevalue("postgres_url"))


def test_elapsed_sums_the_segments_and_a_stale_one_stops_at_its_last_heartbeat(url):
    """A store as three jobs of one campaign leave it: two ended segments (100 s, 50 s) and a
    third killed 10 s after its start, whose last heartbeat is long past. On SQLite and on
    PostgreSQL, read-only."""
    init_db(url).dispose()
    t0 = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=1)
    s = dt.timedelta(seconds=1)
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status, started_at, "
                       "heartbeat_at, settings, config) VALUES ('camp', 'bench', 'mlrMBO', "
                       "'running', :t0, :hb, '{\"max.budget\": 30}', '{}')"),
                  {"t0": t0, "hb": t0 + 1010 * s})
        c.execute(text("INSERT INTO segments (experiment_id, number, host, pid, procs, started_at, "
                       "heartbeat_at, ended_at, status) VALUES "
                       "(1, 1, 'n1', 11, 4, :a, :a, :b, 'interrupted'), "
                       "(1, 2, 'n2', 22, 8, :c, NULL, :d, 'killed'), "
                       "(1, 3, 'n3', 33, 8, :e, :f, NULL, 'running')"),
                  {"a": t0, "b": t0 + 100 * s, "c": t0 + 500 * s, "d": t0 + 550 * s,
                   "e": t0 + 1000 * s, "f": t0 + 1010 * s})
        c.execute(text("INSERT INTO trials (experiment_id, params, status, objective, started_at) "
                       "VALUES (1, '{\"x\": 1}', 'completed', 2.5, :a), "
                       "(1, '{\"x\": 2}', 'running', NULL, :b)"),
                  {"a": t0 + 10 * s, "b": t0 + 1005 * s})
    eng.dispose()
    p = status(None, db=url)
    assert p.returncode == 0, p.stderr
    row = rows_of(p.stdout)["1"]
    assert (row["STATUS"], row["TRIALS"], row["RUNNING"], row["BEST"], row["ELAPSED"]) == \
        ("stale", "1/30", "1", "2.5", "2m40s")                      # 100 + 50 + 10 s
    assert "experiment 1 is stale" in p.stdout
    assert f"make workflow RESUME=1 DB={url}" in p.stdout
    d = status(None, "1", db=url).stdout
    assert re.search(r"elapsed\s+2m40s over 3 segments", d), d
    assert re.search(r"3\s+n3\s+33\s+8\s+.*UTC\s+-\s+10s\s+stale", d), d
    assert re.search(r"2\s+n2\s+22\s+8\s+.*UTC\s+.*UTC\s+50s\s+killed", d), d
    assert "running trials:" in d and '{"x": 2}' in d


# ---- jobs that die ------------------------------------------------------------------------------

# A staleness threshold above the driver's 5 s heartbeat but well below the default STALE_AFTER_S,
# so that the test waits 9 s for a killed job to turn stale instead of 31 s.
STALE_S = 8.0
STALE_ENV = {"EMEWS_STALE_AFTER_S": str(STALE_S)}
assert STALE_S < STALE_AFTER_S

def test_kill_9_of_the_whole_job_leaves_running_then_status_says_stale(tmp_path):
    """SIGKILL to the job's process group (the CLI, mpiexec; the ranks go with mpiexec): nothing
    can record it, the store still says running; `emews status` shows it alive at first, then
    stale with the resume command once EMEWS_STALE_AFTER_S (here STALE_S, not the default
    STALE_AFTER_S) passed without a sign of life."""
    space = sleepy_space(tmp_path, 0.3)
    runs = tmp_path / "runs"
    proc = start_job(runs, "--algo", "py_random", "--procs", "3", "--budget", "200",
                     "--space", str(space))
    wait_for_completed(runs, 3, proc)
    run_dir = the_run_dir(runs)
    assert job_pids(run_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    proc.wait(10)
    assert gone(run_dir), job_pids(run_dir)   # no rank or trial outlives the job
    exp = query(runs, "SELECT status, finished_at FROM experiments")[0]
    assert exp == {"status": "running", "finished_at": None}

    # RUN_DIR/driver.pid names this node and a pid now free: stale at once, not after the
    # heartbeat's threshold.
    (driver,) = query(runs, "SELECT pid FROM segments")
    fresh = status(runs, env={"EMEWS_STALE_AFTER_S": "600"})
    assert rows_of(fresh.stdout)["1"]["STATUS"] == "stale", fresh.stdout
    assert "experiment 1 is stale" in fresh.stdout and "RESUME=1" in fresh.stdout
    d = status(runs, "1", env={"EMEWS_STALE_AFTER_S": "600"})
    assert f"and its driver (pid {driver['pid']} on this node) is gone" in d.stdout, d.stdout
    # Without that file (a run directory this node cannot see) only the heartbeat tells: within
    # its threshold the store cannot tell it from a live job.
    (run_dir / "driver.pid").rename(run_dir / "driver.pid.away")
    fresh = status(runs, env=STALE_ENV)
    assert rows_of(fresh.stdout)["1"]["STATUS"] in ("running", "stale"), fresh.stdout

    time.sleep(max(0.0, killed_at + STALE_S + 1 - time.time()))
    s = status(runs, env=STALE_ENV)
    assert s.returncode == 0, s.stderr
    row = rows_of(s.stdout)["1"]
    done = query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"]
    assert row["STATUS"] == "stale" and row["TRIALS"] == f"{done}/200", s.stdout
    assert f"make workflow RESUME=1 DB=sqlite:///{runs / 'emews.db'}" in s.stdout
    assert f"emews workflow --resume 1 --db sqlite:///{runs / 'emews.db'}" in s.stdout
    d = status(runs, "1", env=STALE_ENV)
    assert re.search(r"status\s+stale: the store says running, but its job has given no sign "
                     r"of life for", d.stdout), d.stdout
    # A resume must see what the optimizer saw: a new budget is refused, pointing to warm.start.
    r = run_workflow(runs, "--resume", "1", "--budget", "300", timeout=60, env=STALE_ENV)
    err = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in err and "BUDGET='300'" in err, output(r)
    assert "diverge" in err and "warm.start = 1" in err


def test_kill_9_of_rank_0_only_the_cli_records_the_experiment_failed(tmp_path):
    """The MPI job dies under the driver: the CLI survives it, marks the experiment failed, its
    unfinished trials interrupted (a resume runs them), and says how to resume."""
    space = sleepy_space(tmp_path, 0.3)
    runs = tmp_path / "runs"
    proc = start_job(runs, "--algo", "py_random", "--procs", "3", "--budget", "200",
                     "--space", str(space))
    wait_for_completed(runs, 3, proc)
    run_dir = the_run_dir(runs)
    (rank0,) = [pid for pid, env in job_pids(run_dir).items() if env.get("PMI_RANK") == "0"]
    os.kill(rank0, signal.SIGKILL)
    rc = proc.wait(60)
    out = job_output(runs)
    assert rc != 0, out
    assert gone(run_dir), job_pids(run_dir)
    exp = query(runs, "SELECT status, error, finished_at FROM experiments")[0]
    assert exp["status"] == "failed" and "ended abnormally" in exp["error"], out
    assert exp["finished_at"] is not None
    trials = query(runs, "SELECT status, error FROM trials")
    assert {t["status"] for t in trials} <= {"completed", "interrupted"}
    assert any(t["status"] == "interrupted" for t in trials)
    assert all("resume runs it again" in t["error"] for t in trials if t["status"] == "interrupted")
    assert f"make workflow RESUME=1 DB=sqlite:///{runs / 'emews.db'}" in out, out
    assert "Traceback" not in (runs / "err.txt").read_text().split("[emews] experiment 1")[-1]
    s = status(runs)
    assert rows_of(s.stdout)["1"]["STATUS"] == "failed" and "experiment 1 failed; resume" in s.stdout


def test_sigterm_to_the_cli_only_stops_the_job_and_records_it_interrupted(tmp_path):
    """`kill PID` of the CLI alone (not its group): it passes the stop on to mpiexec, waits for
    the job, and the store says interrupted (by the driver, or by the CLI's post-mortem);
    nothing of the job is left running and no trial is left queued or running. Before that,
    while the job runs, `--resume` is refused."""
    space = sleepy_space(tmp_path, 0.3)
    runs = tmp_path / "runs"
    proc = start_job(runs, "--algo", "py_random", "--procs", "3", "--budget", "200",
                     "--space", str(space))
    wait_for_completed(runs, 3, proc)
    run_dir = the_run_dir(runs)
    # While it runs, a resume is refused, saying where it runs.
    r = run_workflow(runs, "--resume", "1", timeout=60)
    err = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in err and "is still running" in err, output(r)
    (seg,) = query(runs, "SELECT host, pid FROM segments")
    assert f"on host {seg['host']}, pid {seg['pid']}" in err, err
    assert len([d for d in runs.iterdir() if d.is_dir()]) == 1   # no new run directory
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(40)
    out = job_output(runs)
    assert rc != 0 and time.time() - t0 < 25, out
    assert gone(run_dir), job_pids(run_dir)
    assert "SIGTERM: stopping the run" in out
    cli_err = (runs / "err.txt").read_text()
    assert "Traceback" not in cli_err.split("[emews] SIGTERM")[-1], cli_err
    exp = query(runs, "SELECT status FROM experiments")[0]
    assert exp["status"] == "interrupted", out
    trials = query(runs, "SELECT status FROM trials")
    assert {t["status"] for t in trials} <= {"completed", "interrupted", "failed", "timeout"}
    assert "RESUME=1" in out
    s = status(runs)
    assert rows_of(s.stdout)["1"]["STATUS"] == "interrupted"
    assert "experiment 1 was interrupted; resume it with" in s.stdout


def test_ctrl_c_at_a_terminal_stops_the_job_and_records_it_interrupted(tmp_path):
    """A real Ctrl-C: the job runs in a session whose controlling terminal is a pty, and ^C is
    typed into it, so the kernel sends SIGINT to the foreground process group (the CLI and
    mpiexec). The CLI waits for the driver to record the stop instead of killing mpiexec."""
    import fcntl
    import pty
    import termios
    import threading

    space = sleepy_space(tmp_path, 0.3)
    runs = tmp_path / "runs"
    runs.mkdir()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [EMEWS, "workflow", "--runs", str(runs), "--algo", "py_random", "--procs", "3",
         "--budget", "200", "--space", str(space)], cwd=ROOT, stdin=slave, stdout=slave,
        stderr=slave, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))   # the pty is its terminal
    os.close(slave)
    seen = bytearray()

    def read():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the session's last process closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for_completed(runs, 3, proc)
        run_dir = the_run_dir(runs)
        t0 = time.time()
        os.write(master, b"\x03")
        rc = proc.wait(40)
        elapsed = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)
        os.close(master)
    out = seen.decode(errors="replace")
    assert rc != 0 and elapsed < 20, out
    assert gone(run_dir), job_pids(run_dir)
    assert "SIGINT: stopping the run" in out and "Traceback" not in out, out
    assert query(runs, "SELECT status FROM experiments")[0]["status"] == "interrupted", out
    left = query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status IN ('queued', 'running')")
    assert left[0]["n"] == 0
    assert "RESUME=1" in out


# ---- whether the driver lives: node, PID namespace, start time ----------------------------------

LONG_STALE = {"EMEWS_STALE_AFTER_S": "600"}   # the heartbeat alone keeps these jobs "running"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("choosing a process's pid (/proc/sys/kernel/ns_last_pid) needs root")


def recycle_pid(pid: int) -> subprocess.Popen:
    """An unrelated process (`sleep`) that gets the freed ``pid``, as after pid reuse: the kernel
    hands out the pid after ns_last_pid next (other processes may take it first: retried)."""
    deadline = time.time() + 20
    while time.time() < deadline and Path(f"/proc/{pid}").exists():   # a zombie being reaped
        time.sleep(0.1)
    for _ in range(100):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        p = subprocess.Popen(["sleep", "300"])
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    pytest.fail(f"could not start a process with pid {pid}")


def test_a_killed_driver_whose_pid_now_belongs_to_another_process_is_shown_gone(tmp_path):
    """kill -9 of the whole job, then its driver's pid goes to an unrelated live process (real
    pid reuse). That process started after the driver wrote RUN_DIR/driver.pid (/proc/PID/stat
    field 22), so it is not taken for the driver: `emews status` shows the experiment stale at
    once, and a resume is not refused as still running; the impostor is left alone."""
    needs_root()
    runs = tmp_path / "runs"
    proc = start_job(runs, "--algo", "py_random", "--procs", "3", "--budget", "200",
                     "--space", str(sleepy_space(tmp_path, 0.3)))
    wait_for_completed(runs, 2, proc)
    run_dir = the_run_dir(runs)
    (driver,) = [r["pid"] for r in query(runs, "SELECT pid FROM segments")]
    assert (run_dir / "driver.pid").read_text().split()[0] == str(driver)
    alive = status(runs, env=LONG_STALE)
    assert rows_of(alive.stdout)["1"]["STATUS"] == "running", alive.stdout
    # As if the wall clock had been stepped forward since the file was written: the driver
    # seems to have started after it, but its command line shows that it is the driver.
    pid_file = run_dir / "driver.pid"
    written = pid_file.stat()
    os.utime(pid_file, (written.st_atime - 3600, written.st_mtime - 3600))
    stepped = status(runs, env=LONG_STALE)
    assert rows_of(stepped.stdout)["1"]["STATUS"] == "running", stepped.stdout
    os.utime(pid_file, (written.st_atime, written.st_mtime))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert gone(run_dir), job_pids(run_dir)
    assert query(runs, "SELECT status FROM experiments") == [{"status": "running"}]
    impostor = recycle_pid(driver)
    try:
        s = status(runs, env=LONG_STALE)
        assert s.returncode == 0, s.stderr
        assert rows_of(s.stdout)["1"]["STATUS"] == "stale", s.stdout
        assert f"make workflow RESUME=1 DB=sqlite:///{runs / 'emews.db'}" in s.stdout
        d = status(runs, "1", env=LONG_STALE)
        assert f"its driver (pid {driver} on this node) is gone" in d.stdout, d.stdout
        # The resume passes the still-running check and stops at the next one (a new budget).
        r = run_workflow(runs, "--resume", "1", "--budget", "300", timeout=60, env=LONG_STALE)
        assert r.returncode == 2 and "still running" not in r.stderr, output(r)
        assert "BUDGET='300'" in r.stderr, output(r)
        assert impostor.poll() is None   # nobody signalled it
    finally:
        impostor.kill()
        impostor.wait()


def test_a_live_driver_in_another_pid_namespace_is_not_taken_for_dead(tmp_path):
    """A job whose ranks run in a PID namespace of their own (a container): its driver's pid
    means nothing here and is free here. Judged by hostname and pid that driver was dead and a
    second job could resume the live experiment; RUN_DIR/driver.pid's node (hostname, boot id,
    PID namespace) differs from this one, so only the heartbeat tells: running, resume refused."""
    needs_root()
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    runs = tmp_path / "runs"
    runs.mkdir()
    # In the namespace, pids start at 3,000,000 (above this machine's pids in use).
    cmd = shlex.join([EMEWS, "workflow", "--runs", str(runs), "--algo", "py_random", "--procs",
                      "3", "--budget", "200", "--space", str(sleepy_space(tmp_path, 0.3))])
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
         f"echo 3000000 > /proc/sys/kernel/ns_last_pid && {cmd}"],
        cwd=ROOT, stdout=open(runs / "out.txt", "w"), stderr=open(runs / "err.txt", "w"),
        start_new_session=True)
    try:
        wait_for_completed(runs, 2, proc)
        run_dir = the_run_dir(runs)
        (seg,) = query(runs, "SELECT host, pid FROM segments")
        assert seg["pid"] > 3_000_000 and not Path(f"/proc/{seg['pid']}").exists(), seg
        assert seg["host"] == socket.gethostname()
        s = status(runs, env=LONG_STALE)
        assert rows_of(s.stdout)["1"]["STATUS"] == "running", s.stdout
        r = run_workflow(runs, "--resume", "1", timeout=60, env=LONG_STALE)
        err = r.stderr.strip()
        assert r.returncode == 2 and "is still running" in err, output(r)
        assert len([d for d in runs.iterdir() if d.is_dir()]) == 1   # nothing started
        assert proc.poll() is None, job_output(runs)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the namespace's init: every process in it goes
        proc.wait(10)
    assert gone(run_dir), job_pids(run_dir)


def test_the_cli_passes_a_stop_only_to_this_jobs_driver(tmp_path):
    """run_job passes a SIGTERM on to the pid in RUN_DIR/driver.pid: not when the file is an
    earlier job's (written before this job started) or when its pid now names a process that
    started after the file was written (a recycled pid); a real driver (started before it wrote
    the file) gets it."""
    from emews_py.cli import signal_driver
    from emews_py.farm.transport import node_id
    pid_file = tmp_path / "driver.pid"
    victim = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.1)
        pid_file.write_text(f"{victim.pid} {node_id()}\n")
        job_start = time.time()
        old = job_start - 600                       # an earlier job's file
        os.utime(pid_file, (old, old))
        assert not signal_driver(pid_file, since=job_start)
        # the file written long before the process started: a recycled pid, not the driver
        assert not signal_driver(pid_file, since=0.0)
        assert victim.poll() is None
        pid_file.write_text(f"{victim.pid} {node_id()}\n")    # written after it started
        assert signal_driver(pid_file, since=job_start)
        assert victim.wait(10) == -signal.SIGTERM
    finally:
        victim.kill()
        victim.wait()
