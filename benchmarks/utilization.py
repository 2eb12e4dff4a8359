"""Worker utilization of mlrMBO in batch mode (the paper's behaviour: every batch waits for its
slowest trial) against stream mode (a new proposal as soon as a result arrives), through the real
farm, measured with SQL over the store.

    .venv/bin/python benchmarks/utilization.py [--budget 40] [--procs 5] [--seeds 1 2]

Trials are the bench pilot's Branin with a training time `sleep` in [0.2, 2] s that the optimizer
also searches, so trial durations vary as Keras trainings do. Utilization = busy worker-seconds /
(workers x makespan), both read from `trials`.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

BIN = Path(sys.executable).parent
SPACE = """param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeNumericParam("sleep", lower = 0.2, upper = 2))
"""
SQL = """SELECT SUM((julianday(finished_at) - julianday(started_at)) * 86400) AS busy,
                (julianday(MAX(finished_at)) - julianday(MIN(started_at))) * 86400 AS makespan,
                MIN(objective) AS best, COUNT(*) AS n
         FROM trials WHERE experiment_id = (SELECT MAX(id) FROM experiments)"""


def run(mode: str, seed: int, budget: int, procs: int, runs: Path) -> dict:
    space = runs / "space.R"
    space.write_text(SPACE)
    settings = f"mode = '{mode}', seed = {seed}, propose.points = {procs - 1}"
    p = subprocess.run([str(BIN / "emews"), "workflow", "--pilot", "bench", "--algo", "mlrMBO",
                        "--procs", str(procs), "--budget", str(budget), "--space", str(space),
                        "--settings", settings, "--runs", str(runs), "--exp", f"util-{mode}"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{mode} run failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        r = dict(c.execute(text(SQL)).mappings().one())
    eng.dispose()
    r["utilization"] = r["busy"] / ((procs - 1) * r["makespan"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--procs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    res = {"batch": [], "stream": []}
    with tempfile.TemporaryDirectory() as d:
        for seed in a.seeds:
            for mode in res:
                res[mode].append(run(mode, seed, a.budget, a.procs, Path(d)))
    print(f"mlrMBO on the real farm: {a.procs - 1} workers, budget {a.budget}, seeds {a.seeds}")
    print(f"{'mode':8} {'utilization':>12} {'makespan_s':>11} {'best':>8}")
    for mode, rs in res.items():
        print(f"{mode:8} {statistics.mean(r['utilization'] for r in rs):12.2f} "
              f"{statistics.mean(r['makespan'] for r in rs):11.1f} "
              f"{statistics.median(r['best'] for r in rs):8.3f}")
    ub = statistics.mean(r["utilization"] for r in res["batch"])
    us = statistics.mean(r["utilization"] for r in res["stream"])
    print(f"stream / batch utilization: {us / ub:.2f}")


if __name__ == "__main__":
    main()
