"""Worker utilization on the real farm: mlrMBO in stream mode (a new proposal as soon as results
arrive), mlrMBO in batch mode (the paper's behaviour: every batch waits for its slowest trial) and
R random search (plain EMEWS batches of W points), at 16, 64 and 128 worker ranks, measured with
SQL over the store.

    .venv/bin/python benchmarks/utilization.py [--workers 16 64 128] [--algos stream batch random]
        [--mean 5] [--cv 1] [--per-worker 10] [--runs runs/utilization]

Each trial is the bench pilot's Branin (x1, x2 searched) plus a training time drawn by the pilot
from a lognormal with mean --mean seconds and coefficient of variation --cv, seeded by the trial
id (`duration_mean`, `duration_cv`, `duration_seed`: constants of the space, independent of the
search). Budget = --per-worker x W trials. PROCS = W + 1. The default of 10 per worker keeps the
nine runs short, but then the final drain of CV-1 durations bounds utilization near 60% at 64
workers whatever the farm does (the `ideal` column); issue 9's target (stream >= 90% at 64
workers) is measured with `--workers 64 --algos stream --per-worker 100` (bound 96%).

Printed per run, from `trials` (SQLite):
  util      busy worker-seconds / (W x makespan), makespan = last finish - first start;
  util_ss   the same over the window in which work remained to hand out (first start to the last
            trial's start): the drain at the end, while the last long trials finish, is set by the
            budget and the duration distribution, not by the optimizer or the farm;
  ideal     what a farm with zero overheads would reach with exactly these trial durations
            (emews_py.farmsim, greedy list scheduling), the bound for `util`;
  trials/s  trials / makespan, and the best objective.
The store stays in --runs (benchmarks/farm_model.py validates the simulator against it).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from emews_py import farmsim  # noqa: E402

BIN = Path(sys.executable).parent
ALGOS = ("stream", "batch", "random")


def space(mean: float, cv: float, seed: int) -> str:
    """A ParamHelpers space (what the R optimizers read): Branin searched, the duration's
    settings constants (numbers formatted by repr: never user text in R code)."""
    return f"""param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeDiscreteParam("duration_mean", values = {float(mean)!r}),
  makeDiscreteParam("duration_cv", values = {float(cv)!r}),
  makeDiscreteParam("duration_seed", values = {int(seed)!r}L))
"""


def exp_name(algo: str, workers: int) -> str:
    return f"util-{algo}-W{workers}"


def run(algo: str, workers: int, budget: int, a, runs: Path) -> int:
    """One workflow; returns its experiment id."""
    sp = runs / "space.R"
    sp.write_text(space(a.mean, a.cv, a.seed))
    if algo == "random":
        opt, settings = "random", f"propose.points = {workers}, seed = {a.seed}"
    else:
        opt, settings = "mlrMBO", f"mode = '{algo}', seed = {a.seed}, propose.points = {workers}"
    cmd = [str(BIN / "emews"), "workflow", "--pilot", "bench", "--algo", opt,
           "--procs", str(workers + 1), "--budget", str(budget), "--space", str(sp),
           "--settings", settings, "--runs", str(runs), "--exp", exp_name(algo, workers)]
    env = dict(os.environ, EMEWS_PROGRESS="off")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=a.run_timeout)
    if p.returncode != 0:
        sys.exit(f"{algo} at {workers} workers failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        exp = c.execute(text("SELECT MAX(id) FROM experiments WHERE name = :n"),
                        {"n": exp_name(algo, workers)}).scalar()
    eng.dispose()
    return exp


# seconds since the experiment's first trial start, per trial in id order
TRIALS_SQL = """
WITH t0 AS (SELECT MIN(julianday(started_at)) AS t FROM trials WHERE experiment_id = :e)
SELECT id, (julianday(started_at) - t0.t) * 86400 AS s, (julianday(finished_at) - t0.t) * 86400 AS f,
       (julianday(submitted_at) - t0.t) * 86400 AS q, objective, status
