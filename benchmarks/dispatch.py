"""End-to-end dispatch throughput: no-op trials per second through the whole path
(EQ/Py optimizer process -> ZeroMQ -> driver -> MPI -> resident worker -> SQLite, every trial
recorded), and in the same invocation a bare mpi4py master/worker loop as the baseline.

    .venv/bin/python benchmarks/dispatch.py [--trials 100000] [--procs 4]

Target on the 2-core reference machine with 3 workers: >= 10,000 recorded trials/s end to end.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def end_to_end(n: int, procs: int, runs: Path) -> tuple[float, float, int]:
    space = runs / "noop_space.json"
    space.write_text(json.dumps({"params": [{"id": "function", "type": "discrete", "values": ["noop"]}]}))
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "emews"), "workflow", "--pilot", "bench",
                        "--algo", str(HERE / "_noop_optimizer.py"), "--procs", str(procs),
                        "--budget", str(n), "--space", str(space), "--runs", str(runs),
                        "--exp", "dispatch"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"end-to-end run failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        final = c.execute(text("SELECT final_message FROM experiments ORDER BY id DESC LIMIT 1")).scalar()
        recorded = c.execute(text("SELECT COUNT(*) FROM trials WHERE status = 'completed'")).scalar()
    return json.loads(final)["trials_per_s"], wall, recorded


def bare(n: int, procs: int) -> float:
    p = subprocess.run([str(BIN / "mpiexec"), "-n", str(procs), sys.executable,
                        str(HERE / "_bare_mpi.py"), str(n)], capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rate, wall, recorded = end_to_end(a.trials, a.procs, Path(d))
    base = bare(a.trials, a.procs)
    print(f"workers: {a.procs - 1}, trials: {a.trials}, cores: {os.cpu_count()}")
    print(f"end to end (optimizer -> ZeroMQ -> driver -> MPI -> worker -> SQLite): "
          f"{rate:,.0f} trials/s ({recorded:,} recorded as completed; whole command incl. "
          f"start-up {wall:.1f} s)")
    print(f"bare mpi4py master/worker loop:                                      {base:,.0f} tasks/s")
    print(f"ratio end-to-end / bare: {rate / base:.3f}")
    print(f"target >= 10,000 trials/s end to end: {'met' if rate >= 10_000 else 'NOT met'}")
    if recorded != a.trials:
        sys.exit(f"only {recorded} of {a.trials} trials were recorded")


if __name__ == "__main__":
    main()
