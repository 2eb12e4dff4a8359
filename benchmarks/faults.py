"""Faults benchmark: a bench search run once without faults and once with real faults injected at
random times, then what was lost, what ran twice, and what the faults cost in wall time.

    .venv/bin/python benchmarks/faults.py [--trials 200] [--procs 5] [--seed 1]
        [--store postgresql|sqlite] [--sleep 0.2] [--timeout 3]

The faulty run gets, at random times (seeded) within the fault-free run's duration:
- worker kills: SIGKILL to a resident interpreter (the child process of a worker rank), as the
  OOM killer or a segfault would: its trial must be `failed`, the rest go on;
- stuck trials: SIGSTOP to a resident interpreter (a trial stuck in native code): its worker
  must kill it past TIMEOUT plus grace and record `timeout`;
- a database restart: PostgreSQL stopped (`pg_ctl stop -m fast`) for 5 s and started again (with
  `--store sqlite`: another client holds the write lock for 5 s);
- a SIGTERM to the whole job (a batch system's time limit), then `emews workflow --resume`.

It prints: trials completed, failed and timed out; completed trials run more than once (must be
0); trials lost (the budget minus the trials with a final state: must be 0); wall time of the
faulty run (both segments) against the fault-free run in the same invocation.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

SPACE = """param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeDiscreteParam("sleep", values = c({sleep}))
)
"""


def workflow(runs: Path, db: str, a, *extra: str) -> subprocess.Popen:
    cmd = [str(BIN / "emews"), "workflow", "--runs", str(runs), "--db", db, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def new_run_args(a, space: Path) -> list[str]:
    return ["--pilot", "bench", "--algo", "random", "--procs", str(a.procs), "--budget",
            str(a.trials), "--space", str(space), "--timeout", str(a.timeout), "--settings",
            f"seed = {a.seed}, propose.points = {a.procs - 1}"]


def sql(db: str, q: str) -> list[dict]:
    eng = create_engine(db)
    try:
        with eng.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(q))]
    finally:
        eng.dispose()


def sql_quiet(db: str, q: str) -> list[dict]:
    """``sql``, or nothing while the store is not there yet."""
    try:
        return sql(db, q)
    except Exception:  # noqa: BLE001 - the tables do not exist yet
        return []


def span(db: str) -> float:
    """Seconds from the first trial's start to the last trial's end (the search without
    start-up), from the store."""
    r = sql(db, "SELECT MIN(started_at) AS a, MAX(finished_at) AS b FROM trials")[0]
    a, b = r["a"], r["b"]
    if isinstance(a, str):   # SQLite gives text
        import datetime as dt
        a, b = dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)
    return (b - a).total_seconds()


def interpreters(runs: Path) -> list[int]:
    """The resident interpreters (children of this run's worker ranks)."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                args = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                ppid = int((d / "stat").read_text().split(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(d.name)] = (ppid, args)
    ranks = {p for p, (_, args) in procs.items() if "emews_py.farm " in args and str(runs) in args}
    return [p for p, (pp, args) in procs.items() if pp in ranks and "emews_py.farm.child" in args]


class Faults:
    """Injects the faults at their times, into whichever job of the run is alive."""

    def __init__(self, a, runs: Path, db: str, pg, duration: float):
        rng = random.Random(a.seed)
        kinds = ["kill"] * a.kills + ["stop"] * a.stops + ["outage", "sigterm"]
        times = sorted(rng.uniform(0.15, 0.8) * duration for _ in kinds)
        rng.shuffle(kinds)
        self.plan = list(zip(times, kinds))
        self.rng, self.runs, self.db, self.pg = rng, runs, db, pg
        self.log: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.sigterm_done = threading.Event()
        self.snapshot: dict[int, int] = {}   # completed trial -> attempts, at the SIGTERM

    def run(self, _t0: float) -> None:
        # The clock starts with the first completed trial: faults hit a search, not start-up.
        while not sql_quiet(self.db, "SELECT id FROM trials WHERE status = 'completed' LIMIT 1"):
            if self.proc.poll() is not None:
                return
            time.sleep(0.1)
        t0 = time.time()
        for at, kind in self.plan:
            while time.time() - t0 < at:
                time.sleep(0.05)
            if kind == "outage":   # lasts seconds: the other faults keep their times
                threading.Thread(target=self.outage, daemon=True).start()
            else:
                getattr(self, kind)()

    def kill(self, sig=signal.SIGKILL, what="killed") -> None:
        pids = interpreters(self.runs)
        if not pids:
            self.log.append(f"{what}: no resident interpreter alive at that moment")
            return
        pid = self.rng.choice(pids)
        try:
            os.kill(pid, sig)
            self.log.append(f"{what} resident interpreter {pid}")
        except ProcessLookupError:
            self.log.append(f"{what}: {pid} was already gone")

    def stop(self) -> None:
        self.kill(signal.SIGSTOP, "stopped (stuck trial)")

    def outage(self) -> None:
        if self.pg is not None:
            self.pg.halt("fast")
            time.sleep(5)
            self.pg.restart()
            self.log.append("PostgreSQL stopped for 5 s and started again")
        else:
            con = sqlite3.connect(self.db.split("///", 1)[1], timeout=60, isolation_level=None)
            con.execute("BEGIN IMMEDIATE")
            time.sleep(5)
            con.execute("ROLLBACK")
            con.close()
            self.log.append("SQLite write lock held by another client for 5 s")

    def sigterm(self) -> None:
        if self.sigterm_done.is_set() or self.proc.poll() is not None:
            self.log.append("SIGTERM: the job had already ended")
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.log.append("SIGTERM to the whole job")
        self.sigterm_done.set()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--procs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sleep", type=float, default=0.5, help="seconds per trial")
    ap.add_argument("--timeout", type=float, default=3, help="TIMEOUT (a stuck trial costs "
                    "TIMEOUT plus the worker's grace of 10 s)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--stops", type=int, default=2)
    ap.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emews-faults-"))
    space = work / "space.R"
    space.write_text(SPACE.replace("{sleep}", repr(a.sleep)))
    pg = None
    if a.store == "postgresql":
        from pg_server import PostgresServer
        pg = PostgresServer(dbname="faults").start()
        clean_db = pg.create_database("fault_free").replace("+psycopg2", "")
        db = pg.url.replace("+psycopg2", "")
    else:
        clean_db, db = f"sqlite:///{work / 'clean.db'}", f"sqlite:///{work / 'faults.db'}"
    try:
        # 1. fault-free
        t0 = time.time()
        p = workflow(work / "clean", clean_db, a, *new_run_args(a, space))
        out, _ = p.communicate()
        clean_wall = time.time() - t0
        if p.returncode != 0:
            sys.exit(f"the fault-free run failed:\n{out[-3000:]}")
        print(f"fault-free run: {a.trials} trials in {clean_wall:.1f} s", flush=True)

        # 2. with faults
        runs = work / "faulty"
        f = Faults(a, runs, db, pg, span(clean_db))
        t0 = time.time()
        f.proc = workflow(runs, db, a, *new_run_args(a, space))
        injector = threading.Thread(target=f.run, args=(t0,), daemon=True)
        injector.start()
        out1, _ = f.proc.communicate()
        rc1 = f.proc.returncode
        segments = 1
        if f.sigterm_done.is_set():
            f.snapshot = {r["id"]: r["attempts"] for r in sql(db, "SELECT id, attempts FROM trials "
                                                              "WHERE status = 'completed'")}
            segments = 2
            f.proc = workflow(runs, db, a, "--resume", "1")
            out2, _ = f.proc.communicate()
            if f.proc.returncode != 0:
                sys.exit(f"the resume failed:\n{out2[-3000:]}")
        elif rc1 != 0:
            sys.exit(f"the faulty run failed:\n{out1[-3000:]}")
        injector.join(timeout=60)
        wall = time.time() - t0

        rows = sql(db, "SELECT id, status, attempts FROM trials")
        by = {}
        for r in rows:
            by[r["status"]] = by.get(r["status"], 0) + 1
        final = sum(by.get(s, 0) for s in ("completed", "failed", "timeout"))
        twice = [r["id"] for r in rows if r["id"] in f.snapshot
                 and r["attempts"] != f.snapshot[r["id"]]]
        exp = sql(db, "SELECT status FROM experiments")[0]["status"]
        print("faults injected:")
        for line in f.log:
            print(f"  - {line}")
        print(f"experiment: {exp}, {segments} segment(s)")
        print(f"trials: {by.get('completed', 0)} completed, {by.get('failed', 0)} failed, "
              f"{by.get('timeout', 0)} timeout (of {a.trials})")
        print(f"completed trials run more than once: {len(twice)} (must be 0)")
        print(f"trials lost: {a.trials - final} (must be 0)")
        print(f"re-run after the stop (interrupted, not completed): "
              f"{sum(1 for r in rows if (r['attempts'] or 0) > 1)}")
        print(f"wall time: {wall:.1f} s with faults vs {clean_wall:.1f} s without "
              f"({wall / clean_wall:.2f}x)")
        return 0 if not twice and final == a.trials and exp == "completed" else 1
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
