"""Early stopping on real Keras pilots (issue 11): the same search with and without each stopper,
at equal wall time, over several seeds.

    .venv/bin/python benchmarks/stopping.py [--pilots drug treat] [--seeds 5] [--window 60]
        [--stoppers none asha median] [--epochs 12] [--algo optuna] [--runs runs/stopping]

Each run is `emews workflow --pilot P --algo optuna` with Optuna's random sampler seeded by the
seed (SETTINGS {"sampler": "random", "seed": S}): a streaming optimizer whose proposals do not
depend on the results, so for one seed every stopper sees the same configurations in the same
order, and the comparison measures the stopper alone (--algo mlrMBO runs mlrMBO instead; it
adapts to what it is told, so the runs diverge). The space is the pilot's default space with
`epochs` fixed (--epochs: every training may run that long, so there is something to stop) and
the loss fixed to categorical cross-entropy (so the val_loss the stoppers compare is the
objective of every trial). The budget is never reached: each run is stopped with SIGTERM
--window seconds after its first training began (its train_begin event: equal wall time; the
workers' Keras import before it is not counted), and the trials finished by then are read from the store.

Printed per pilot and stopper, over the seeds: trials completed (and stopped) in the window, the
best validation loss of a completed trial (median, and per seed against the run without
stopping: better / same / worse), and the time to reach the no-stopping run's final best of the
same seed, as a ratio of the time the no-stopping run took to reach it (median over seeds;
`never` counts as worse than any ratio). Target (issue 11): the same best in at most half the
wall time (ratio <= 0.5), or a better best in the same time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

# The pilots' default spaces (workflows/*_space.R) with epochs and loss fixed (see above).
SPACES = {
    "drug": """param.set <- makeParamSet(
  makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
  makeIntegerParam("batch_size", lower = 3, upper = 5, trafo = function(x) 2L^x),
  makeDiscreteParam("epochs", values = c({epochs}L)),
  makeNumericParam("dropout", lower = 0, upper = 0.5),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh", "sigmoid")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop")),
  makeDiscreteParam("conv", values = c("16,20,1,16,10,1", "32,20,1,32,10,1", "64,20,1,64,10,1",
                                       "32,10,1,32,5,1", "32,20,2,32,10,1", "32,20,5")),
  makeDiscreteParam("dense", values = c("200,20", "100,20", "500,50", "200", "50"))
)
""",
    "treat": """param.set <- makeParamSet(
  makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
  makeIntegerParam("batch_size", lower = 3, upper = 6, trafo = function(x) 2L^x),
  makeDiscreteParam("epochs", values = c({epochs}L)),
  makeNumericParam("dropout", lower = 0, upper = 0.6),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh", "sigmoid")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop", "adagrad")),
  makeIntegerParam("shared_nnet_spec", lower = 6, upper = 9, trafo = function(x) 2L^x),
  makeIntegerParam("ind_nnet_spec", lower = 4, upper = 8, trafo = function(x) 2L^x)
)
""",
}


def first_start(db: str, exp: str) -> float | None:
    from sqlalchemy import create_engine, text
    eng = create_engine(db)
    try:
        with eng.connect() as c:
            # the first training's start (a trial handed to a worker still importing Keras is
            # `running` in `trials` long before it trains)
            v = c.execute(text("SELECT MIN(v.at) FROM events v JOIN trials t ON t.id = v.trial_id "
                               "JOIN experiments e ON e.id = t.experiment_id WHERE e.name = :n "
                               "AND v.kind = 'train_begin'"), {"n": exp}).scalar()
    except Exception:  # noqa: BLE001 - the store is being created
        v = None
    finally:
        eng.dispose()
    return None if v is None else _ts(v)


def _ts(v) -> float:
    import datetime as dt
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.timezone.utc)
    return v.timestamp()


def run(pilot: str, seed: int, stopper: str, a, runs: Path, db: str) -> str:
    """One search, stopped `window` seconds after its first trial started; its experiment name."""
    exp = f"{pilot}-{stopper.split(':')[0]}-s{seed}"
    space = runs / f"{pilot}_space.R"
    settings = {"sampler": "random", "seed": seed} if a.algo == "optuna" else {"seed": seed}
    cmd = [str(BIN / "emews"), "workflow", "--runs", str(runs), "--db", db, "--pilot", pilot,
           "--algo", a.algo, "--procs", str(a.procs), "--budget", "1000", "--space", str(space),
           "--exp", exp, "--settings", json.dumps(settings), "--opt-timeout", "600"]
    if stopper != "none":
        cmd += ["--stopper", stopper]
    log = open(runs / f"{exp}.log", "w")
    p = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    t0, deadline = None, time.time() + 300
    while p.poll() is None:
        if t0 is None:
            t0 = first_start(db, exp)
            if t0 is None and time.time() > deadline:
                break
        elif time.time() >= t0 + a.window:
            break
        time.sleep(0.5)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)     # the clean stop: trials and experiment `interrupted`
        try:
            p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    log.close()
    return exp


def measure(db: str, exp: str, window: float) -> dict:
    """From the store: completed/stopped trials in the window, the best completed objective and
    the curve of (seconds since the first start, objective) of completed trials."""
    import emews_py
    df = emews_py.trials(db, exp)
    t0 = first_start(db, exp)
    done = []
    n_stopped = 0
    for _, r in df.iterrows():
        if r["finished_at"] is None or (isinstance(r["finished_at"], float)
                                        and math.isnan(r["finished_at"])):
            continue
        t = _ts(r["finished_at"]) - t0
        if t > window:
            continue
        if r["status"] == "completed" and r["objective"] is not None \
                and math.isfinite(r["objective"]):
            done.append((t, float(r["objective"])))
        elif r["status"] == "stopped":
            n_stopped += 1
    done.sort()
    return {"completed": len(done), "stopped": n_stopped,
            "best": min((y for _, y in done), default=math.inf), "curve": done}


def time_to(curve: list, target: float) -> float:
    return next((t for t, y in curve if y <= target + 1e-12), math.inf)


def report(pilot: str, results: dict, stoppers: list[str], seeds: list[int], window: float) -> None:
    print(f"\n== {pilot}: {len(seeds)} seeds, {window:g} s of trials per run ==")
    base = {s: results[("none", s)] for s in seeds}
    print(f"{'stopper':<26} {'completed':>9} {'stopped':>7} {'best (median)':>13} "
          f"{'better/same/worse':>17} {'t to base best':>14}")
    for st in stoppers:
        rows = [results[(st, s)] for s in seeds]
        comp = statistics.median(r["completed"] for r in rows)
        stp = statistics.median(r["stopped"] for r in rows)
        best = statistics.median(r["best"] for r in rows)
        bsw = [0, 0, 0]
        ratios = []
        for s, r in zip(seeds, rows):
            b = base[s]
            d = r["best"] - b["best"]
            bsw[0 if d < -1e-9 else 1 if abs(d) <= 1e-9 else 2] += 1
            tb = time_to(b["curve"], b["best"])
            ratios.append(time_to(r["curve"], b["best"]) / tb if tb > 0 else math.inf)
        med = statistics.median(ratios)
        shown = "never" if math.isinf(med) else f"{med:.2f}x"
        print(f"{st:<26} {comp:>9g} {stp:>7g} {best:>13.4f} {'/'.join(map(str, bsw)):>17} "
              f"{shown:>14}")
        print(f"{'':<26} per seed: best " + ", ".join(f"{r['best']:.4f}" for r in rows)
              + "; t ratio " + ", ".join("never" if math.isinf(x) else f"{x:.2f}"
                                         for x in ratios))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pilots", nargs="+", default=["drug", "treat"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--stoppers", nargs="+", default=["none", "asha", "median"])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--algo", default="optuna")
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--runs", default=str(REPO / "runs" / "stopping"))
    a = ap.parse_args()
    if a.stoppers[0] != "none":
        a.stoppers = ["none"] + [s for s in a.stoppers if s != "none"]
    runs = Path(a.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{runs / 'stopping.db'}"
    seeds = list(range(1, a.seeds + 1))
    print(f"[stopping] {len(a.pilots)} pilots x {len(seeds)} seeds x {len(a.stoppers)} stoppers, "
          f"{a.window:g} s each, {a.procs - 1} workers, algo {a.algo}, store {db}; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    for pilot in a.pilots:
        (runs / f"{pilot}_space.R").write_text(SPACES[pilot].format(epochs=int(a.epochs)))
        results = {}
        for s in seeds:
            for st in a.stoppers:   # alternating, so a load change hits every stopper alike
                t = time.time()
                exp = run(pilot, s, st, a, runs, db)
                results[(st, s)] = m = measure(db, exp, a.window)
                print(f"[stopping] {exp}: {m['completed']} completed, {m['stopped']} stopped, "
                      f"best {m['best']:.4f} ({time.time() - t:.0f} s, load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
        report(pilot, results, a.stoppers, seeds, a.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
