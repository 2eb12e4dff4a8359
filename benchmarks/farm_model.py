"""Validate the farm simulator (emews_py/farmsim.py) against real runs, then predict the paper's
scale.

    .venv/bin/python benchmarks/farm_model.py [--store runs/utilization/r1/emews.db]
        [--run]  (first run benchmarks/utilization.py into that store's directory)

1. Calibration, from the store of benchmarks/utilization.py (SQL over `trials` and the EQ
   transcript `eq_messages`), pooled over every run of an optimizer:
   - the optimizer's time per round: from an answer that delivered results to its next waiting
     message (the next results request, batch or plain batch), with n = results delivered so
     far and q = points it proposed in between; fitted as a + b q + c n + d n q (mlrMBO's
     model-based rounds; random.R's rounds and mlrMBO's random ones before min.fit apart);
   - gap_s: median time from a trial being ready to run (submitted, and its worker's previous
     trial ended) to its start;
   - result_s: median time from the last trial of an answer ending to the answer being recorded.
   The driver's per-trial cost is benchmarks/dispatch.py's (the --driver-s default).
2. Validation: each real run is simulated with its own trial durations (in trial-id order, i.e.
   submission order) and the optimizer's cost fitted on its own rounds (--pooled: over all runs
   of that mode; on a shared machine the load, and so the optimizer's speed, changes between
   runs); targets: utilization within 5 points, makespan within
   10 % of the real run.
3. Prediction: 1,024, 4,096 and 16,384 workers, trials lognormal with mean 600 s (the paper's
   ~10-minute trainings) and CV 1, 10 trials per worker, batch vs stream vs random, with the
   calibrated costs, and with the proposal cost given by --cost/--n-cap (e.g. a bounded
   training set), in trials/h and utilization, next to the paper's 1,060 models/h.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from emews_py import farmsim  # noqa: E402
from utilization import measure  # noqa: E402

PAPER_MODELS_PER_H = 1060   # Wozniak et al., 1,024 Titan nodes


def transcript(c, exp: int) -> list[dict]:
    rows = c.execute(text("SELECT seq, direction, payload, (julianday(at) - 2440587.5) * 86400 AS t "
                          "FROM eq_messages WHERE experiment_id = :e ORDER BY seq"), {"e": exp})
    return [dict(r._mapping) for r in rows]


def kind_of(payload: str) -> tuple[str, int]:
    """('results'|'submit'|'batch'|'plain'|'other', points)."""
    s = payload.strip()
    if s.startswith('{"eq"') or s.startswith('{ "eq"'):
        try:
            m = json.loads(s)
        except ValueError:
            return "other", 0
        if m.get("eq") in ("submit", "batch"):
            return m["eq"], len(m.get("points") or [])
        return str(m.get("eq")), 0
    if s.startswith("{"):
        return "plain", s.count('};{') + 1
    return "other", 0


def rounds(msgs: list[dict]) -> tuple[list[tuple], int]:
    """(n, q, seconds) per optimizer round: from an answer that delivered results to the
    optimizer's next waiting message (results request, batch, plain batch), with the q points it
    proposed in between and n results delivered so far; and the size of the first points message
    (the initial design)."""
    out, design, n, q, since = [], None, 0, 0, None
    for m in msgs:
        if m["direction"] == "in":
            k, pts = kind_of(m["payload"])
            if pts and design is None:
                design = pts
            q += pts
            if k in ("results", "batch", "plain"):
                if since is not None and q:
                    out.append((n, q, m["t"] - since))
                since, q = None, 0
        else:
            ids = json.loads(m["payload"]).get("ids") or []
            if ids:     # only answers that deliver results name trial ids
                n += len(ids)
                since = m["t"]
    return out, design or 0


GAP_SQL = """SELECT worker, (julianday(started_at) - 2440587.5) * 86400 AS s,
                    (julianday(finished_at) - 2440587.5) * 86400 AS f,
                    (julianday(submitted_at) - 2440587.5) * 86400 AS q
             FROM trials WHERE experiment_id = :e AND started_at IS NOT NULL
               AND finished_at IS NOT NULL ORDER BY worker, started_at"""


def gaps(c, exp: int) -> list[float]:
    """Per trial: its start minus the time both it and its worker were ready (submitted, and the
    worker's previous trial ended): the farm's hand-out latency."""
    rows = [dict(r._mapping) for r in c.execute(text(GAP_SQL), {"e": exp})]
    out, prev = [], {}
    for r in rows:
        ready = max(r["q"], prev.get(r["worker"], r["q"]))
        out.append(max(0.0, r["s"] - ready))
        prev[r["worker"]] = r["f"]
    return out


def result_lags(c, exp: int, msgs: list[dict]) -> list[float]:
    """Per answer that delivered results: its time minus the later of its last trial's end and
    the optimizer's request (the farm's part of the way; the optimizer's own time is not in it)."""
    fin = {r[0]: r[1] for r in c.execute(text(
        "SELECT id, (julianday(finished_at) - 2440587.5) * 86400 FROM trials "
        "WHERE experiment_id = :e AND finished_at IS NOT NULL"), {"e": exp})}
    out, asked = [], None
    for m in msgs:
        if m["direction"] == "in":
            asked = m["t"]
            continue
        ids = [i for i in (json.loads(m["payload"]).get("ids") or []) if i in fin]
        if ids and asked is not None:
            out.append(max(0.0, m["t"] - max(asked, max(fin[i] for i in ids))))
    return out


def algo_of(name: str) -> tuple[str, int]:
    _, algo, w = name.split("-")
    return algo, int(w[1:])


def calibrate(engine, a) -> tuple[dict, dict]:
    with engine.connect() as c:
        exps = [dict(r._mapping) for r in c.execute(text(
            "SELECT id, name, workers FROM experiments WHERE name LIKE 'util-%' AND status = 'completed' "
            "ORDER BY id"))]
        per, samples, g, lag = {}, defaultdict(list), [], []
        for e in exps:
            algo, w = algo_of(e["name"])
            msgs = transcript(c, e["id"])
            rs, design = rounds(msgs)
            min_fit = max(2, math.ceil(design / 2))
            own = defaultdict(list)
            for n, q, s in rs:
                # per mode: stream refits with its pending trials (pending = 'believer'), batch
                # has none, so the same q costs more in stream mode
                key = "random" if algo == "random" or (algo == "stream" and n < min_fit) else algo
                samples[key].append((n, q, s))
                own[key].append((n, q, s))
            g += gaps(c, e["id"])
            lag += result_lags(c, e["id"], msgs)
            dur = [r["f"] - r["s"] for r in c.execute(text(
                "SELECT (julianday(started_at) - 2440587.5) * 86400 AS s, "
                "(julianday(finished_at) - 2440587.5) * 86400 AS f FROM trials "
                "WHERE experiment_id = :e AND finished_at IS NOT NULL ORDER BY id"),
                {"e": e["id"]}).mappings()]
            per[e["id"]] = dict(name=e["name"], algo=algo, workers=w, design=design,
                                min_fit=min_fit, durations=dur, real=measure(engine, e["id"]),
                                own={k: farmsim.fit_cost(v) for k, v in own.items() if len(v) >= 2})
    fit = lambda k: farmsim.fit_cost(samples[k]) if samples[k] else farmsim.Cost()  # noqa: E731
    cal = dict(cost={"stream": fit("stream"), "batch": fit("batch")},
               rounds={k: len(v) for k, v in samples.items()},
               random_cost=farmsim.fit_cost(samples["random"]) if samples["random"] else farmsim.Cost(),
               gap_s=statistics.median(g) if g else 0.0,
               result_s=statistics.median(lag) if lag else 0.0, driver_s=a.driver_s,
               n_random=len(samples["random"]))
    return per, cal


def simulate_run(r: dict, cal: dict, ahead, pooled: bool) -> farmsim.Outcome:
    """The run simulated with its own durations; the optimizer's cost fitted on this run's rounds
    (the machine's load, and so the optimizer's speed, changed between runs) unless ``pooled``
    or the run has fewer than 2 rounds of a kind."""
    W, d = r["workers"], r["durations"]
    own = {} if pooled else r["own"]
    opt = farmsim.optimizer_for(r["algo"], W, len(d), W, r["design"], r["min_fit"],
                                own.get(r["algo"], cal["cost"].get(r["algo"], farmsim.Cost())),
                                own.get("random", cal["random_cost"]), ahead)
    return farmsim.simulate(farmsim.Farm(W, cal["driver_s"], cal["gap_s"], cal["result_s"]), opt, d)


def fmt_cost(c: farmsim.Cost) -> str:
    cap = "" if math.isinf(c.n_cap) else f", n capped at {c.n_cap:g}"
    return f"{c.a:.3g} + {c.b:.3g} q + {c.c:.3g} n + {c.d:.3g} n q s{cap}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(REPO / "runs" / "utilization" / "r1" / "emews.db"))
    ap.add_argument("--run", action="store_true", help="run benchmarks/utilization.py first")
    ap.add_argument("--driver-s", type=float, default=farmsim.DEFAULTS["driver_s"],
                    help="rank 0's seconds per trial and per result (benchmarks/dispatch.py)")
    ap.add_argument("--cost", help="a second proposal cost for the predictions, 'a,b,c,d'")
    ap.add_argument("--n-cap", type=float, default=math.inf,
                    help="with --cost or --cost-table: n capped here (a bounded training set)")
    ap.add_argument("--cost-table", help="benchmarks/proposal_cost.py's output saved to a file: its "
                    "(n, q, cpu_s) rows are fitted for a prediction with the optimizer on a core "
                    "of its own")
    ap.add_argument("--ahead", type=farmsim.parse_ahead, default="auto",
                    help="mlrMBO stream's look-ahead in the runs and predictions: auto (its default "
                         "since 2026-11-29) or 0 (before)")
    ap.add_argument("--pooled", action="store_true",
                    help="validate with the costs pooled over all runs instead of each run's own")
    ap.add_argument("--scale", type=int, nargs="*", default=[1024, 4096, 16384],
                    help="worker counts to predict (none: validation only)")
    ap.add_argument("--mean", type=float, default=600.0)
    ap.add_argument("--cv", type=float, default=1.0)
    ap.add_argument("--per-worker", type=int, default=10)
    a = ap.parse_args(argv)
    store = Path(a.store).resolve()
    if a.run:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "utilization.py"),
                        "--runs", str(store.parent)], check=True)
    if not store.is_file():
        sys.exit(f"no store at {store}: run benchmarks/utilization.py --runs {store.parent} first "
                 f"(or give --run)")
    eng = create_engine(f"sqlite:///{store}")
    per, cal = calibrate(eng, a)
    eng.dispose()
    print(f"calibration from {store} ({len(per)} runs):")
    for mode in ("stream", "batch"):
        print(f"  mlrMBO {mode} proposal per round: {fmt_cost(cal['cost'][mode])} "
              f"({cal['rounds'].get(mode, 0)} rounds)")
    print(f"  random points per round:   {fmt_cost(cal['random_cost'])} ({cal['n_random']} rounds)")
    print(f"  hand-out gap {cal['gap_s'] * 1000:.0f} ms, result to optimizer {cal['result_s'] * 1000:.0f} ms, "
          f"driver {cal['driver_s'] * 1e6:.0f} us per trial and per result")
    print(f"\nvalidation (real vs simulated, same trial durations, optimizer cost fitted "
          f"{'over all runs' if a.pooled else 'per run'}):")
    print(f"{'run':18} {'util real':>9} {'sim':>6} {'diff':>6} {'makespan real':>13} {'sim':>8} {'diff':>7}  ok")
    ok_all = True
    for r in per.values():
        o = simulate_run(r, cal, a.ahead, a.pooled)
        du = (o.utilization - r["real"]["util"]) * 100
        dm = o.makespan / r["real"]["makespan"] - 1
        ok = abs(du) <= 5 and abs(dm) <= 0.10
        ok_all &= ok
        print(f"{r['name']:18} {r['real']['util']:9.1%} {o.utilization:6.1%} {du:+5.1f}p "
              f"{r['real']['makespan']:12.1f}s {o.makespan:7.1f}s {dm:+7.1%}  {'yes' if ok else 'NO'}")
    print(f"all within 5 points and 10 %: {'yes' if ok_all else 'NO'}")

    costs = [("calibrated", cal["cost"])]
    if a.cost_table:
        rows = [l.split() for l in Path(a.cost_table).read_text().splitlines()]
        samples = [(float(r[0]), float(r[1]), float(r[3])) for r in rows
                   if len(r) >= 4 and r[0].isdigit() and r[1].isdigit()]
        c = farmsim.fit_cost(samples, a.n_cap)
        print(f"  proposal cost from {a.cost_table} (CPU time, {len(samples)} rows): {fmt_cost(c)}")
        costs.append(("table", c))
    if a.cost:
        costs.append(("--cost", farmsim.Cost.parse(a.cost, a.n_cap)))
    print(f"\nprediction: trials lognormal mean {a.mean:g} s CV {a.cv:g}, {a.per_worker} per worker; "
          f"paper: {PAPER_MODELS_PER_H:,} models/h on 1,024 nodes")
    print(f"{'cost':11} {'algo':7} {'W':>6} {'util':>6} {'util_ss':>7} {'trials/h':>9} {'ss/h':>8} "
          f"{'ideal/h':>8} {'opt busy':>9} {'driver busy':>11}")
    for label, cost in costs:
        for W in a.scale:
            for algo in ("batch", "random", "stream"):
                dist = farmsim.lognormal(a.mean, a.cv, 0)
                budget = a.per_worker * W
                c = cost.get(algo, farmsim.Cost()) if isinstance(cost, dict) else cost
                opt = farmsim.optimizer_for(algo, W, budget, W, 8, 4, c, cal["random_cost"], a.ahead)
                o = farmsim.simulate(farmsim.Farm(W, cal["driver_s"], cal["gap_s"], cal["result_s"]),
                                     opt, dist)
                ideal = farmsim.list_schedule([dist(i) for i in range(budget)], W)
                print(f"{label:11} {algo:7} {W:6d} {o.utilization:6.1%} {o.utilization_ss:7.1%} "
                      f"{o.trials_per_hour:9,.0f} {o.trials_per_hour_ss:8,.0f} {ideal.trials_per_hour:8,.0f} {o.optimizer_busy / o.makespan:8.0%} "
                      f"{o.driver_busy / o.makespan:10.2%}", flush=True)
    print("util_ss, ss/h: while work remained (first start to the last start), without the drain "
          "at the end; ideal/h: zero overheads, same durations.")
    print("opt busy / driver busy: share of the makespan the optimizer spent proposing and rank 0 "
          "spent on trials; near 100 % the optimizer is the bottleneck.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