FROM trials, t0 WHERE experiment_id = :e AND started_at IS NOT NULL AND finished_at IS NOT NULL
ORDER BY id"""

METRICS_SQL = """
WITH t AS (SELECT (julianday(started_at) - julianday((SELECT MIN(started_at) FROM trials
                                                      WHERE experiment_id = :e))) * 86400 AS s,
                  (julianday(finished_at) - julianday((SELECT MIN(started_at) FROM trials
                                                       WHERE experiment_id = :e))) * 86400 AS f,
                  objective
           FROM trials WHERE experiment_id = :e AND finished_at IS NOT NULL),
     w AS (SELECT MAX(s) AS last_start, MAX(f) AS makespan FROM t)
SELECT (SELECT workers FROM experiments WHERE id = :e) AS workers, COUNT(*) AS n,
       SUM(t.f - t.s) AS busy, w.makespan, w.last_start,
       SUM(MAX(0, MIN(t.f, w.last_start) - t.s)) AS busy_ss, MIN(t.objective) AS best
FROM t, w"""


def measure(engine, exp: int) -> dict:
    """Utilization and friends of one experiment, from the store (SQLite SQL)."""
    with engine.connect() as c:
        r = dict(c.execute(text(METRICS_SQL), {"e": exp}).mappings().one())
        rows = c.execute(text(TRIALS_SQL), {"e": exp}).mappings().all()
    w = r["workers"]
    r["util"] = r["busy"] / (w * r["makespan"])
    r["util_ss"] = r["busy_ss"] / (w * r["last_start"]) if r["last_start"] else float("nan")
    r["rate"] = r["n"] / r["makespan"]
    ideal = farmsim.list_schedule([x["f"] - x["s"] for x in rows], w)
    r["ideal"] = ideal.utilization
    r["ideal_makespan"] = ideal.makespan
    return r


def load() -> str:
    return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    ap.add_argument("--mean", type=float, default=5.0, help="mean trial duration, seconds")
    ap.add_argument("--cv", type=float, default=1.0, help="its coefficient of variation")
    ap.add_argument("--per-worker", type=int, default=10, help="budget = this x workers")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", default=str(REPO / "runs" / "utilization"),
                    help="run directories and the store (kept for benchmarks/farm_model.py)")
    ap.add_argument("--run-timeout", type=float, default=1800)
    a = ap.parse_args(argv)
    runs = Path(a.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    print(f"real farm, bench pilot, trial durations lognormal mean {a.mean} s CV {a.cv}, "
          f"budget {a.per_worker} x W; store {runs / 'emews.db'}")
    print(f"{'algo':7} {'W':>4} {'n':>5} {'util':>6} {'util_ss':>7} {'ideal':>6} {'makespan':>9} "
          f"{'ideal_ms':>8} {'trials/s':>8} {'best':>7}  exp  load (1/5/15 min, at the end)")
    util: dict[tuple, float] = {}
    for w in a.workers:
        for algo in a.algos:
            t = time.time()
            exp = run(algo, w, a.per_worker * w, a, runs)
            eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
            r = measure(eng, exp)
            eng.dispose()
            util[algo, w] = r["util"]
            print(f"{algo:7} {w:4d} {r['n']:5d} {r['util']:6.1%} {r['util_ss']:7.1%} {r['ideal']:6.1%} "
                  f"{r['makespan']:8.1f}s {r['ideal_makespan']:7.1f}s {r['rate']:8.2f} "
                  f"{r['best']:7.3f}  {exp:3d}  {load()} (wall {time.time() - t:.0f} s)", flush=True)
    for w in a.workers:
        if ("stream", w) in util and ("batch", w) in util:
            print(f"W={w}: stream / batch utilization {util['stream', w] / util['batch', w]:.2f}x")
    if ("stream", 64) in util:
        print(f"target: mlrMBO stream >= 90% at 64 workers: {util['stream', 64]:.1%} "
              f"({'MET' if util['stream', 64] >= 0.9 else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
