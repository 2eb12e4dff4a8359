"""Validate the farm simulator (emews_py/farmsim.py) against real runs, then predict the paper's
scale.

    .venv/bin/python benchmarks/farm_model.py [--store A/emews.db B/emews.db ...]
        [--logs A.log B.log ...] [--pooled] [--cost-table runs/utilization/proposal_cost.txt]
        [--run]  (first run benchmarks/utilization.py into the first store's directory)

1. Calibration, from the stores of benchmarks/utilization.py (SQL over `trials` and the EQ
   transcript `eq_messages`):
   - the optimizer's time per round: from an answer that delivered results to its next waiting
     message (the next results request, batch or plain batch), with n = results delivered so
     far and q = points it proposed in between; fitted as a + b q + c n + d n q (mlrMBO's
     model-based rounds; random.R's rounds and mlrMBO's random ones before min.fit apart);
   - gap_s: median time from a trial being ready to run (submitted, and its worker's previous
     trial ended) to its start;
   - result_s: median time from the last trial of an answer ending to the answer being recorded;
   - the stream look-ahead rule each run ran with (scale.R's mbo_stream_q changed twice on
     2026-11-29): its transcript replayed through each rule of farmsim.AHEAD_RULES;
   - each run's load average, from utilization.py's printed log (--logs).
   The driver's per-trial cost is benchmarks/dispatch.py's (the --driver-s default).
2. Validation: each real run is simulated with its own trial durations (in trial-id order, i.e.
   submission order) and its own look-ahead rule; the optimizer's cost (a) fitted on the run's
   own rounds, (b) with --pooled, fitted over all runs of the mode, (c) with --logs, one model
   per mode for the runs with the current proposal code (--pool-since): (a + b q + c n + d n q)
   x max(1, load / cores), (d) with --holdout, out of sample: each run with everything
   calibrated on the other runs only (its mode's cost over the other runs since --pool-since,
   with n held at their largest n; their random rounds, hand-out gap and result lag), so a
   128-worker run is predicted from the 16- and 64-worker ones. Targets: utilization within 5
   points, makespan within 10 %.
3. Prediction: 1,024, 4,096 and 16,384 workers, trials lognormal with mean 600 s (the paper's
   ~10-minute trainings) and CV 1, 10 trials per worker, batch vs stream vs random, with the
   calibrated costs, and with the proposal cost of --cost-table (benchmarks/proposal_cost.py's
   CPU time: the optimizer on a core of its own) or --cost/--n-cap, in trials/h and
   utilization, next to the paper's 1,060 models/h; stream with the current look-ahead unless
   --ahead says otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
from collections import defaultdict, deque
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


RULES = (0, "auto-1x-W", "auto-2x-W", "auto")   # farmsim.AHEAD_RULES, oldest first


def detect_ahead(msgs: list[dict], W: int, budget: int) -> tuple[int | str, dict]:
    """Which of mlrMBO's stream look-ahead rules a run used: its transcript replayed round by
    round (results delivered, the driver's `free`, trials pending) through each rule of
    scale.R's mbo_stream_q, counting the rounds where the rule proposes exactly the points the
    run submitted. Returns the best rule and {rule: (rounds matched, rounds)}."""
    hist = {r: deque(maxlen=5) for r in RULES}
    hits = dict.fromkeys(RULES, 0)
    total = n_sub = n_obs = 0
    rnd = None                      # (results, free, pending) of the answer just given
    for m in msgs:
        if m["direction"] == "out":
            p = json.loads(m["payload"])
            if p.get("ids") and p.get("load"):
                n_obs += len(p["ids"])
                rnd = (len(p["ids"]), p["load"]["free"], n_sub - n_obs)
            continue
        k, pts = kind_of(m["payload"])
        if k == "submit" and rnd is None and n_sub:     # a round without eq_results (none pending)
            rnd = (0, max(0, W - (n_sub - n_obs)), n_sub - n_obs)
        if rnd is not None and n_sub < budget:
            got, free, npend = rnd
            if free <= 0 and npend == 0:
                free = 1
            total += 1
            for r in RULES:
                hist[r].append(got)
                q = free if r == 0 else free + max(
                    0, farmsim.lookahead(r, W, hist[r]) - max(0, npend - (W - free)))
                hits[r] += max(0, min(q, budget - n_sub)) == (pts if k == "submit" else 0)
        rnd = None
        if k == "submit":
            n_sub += pts
    best = max(RULES, key=lambda r: (hits[r], RULES.index(r)))
    return best, {r: (hits[r], total) for r in RULES}


def read_logs(paths) -> dict:
    """{(store, experiment id): load average} from benchmarks/utilization.py's printed logs (its
    header names the store; each row ends with the 1/5/15-minute load averages at the run's end
    and its wall time). The average whose window is nearer the run's wall time is taken: the
    1-minute one for runs under ~2 minutes (the geometric mean of 1 and 5), else the 5-minute."""
    out = {}
    for path in paths or ():
        store = None
        for line in Path(path).read_text().splitlines():
            m = re.search(r"store (\S+emews\.db)", line)
            if m:
                store = str(Path(m.group(1)).resolve())
                continue
            m = re.search(r"\s(\d+)\s+load average ([\d.]+) ([\d.]+) [\d.]+ \(wall (\d+) s\)", line)
            if m and store:
                l1, l5, wall = float(m.group(2)), float(m.group(3)), float(m.group(4))
                out[store, int(m.group(1))] = l1 if wall < 134 else l5
    return out


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


# settings.R's default gp.max.n, which the runs of benchmarks/utilization.py keep: mlrMBO's
# surrogate = 'auto' fits a Gaussian process below it and the forest from it
GP_MAX_N = 200


def fit_mode(key: str, samples: list[tuple], n_cap: float = math.inf):
    """The cost of a kind of round: mlrMBO's fitted on each side of the surrogate switch
    (farmsim.SwitchedCost; batch mode's GP rounds as farmsim.BelieverCost), random rounds as
    one a + b q + c n + d n q."""
    if key == "random":
        return farmsim.fit_cost(samples, n_cap)
    # liar = 'auto': the kriging believer's fantasies in batch mode, none in stream mode
    return farmsim.fit_switched(samples, GP_MAX_N, n_cap, believer=key == "batch")


def median_of(runs, key: str, default: float) -> float:
    """The median of the runs' pooled ``key`` samples (hand-out gaps, result lags)."""
    xs = [x for r in runs for x in r[key]]
    return statistics.median(xs) if xs else default


def calibrate(stores: list[Path], a, loads: dict) -> tuple[dict, dict]:
    """Every completed run of benchmarks/utilization.py in these stores: its durations, real
    figures, look-ahead rule, load and own cost fits; and the costs pooled over all runs."""
    per, samples = {}, defaultdict(list)
    for store in stores:
        engine = create_engine(f"sqlite:///{store}")
        with engine.connect() as c:
            exps = [dict(r._mapping) for r in c.execute(text(
                "SELECT id, name, workers, settings, started_at FROM experiments WHERE name LIKE 'util-%' "
                "AND status = 'completed' ORDER BY id"))]
            for e in exps:
                algo, w = algo_of(e["name"])
                budget = json.loads(e["settings"] or "{}").get("max.budget")
                msgs = transcript(c, e["id"])
                rs, design = rounds(msgs)
                min_fit = max(2, math.ceil(design / 2))
                load = loads.get((str(store), e["id"]))
                same_code = str(e["started_at"]) >= a.pool_since
                own = defaultdict(list)
                for n, q, sec in rs:
                    # per mode: stream refits with its pending trials, batch has none
                    key = "random" if algo == "random" or (algo == "stream" and n < min_fit) else algo
                    samples[key].append((n, q, sec, load, same_code, (store, e["id"])))
                    own[key].append((n, q, sec))
                dur = [r["f"] - r["s"] for r in c.execute(text(
                    "SELECT (julianday(started_at) - 2440587.5) * 86400 AS s, "
                    "(julianday(finished_at) - 2440587.5) * 86400 AS f FROM trials "
                    "WHERE experiment_id = :e AND finished_at IS NOT NULL ORDER BY id"),
                    {"e": e["id"]}).mappings()]
                rule, hits = (detect_ahead(msgs, w, budget or len(dur)) if algo == "stream"
                              else (None, {}))
                per[store, e["id"]] = dict(
                    name=f"{store.parent.name}/{algo} {w}", algo=algo, workers=w, design=design,
                    min_fit=min_fit, durations=dur, real=measure(engine, e["id"]), load=load,
                    same_code=same_code, gaps=gaps(c, e["id"]), lags=result_lags(c, e["id"], msgs),
                    rule=rule, hits=hits,
                    own={k: fit_mode(k, v) for k, v in own.items() if len(v) >= 2})
        engine.dispose()
    def fit(k):
        # n held at the largest n measured: beyond it the bounded training set (fit.max) keeps
        # the proposal flat in n (proposal_cost.py: 0.9-1.1x from n = 1,000 to 20,000)
        if not samples[k]:
            return farmsim.Cost()
        return fit_mode(k, [x[:3] for x in samples[k]], max(x[0] for x in samples[k]))
    cal = dict(cost={"stream": fit("stream"), "batch": fit("batch")},
               rounds={k: len(v) for k, v in samples.items()}, samples=samples,
               random_cost=fit("random"), gap_s=median_of(per.values(), "gaps", 0.0),
               result_s=median_of(per.values(), "lags", 0.0), driver_s=a.driver_s,
               n_random=len(samples["random"]))
    return per, cal


def slowdown(load: float, cores: int) -> float:
    """How much longer the optimizer's CPU work takes with this load average on these cores:
    load runnable processes share them, so one gets cores / load of a core (at most one)."""
    return max(1.0, load / cores)


def fit_pooled_load(samples: list[tuple], cores: int) -> farmsim.Cost | None:
    """One cost model for every run of a mode: seconds = (a + b q + c n + d n q) x
    slowdown(load), the load average recorded with each run; a..d >= 0 by least squares on
    relative errors (quiet rounds take a tenth of loaded ones and must count as much)."""
    import numpy as np
    from scipy.optimize import nnls
    s = np.array([x[:4] for x in samples if x[3] is not None and x[4]], dtype=float)
    if not len(s):
        return None
    n, q, sec, load = s.T
    w = 1 / np.maximum(sec, 0.05)
    f = np.maximum(1.0, load / cores)
    coef, _ = nnls(np.column_stack([f, f * q, f * n, f * n * q]) * w[:, None], sec * w)
    return farmsim.Cost(*map(float, coef))


def holdout_cal(key, r: dict, per: dict, cal: dict) -> dict | None:
    """Everything the simulation of run ``key`` needs, calibrated without it: its mode's cost
    fitted over the rounds of the other runs with the current proposal code (n held at their
    largest n), the random rounds of the other runs, and the hand-out gap and result lag of the
    other runs. None when no other run of the mode has rounds to fit."""
    def others(k):
        return [x[:3] for x in cal["samples"][k] if x[5] != key and (x[4] or k == "random")]
    mode = others(r["algo"]) if r["algo"] != "random" else []
    rnd = others("random")
    if (r["algo"] != "random" and len(mode) < 4) or len(rnd) < 2:
        return None
    rest = [p for k, p in per.items() if k != key]
    return dict(cal, cost={r["algo"]: fit_mode(r["algo"], mode, max(x[0] for x in mode))} if mode else {},
                random_cost=farmsim.fit_cost(rnd, max(x[0] for x in rnd)),
                gap_s=median_of(rest, "gaps", cal["gap_s"]),
                result_s=median_of(rest, "lags", cal["result_s"]))


def simulate_run(r: dict, cal: dict, ahead, how: str) -> farmsim.Outcome:
    """The run simulated with its own durations and the look-ahead rule it ran with (``ahead``
    when given). The optimizer's cost: ``own``: fitted on this run's rounds (a fit per run: the
    machine's load, and so the optimizer's speed, changed between runs; pooled where a run has
    fewer than 2 rounds of a kind); ``pooled``: fitted over all runs of the mode; ``load``: the
    cost model of its mode pooled over the runs with the current proposal code, times the
    slowdown at this run's load; ``holdout``: ``cal`` comes from holdout_cal (without this run)."""
    W, d = r["workers"], r["durations"]
    own = r["own"] if how == "own" else {}
    cost = own.get(r["algo"], cal["cost"].get(r["algo"], farmsim.Cost()))
    if how == "pooled-load":
        f = slowdown(r["load"], cal["cores"]) if r["algo"] != "random" else 1.0
        cost = cal["pooled_load"][r["algo"]].scaled(f)
    rule = ahead if ahead is not None else (r["rule"] if r["rule"] is not None else "auto")
    opt = farmsim.optimizer_for(r["algo"], W, len(d), W, r["design"], r["min_fit"], cost,
                                own.get("random", cal["random_cost"]), rule)
    return farmsim.simulate(farmsim.Farm(W, cal["driver_s"], cal["gap_s"], cal["result_s"]), opt, d)


def fmt_cost(c) -> str:
    if isinstance(c, farmsim.BelieverCost):
        return f"sum over the q points (m = n + j) of {c.a:.3g} + {c.b:.3g} m + {c.c:.3g} m^2 s"
    if isinstance(c, farmsim.SwitchedCost):
        return f"n < {c.switch_n:g}: {fmt_cost(c.below)}; from {c.switch_n:g}: {fmt_cost(c.above)}"
    cap = "" if math.isinf(c.n_cap) else f", n capped at {c.n_cap:g}"
    return f"{c.a:.3g} + {c.b:.3g} q + {c.c:.3g} n + {c.d:.3g} n q s{cap}"


def validate(per: dict, cal: dict, a, how: str, label: str) -> None:
    print(f"\nvalidation, {label}:")
    print(f"{'run':16} {'ahead':9} {'load':>5} {'util real':>9} {'sim':>6} {'diff':>6} "
          f"{'makespan real':>13} {'sim':>8} {'diff':>7}  ok")
    passed = n = 0
    for key, r in per.items():
        run_cal = cal
        if how == "holdout":
            run_cal = holdout_cal(key, r, per, cal)
            if run_cal is None or (r["algo"] != "random" and not r["same_code"]):
                print(f"{r['name']:16} (no other run of its mode with the current proposal code "
                      f"to fit on: not validated out of sample)")
                continue
        if how == "pooled-load" and r["load"] is None:
            print(f"{r['name']:16} (no load recorded: give its benchmarks/utilization.py log with --logs)")
            continue
        if how == "pooled-load" and not r["same_code"] and r["algo"] != "random":
            print(f"{r['name']:16} (started before --pool-since: other proposal code, not pooled)")
            continue
        if how == "pooled-load" and cal["pooled_load"][r["algo"]] is None:
            continue
        o = simulate_run(r, run_cal, a.ahead, how)
        n += 1
        du = (o.utilization - r["real"]["util"]) * 100
        dm = o.makespan / r["real"]["makespan"] - 1
        ok = abs(du) <= 5 and abs(dm) <= 0.10
        passed += ok
        rule = "" if r["algo"] != "stream" else str(a.ahead if a.ahead is not None else r["rule"])
        load = f"{r['load']:5.1f}" if r["load"] is not None else "    ?"
        print(f"{r['name']:16} {rule:9} {load} {r['real']['util']:9.1%} {o.utilization:6.1%} {du:+5.1f}p "
              f"{r['real']['makespan']:12.1f}s {o.makespan:7.1f}s {dm:+7.1%}  {'yes' if ok else 'NO'}",
              flush=True)
    print(f"within 5 points and 10 %: {passed} of {n} runs")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", nargs="+", default=[str(REPO / "runs" / "utilization" / d / "emews.db")
                                                   for d in ("r1", "r2")],
                    help="stores of benchmarks/utilization.py (all their completed runs)")
    ap.add_argument("--logs", nargs="*", default=[],
                    help="benchmarks/utilization.py's printed output for those stores: each run's "
                         "load average, for the pooled cost model with a load factor")
    ap.add_argument("--pool-since", default="2026-11-29 16:19:00",
                    help="the pooled cost model with the load factor pools the mlrMBO runs started "
                         "at or after this time (UTC, as the store's started_at): 41920dc, the last "
                         "change to how mlrMBO proposes before the runs (later commits changed only "
                         "the look-ahead rule, which each run is simulated with)")
    ap.add_argument("--cores", type=int, default=2, help="cores of the machine the runs ran on (2)")
    ap.add_argument("--run", action="store_true", help="run benchmarks/utilization.py first")
    ap.add_argument("--driver-s", type=float, default=farmsim.DEFAULTS["driver_s"],
                    help="rank 0's seconds per trial and per result (benchmarks/dispatch.py)")
    ap.add_argument("--cost", help="a second proposal cost for the predictions, 'a,b,c,d'")
    ap.add_argument("--n-cap", type=float, default=math.inf,
                    help="with --cost or --cost-table: n capped here (a bounded training set)")
    ap.add_argument("--cost-table", help="benchmarks/proposal_cost.py's output saved to a file: its "
                    "(n, q, cpu_s) rows are fitted for a prediction with the optimizer on a core "
                    "of its own")
    ap.add_argument("--ahead", type=farmsim.parse_ahead, default=None,
                    help="mlrMBO stream's look-ahead for every run (default: the rule each run "
                         "used, read from its transcript) and for the predictions (default: "
                         "'auto', the current rule)")
    ap.add_argument("--pooled", action="store_true",
                    help="also validate with each mode's cost fitted over all its runs (GP and "
                         "forest sides apart)")
    ap.add_argument("--holdout", action="store_true",
                    help="also validate out of sample: each run simulated with everything "
                         "calibrated on the other runs (its mode's cost over the other runs since "
                         "--pool-since, their random rounds, hand-out gap and result lag)")
    ap.add_argument("--scale", type=int, nargs="*", default=[1024, 4096, 16384],
                    help="worker counts to predict (none: validation only)")
    ap.add_argument("--mean", type=float, default=600.0)
    ap.add_argument("--cv", type=float, default=1.0)
    ap.add_argument("--per-worker", type=int, default=10)
    a = ap.parse_args(argv)
    stores = [Path(x).resolve() for x in a.store]
    if a.run:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "utilization.py"),
                        "--runs", str(stores[0].parent)], check=True)
    for store in stores:
        if not store.is_file():
            sys.exit(f"no store at {store}: run benchmarks/utilization.py --runs {store.parent} "
                     f"first (or give --run)")
    per, cal = calibrate(stores, a, read_logs(a.logs))
    print(f"calibration from {len(stores)} store(s), {len(per)} runs:")
    for mode in ("stream", "batch"):
        print(f"  mlrMBO {mode} proposal per round, pooled: {fmt_cost(cal['cost'][mode])} "
              f"({cal['rounds'].get(mode, 0)} rounds)")
    print(f"  random points per round:   {fmt_cost(cal['random_cost'])} ({cal['n_random']} rounds)")
    print(f"  hand-out gap {cal['gap_s'] * 1000:.0f} ms, result to optimizer {cal['result_s'] * 1000:.0f} ms, "
          f"driver {cal['driver_s'] * 1e6:.0f} us per trial and per result")
    print("  stream look-ahead rule of each run, from its transcript (rounds where the rule "
          "proposes what the run submitted):")
    for r in per.values():
        if r["algo"] == "stream":
            print(f"    {r['name']:16} {r['rule']!s:9} " + ", ".join(
                f"{k}: {h}/{t}" for k, (h, t) in r["hits"].items()))
    validate(per, cal, a, "own", "each run's optimizer cost fitted on its own rounds")
    if a.pooled:
        validate(per, cal, a, "pooled", "each mode's cost fitted over all its runs")
    if a.holdout:
        validate(per, cal, a, "holdout", "out of sample: each run with the cost, gap and lag "
                 "fitted on the other runs (leave one out)")
    pooled_load = {m: fit_pooled_load(cal["samples"][m], a.cores) for m in ("stream", "batch")}
    if a.logs and all(v is None for v in pooled_load.values()):
        print(f"\npooled cost model with the load: no mlrMBO stream and batch rounds of runs started "
              f"since {a.pool_since} with a recorded load (give their logs with --logs)")
    elif a.logs:
        cal["cores"] = a.cores
        cal["pooled_load"] = dict(pooled_load, random=cal["random_cost"])
        print()
        for m in ("stream", "batch"):
            if pooled_load[m] is None:
                continue
            print(f"pooled cost model, mlrMBO {m}, runs since {a.pool_since}: "
                  f"({fmt_cost(cal['pooled_load'][m])}) x max(1, load average / {a.cores})")
        validate(per, cal, a, "pooled-load", f"one cost model per mode (runs since {a.pool_since}) "
                 f"x max(1, load / {a.cores})")

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
    if not a.scale:
        return 0
    ahead = a.ahead if a.ahead is not None else "auto"
    print(f"\nprediction: trials lognormal mean {a.mean:g} s CV {a.cv:g}, {a.per_worker} per worker, "
          f"stream look-ahead {ahead}; paper: {PAPER_MODELS_PER_H:,} models/h on 1,024 nodes")
    print(f"{'cost':11} {'algo':7} {'W':>6} {'util':>6} {'util_ss':>7} {'trials/h':>9} {'ss/h':>8} "
          f"{'ideal/h':>8} {'opt busy':>9} {'driver busy':>11}")
    for label, cost in costs:
        for W in a.scale:
            for algo in ("batch", "random", "stream"):
                dist = farmsim.lognormal(a.mean, a.cv, 0)
                budget = a.per_worker * W
                c = cost.get(algo, farmsim.Cost()) if isinstance(cost, dict) else cost
                # mlrMBO's default design with its GP is at least one round of the workers
                # (design.R), min.fit half of it, as in the real runs
                opt = farmsim.optimizer_for(algo, W, budget, W, W, math.ceil(W / 2), c,
                                            cal["random_cost"], ahead)
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
