"""What a Keras pilot's training costs before its first epoch ends, with and without the pilot
kit's build_before_fit (one trace of the training step instead of two), in one process.

    .venv/bin/python benchmarks/first_epoch.py [--pilots drug treat ras] [--trainings 4]
        [--epochs 6]

Each pilot runs --trainings trainings of --epochs epochs in each arm, alternating the arms (so
a change of the machine's load hits both alike), each a new model as in a resident worker; the
first training of the process (data loading, Keras' own first use) is run once before and not
counted. From the trainings' own `epoch_end` events: time to train_begin, the first epoch (its
traces included), the median later epoch, the whole training, and the objective (the same in both
arms: build_before_fit creates the variables the first trace would have, nothing else). Printed
per pilot, medians over the trainings, and the ratio with / without. With a stopper every stopped
training pays the first epoch in full, so this is the cost a stop cannot save (docs/stopping.md).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def one(P, params: dict, tid: int, run_dir: Path) -> dict:
    from emews_py.pilotkit.context import TrialContext
    ctx = TrialContext.local(run_dir, trial_id=tid)
    t0 = time.time()
    out = P.run(params, ctx)
    total = time.time() - t0
    begin = next(e["at"] for e in ctx.events if e["kind"] == "train_begin") - t0
    ends = [e["at"] - t0 for e in ctx.events if e["kind"] == "epoch_end"]
    later = [b - a for a, b in zip(ends, ends[1:])]
    return dict(begin=begin, first=ends[0] - begin, later=statistics.median(later) if later else 0.0,
                total=total, objective=out["objective"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pilots", nargs="+", default=["drug", "treat"])
    ap.add_argument("--trainings", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--run-dir", default=str(REPO / "runs" / "first_epoch"))
    a = ap.parse_args(argv)
    run_dir = Path(a.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'pilot':6} {'arm':8} {'to begin':>8} {'1st epoch':>9} {'later':>6} {'training':>8}  objectives",
          flush=True)
    for name in a.pilots:
        P = importlib.import_module(f"pilots.{name}")
        real = P.build_before_fit
        off = lambda *args, **kw: False   # noqa: E731 - the baseline: Keras builds inside the trace
        one(P, {"epochs": 1, "seed": 99}, 0, run_dir)          # data and Keras' first use
        res = {"without": [], "with": []}
        for i in range(a.trainings):
            for arm in (("without", "with") if i % 2 == 0 else ("with", "without")):
                P.build_before_fit = real if arm == "with" else off
                res[arm].append(one(P, {"epochs": a.epochs, "seed": 1 + i}, 1 + i, run_dir))
        P.build_before_fit = real
        med = {arm: {k: statistics.median(r[k] for r in rs) for k in ("begin", "first", "later", "total")}
               for arm, rs in res.items()}
        for arm in ("without", "with"):
            m = med[arm]
            objs = " ".join(f"{r['objective']:.5g}" for r in res[arm])
            print(f"{name:6} {arm:8} {m['begin']:7.2f}s {m['first']:8.2f}s {m['later']:5.2f}s "
                  f"{m['total']:7.2f}s  {objs}", flush=True)
        same = all(abs(x["objective"] - y["objective"]) <= 1e-6 * max(1.0, abs(x["objective"]))
                   for x, y in zip(res["with"], res["without"]))
        print(f"{name:6} with / without: first epoch {med['with']['first'] / med['without']['first']:.2f}x, "
              f"training of {a.epochs} epochs {med['with']['total'] / med['without']['total']:.2f}x; "
              f"objectives the same: {'yes' if same else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
