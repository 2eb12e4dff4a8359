"""What a Python optimizer's trafo costs per point: a resident R against a fresh Rscript per call.

    .venv/bin/python benchmarks/trafo.py [--calls 20] [--budget 60] [--procs 3]

Python optimizers (optuna, py_random) send the pilot transformed points: the space file's R
trafo functions (10^x, 2L^x) applied by R. A streaming optimizer transforms each new point when
a worker frees up, so whatever that takes, the worker waits. Two measurements in one invocation:

1. ``Space.transform`` of one point, CALLS times, through the resident ``eq/R/space.R serve``
   (emews_py.space.TrafoServer; its first call, which starts R, reported apart) and through
   ``Rscript eq/R/space.R transform`` started afresh per call (how it was done before): the
   median per call and the ratio.
2. A real farm (``emews workflow``: the bench pilot, ``ALGO=optuna`` with the random sampler,
   PROCS ranks, BUDGET trials) on a space with a trafo: each worker's idle time between one
   trial's end and its next trial's start (from the store), and the whole run's trials per
   second; the same run on the same space without a trafo is the baseline.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

SPACE = """param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10{trafo}),
  makeNumericParam("x2", lower = 0, upper = 15)
)
"""


def per_call(space_file: Path, calls: int) -> None:
    from emews_py.space import Space, _rscript, load_space
    space = Space(load_space(space_file))
    point = [{"x1": 1.5, "x2": 3.0}]
    t0 = time.perf_counter()
    first = space.transform(point)
    start = time.perf_counter() - t0
    resident, fresh = [], []
    for _ in range(calls):   # alternate, so a change of load hits both alike
        t0 = time.perf_counter()
        a = space.transform(point)
        resident.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = json.loads(_rscript("transform", str(space_file), json.dumps(point)))
        fresh.append(time.perf_counter() - t0)
        assert a == b == first, (a, b, first)
    space.close()
    r, f = statistics.median(resident), statistics.median(fresh)
    print(f"transform of one point, median of {calls}: resident R {r * 1e3:.1f} ms "
          f"(its first call, starting R: {start:.2f} s), a fresh Rscript {f * 1e3:.0f} ms: "
          f"{f / r:.0f}x")


def farm(space_file: Path, budget: int, procs: int, runs: Path) -> tuple[float, float]:
    cmd = [str(BIN / "emews"), "workflow", "--runs", str(runs), "--pilot", "bench", "--algo",
           "optuna", "--budget", str(budget), "--procs", str(procs), "--space", str(space_file),
           "--settings", "sampler = 'random'"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        sys.exit(f"the workflow failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        rows = c.execute(text("SELECT worker, started_at, finished_at FROM trials "
                              "WHERE status = 'completed' ORDER BY started_at")).fetchall()
    eng.dispose()

    def ts(v):
        return v.timestamp() if isinstance(v, datetime) else datetime.fromisoformat(v).timestamp()
    by = {}
    for w, s, f in rows:
        by.setdefault(w, []).append((ts(s), ts(f)))
    gaps = [b[0] - a[1] for v in by.values() for a, b in zip(v, v[1:])]
    span = max(f for v in by.values() for _, f in v) - min(s for v in by.values() for s, _ in v)
    return statistics.median(gaps), len(rows) / span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--procs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with_trafo, plain = tmp / "trafo.R", tmp / "plain.R"
        with_trafo.write_text(SPACE.format(trafo=", trafo = function(x) x + 0"))
        plain.write_text(SPACE.format(trafo=""))
        per_call(with_trafo, a.calls)
        g0, r0 = farm(plain, a.budget, a.procs, tmp / "plain")
        g1, r1 = farm(with_trafo, a.budget, a.procs, tmp / "trafo")
        print(f"farm, bench pilot, optuna random sampler, {a.budget} trials, {a.procs - 1} "
              f"workers: a worker's idle time between trials, median: {g1 * 1e3:.1f} ms with a "
              f"trafo, {g0 * 1e3:.1f} ms without one; trials/s {r1:.0f} with, {r0:.0f} without "
              f"({r1 / r0:.2f}x)")


if __name__ == "__main__":
    main()
