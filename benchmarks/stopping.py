"""Early stopping on real Keras pilots (issue 11): the same search with and without each stopper,
at equal wall time, over several seeds.

    .venv/bin/python benchmarks/stopping.py [--pilots drug treat] [--seeds 5] [--window 600]
        [--stoppers none asha median] [--epochs 30] [--algo optuna] [--runs runs/stopping]
        [--first-seed 1] [--restore-best] [--side-by-side] [--tol 0.001]

Each run is `emews workflow --pilot P --algo optuna` with Optuna's random sampler seeded by the
seed (SETTINGS {"sampler": "random", "seed": S}): a streaming optimizer whose proposals do not
depend on the results, so for one seed every stopper sees the same configurations in the same
order, and the comparison measures the stopper alone (--algo mlrMBO runs mlrMBO instead; it
adapts to what it is told, so the runs diverge). The space is the pilot's default space with
`epochs` fixed (--epochs, default 30: tens of epochs, as a campaign trains; with the pilots' own
10, or 12, the model's build and first epoch are half a training and a stop saves little) and
the loss fixed to categorical cross-entropy (so the val_loss the stoppers compare is the
objective of every trial). The budget is never reached: each run is stopped with SIGTERM
--window seconds after its first training began (its train_begin event: equal wall time; the
workers' Keras import before it is not counted), and the trials finished by then are read from the store.
The runs of one seed go one after the other (a load change then falls on every arm alike over the
seeds), or with --side-by-side all at once, each with its own workers and store, so that every
arm has the same machine load at every moment.

Printed per pilot and stopper, over the seeds: trials completed (and stopped) in the window, the
best validation loss of a trial (a stopped trial's model counts; median, and per seed against the
run without
stopping: better / same / worse), and the time to reach the no-stopping run's final best of the
same seed, as a ratio of the time the no-stopping run took to reach it (median over seeds;
`never` counts as worse than any ratio). Target (issue 11): the same best in at most half the
wall time (ratio <= 0.5), or a better best in the same time (`target met`: on how many seeds).

On a loaded machine (the 2-core reference machine with other jobs: Keras imports of 40 s, first
epochs of 10-30 s) 30 live runs long enough to compare do not fit. Then record once without
stopping (the two pilots side by side), and replay the stoppers on those recorded learning curves,
pooled (--pool: a longer random search made of all seeds' recordings) for campaign-sized windows:

    .venv/bin/python benchmarks/stopping.py --pilots drug --stoppers none --window 330 --runs R/drug
    .venv/bin/python benchmarks/stopping.py --pilots treat --stoppers none --window 330 --runs R/treat
    .venv/bin/python benchmarks/stopping.py --replay R/drug/stopping.db R/treat/stopping.db --pool \
        --window 1200 --stoppers none oracle asha median asha:grace=3 [--objective best-epoch]

Per seed the replay says why (`why:` lines: which training gave the no-stopping best, when, and
whether each stopper stopped it), and per pilot how well the best val_loss after 1, 3, 9, 27
epochs ranks the trainings as their results do (Spearman) and the first epoch's share of a
training. `oracle` is no rule but the bound of any: it stops after the first epoch every training
worse than the no-stopping best. `--objective best-epoch` scores each training by its best
epoch's val_loss (a pilot keeping its best weights) instead of the last; `--tol` adds a table
where "the same best" is within that much.

`--report DB...` prints the tables of live runs already in stores (several invocations'
together, e.g. benchmarks/recordings/), and `--trim STORE COPY` writes a store small enough to
keep there.

The replay is a farm of as many workers as the recording had, taking the recorded trials in the
same order, each timed as it was recorded (its time before training, each epoch's end, its
evaluation after the last epoch), with `emews_py/farm/stoppers.py` itself deciding on the recorded
val_loss at each epoch: a trial it stops ends one epoch after the decision (as on the farm, where
the stop reaches the training at its next epoch end) plus its recorded evaluation time. It stops
where the recording runs out (said per run). The live runs measure the whole path; the replay
measures the rules at equal wall time on real curves and real epoch times.
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
  makeDiscreteParam("epochs", values = c({epochs}L)),{extra}
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
  makeDiscreteParam("epochs", values = c({epochs}L)),{extra}
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


def start(pilot: str, seed: int, stopper: str, a, runs: Path, db: str):
    """One search started: (its experiment name, the process, its log file)."""
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
    return exp, p, log


def finish(runs: list, window: float) -> None:
    """Stop each started search (``start``'s (exp, process, log, db)) `window` seconds after its
    own first training began (or 300 s after its start if no training began by then)."""
    t0 = {exp: None for exp, *_ in runs}
    deadline = time.time() + 300
    live = list(runs)
    while live:
        for r in list(live):
            exp, p, log, db = r
            if p.poll() is None:
                if t0[exp] is None:
                    t0[exp] = first_start(db, exp)
                late = time.time() > deadline if t0[exp] is None else time.time() >= t0[exp] + window
                if not late:
                    continue
                p.send_signal(signal.SIGTERM)   # the clean stop: trials, experiment `interrupted`
                try:
                    p.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            log.close()
            live.remove(r)
        time.sleep(0.5)


def measure(db: str, exp: str, window: float) -> dict:
    """From the store: completed/stopped trials in the window, the best objective and the curve
    of (seconds since the first start, objective) of completed and stopped trials (a stopped
    trial's objective is its model as stopped: a result too)."""
    import emews_py
    df = emews_py.trials(db, exp)
    t0 = first_start(db, exp)
    done = []
    n_stopped = n_completed = 0
    for _, r in df.iterrows():
        if r["finished_at"] is None or (isinstance(r["finished_at"], float)
                                        and math.isnan(r["finished_at"])):
            continue
        t = _ts(r["finished_at"]) - t0
        if t > window:
            continue
        ok = r["objective"] is not None and math.isfinite(r["objective"])
        if r["status"] == "stopped":
            n_stopped += 1
        if r["status"] in ("completed", "stopped") and ok:
            done.append((t, float(r["objective"])))
            n_completed += r["status"] == "completed"
    done.sort()
    return {"completed": n_completed, "stopped": n_stopped,
            "best": min((y for _, y in done), default=math.inf), "curve": done}


def time_to(curve: list, target: float) -> float:
    return next((t for t, y in curve if y <= target + 1e-12), math.inf)


def report(pilot: str, results: dict, stoppers: list[str], seeds: list[int], window: float,
           tol: float = 0.0) -> None:
    """The table; with ``tol`` > 0, "same best" is within tol of the run without stopping and the
    time is to reach its best + tol (both runs)."""
    within = f", same best = within {tol:g}" if tol else ""
    print(f"\n== {pilot}: {len(seeds)} seeds, {window:g} s of trials per run{within} ==")
    base = {s: results[("none", s)] for s in seeds}
    print(f"{'stopper':<26} {'completed':>9} {'stopped':>7} {'best (median)':>13} "
          f"{'better/same/worse':>17} {'t to base best':>14} {'target met':>10}")
    for st in stoppers:
        rows = [results[(st, s)] for s in seeds]
        comp = statistics.median(r["completed"] for r in rows)
        stp = statistics.median(r["stopped"] for r in rows)
        best = statistics.median(r["best"] for r in rows)
        bsw = [0, 0, 0]
        ratios = []
        met = 0   # seeds meeting issue 11's target: the same best in <= half the time, or better
        for s, r in zip(seeds, rows):
            b = base[s]
            d = r["best"] - b["best"]
            eps = max(tol, 1e-9)
            bsw[0 if d < -eps else 1 if abs(d) <= eps else 2] += 1
            tb = time_to(b["curve"], b["best"] + tol)
            ratios.append(time_to(r["curve"], b["best"] + tol) / tb if tb > 0 else math.inf)
            met += d < -eps or ratios[-1] <= 0.5
        med = statistics.median(ratios)
        shown = "never" if math.isinf(med) else f"{med:.2f}x"
        print(f"{st:<26} {comp:>9g} {stp:>7g} {best:>13.4g} {'/'.join(map(str, bsw)):>17} "
              f"{shown:>14} {f'{met}/{len(seeds)}':>10}")
        print(f"{'':<26} per seed: best " + ", ".join(f"{r['best']:.4g}" for r in rows)
              + "; t ratio " + ", ".join("never" if math.isinf(x) else f"{x:.2f}"
                                         for x in ratios))


# ---- replay: the stoppers on recorded learning curves -------------------------------------------
def recorded(db: str, exp: str) -> tuple[list[dict], dict[int, float]]:
    """The trials of a run without stopping, in id order (the order the seeded sampler proposed
    them), each with its timeline relative to the run's first training start: ``pre`` (from the
    worker taking it to its train_begin), ``ends`` (epoch k's end after train_begin), ``vals``
    (val_loss per epoch, None for NaN), ``post`` (last epoch end to the stored result: evaluation,
    saving), ``full`` (whether it finished); and when each worker started its first training."""
    from sqlalchemy import create_engine, text
    eng = create_engine(db)
    with eng.connect() as c:
        rows = c.execute(text("SELECT t.id, t.worker, t.status, t.objective, t.started_at, "
                              "t.finished_at FROM trials t JOIN experiments e ON e.id = "
                              "t.experiment_id WHERE e.name = :n ORDER BY t.id"), {"n": exp}).all()
        evs = c.execute(text("SELECT v.trial_id, v.kind, v.epoch, v.at, v.metrics FROM events v "
                             "JOIN trials t ON t.id = v.trial_id JOIN experiments e ON e.id = "
                             "t.experiment_id WHERE e.name = :n ORDER BY v.id"), {"n": exp}).all()
    eng.dispose()
    t0 = first_start(db, exp)
    by: dict[int, dict] = {}
    for tid, kind, epoch, at, metrics in evs:
        d = by.setdefault(tid, {"begin": None, "epochs": {}})
        if kind == "train_begin" and d["begin"] is None:
            d["begin"] = _ts(at) - t0
        elif kind == "epoch_end" and epoch is not None:
            m = json.loads(metrics) if isinstance(metrics, str) else (metrics or {})
            d["epochs"][int(epoch)] = (_ts(at) - t0, m.get("val_loss"))
    out, free, first = [], {}, {}
    for tid, worker, status, objective, started, finished in rows:
        d = by.get(tid)
        if d is None or d["begin"] is None or not d["epochs"]:
            continue
        ks = sorted(d["epochs"])
        ends = [d["epochs"][k][0] - d["begin"] for k in ks]
        vals = [d["epochs"][k][1] for k in ks]
        done = status in ("completed", "failed") and finished is not None
        if worker not in first:
            first[worker] = d["begin"]
            pre = 0.0
        else:
            pre = max(0.0, d["begin"] - max(_ts(started) - t0, free.get(worker, -math.inf)))
        fin = _ts(finished) - t0 if finished is not None else None
        if fin is not None:
            free[worker] = fin
        post = max(0.0, fin - d["epochs"][ks[-1]][0]) if done else 0.0
        out.append({"id": tid, "pre": pre, "ends": ends, "vals": vals, "post": post,
                    "full": done, "status": status,
                    "objective": objective if status == "completed" else None})
    return out, first


def replay(trials: list[dict], first: dict, stopper_text: str, window: float,
           objective: str = "last", target: float = -math.inf) -> dict:
    """A farm of len(first) workers running ``trials`` in order, each taking the next when free,
    with the stopper's real code deciding on the recorded curves: a trial it stops ends one epoch
    after the decision (the stop reaches the training at the next epoch end) plus its recorded
    evaluation time. Returns what ``measure`` returns, and ``horizon``: the time up to which the
    recording sufficed (when a worker found no recorded trial left, or a trial needed more epochs
    than were recorded: the trainings still running then go on, but a live run would also have
    started others, so past the horizon the counts and the best are lower bounds).

    A trial's result is its recorded objective (the pilot's evaluation after the last epoch), a
    stopped one's its val_loss at the epoch it stopped (its model as stopped is a result too);
    ``objective="best-epoch"`` makes every result the best val_loss of the epochs it trained (what
    a pilot keeping its best epoch's weights would return). ``stopper_text="oracle"`` is no rule
    but a bound: it stops after its first epoch every training whose result is worse than
    ``target``."""
    import heapq

    from emews_py.farm import stoppers
    st = stoppers.make({**stoppers.parse(stopper_text), "metric": "val_loss"}) \
        if stopper_text not in ("none", "oracle") else None

    def result(t) -> float:
        y = t["objective"] if t["status"] == "completed" and t["objective"] is not None \
            else math.inf
        if objective == "best-epoch":
            y = min([y] + [v for v in t["vals"] if v is not None and math.isfinite(v)])
        return y
    queue = list(trials)
    heap: list = []          # (time, seq, kind, trial index, epoch)
    seq = 0
    horizon = window

    def take(worker_time: float) -> None:
        nonlocal seq, horizon
        if not queue:
            horizon = min(horizon, worker_time)
            return
        t = queue.pop(0)
        t["t0"] = worker_time + t["pre"]
        t["stop_at"] = None
        for k, e in enumerate(t["ends"]):
            heapq.heappush(heap, (t["t0"] + e, seq, "epoch", t, k))
            seq += 1
        if t["full"]:
            heapq.heappush(heap, (t["t0"] + t["ends"][-1] + t["post"], seq, "end", t, None))
            seq += 1
        else:   # cut off by the recording's end: unknown beyond its last recorded epoch
            heapq.heappush(heap, (t["t0"] + t["ends"][-1], seq, "cut", t, None))
            seq += 1

    for w in sorted(first):
        take(first[w])
    done, n_stopped = [], 0
    stops: dict[int, int] = {}   # trial id -> epochs it trained before its stop took effect
    values: dict[int, float] = {}   # trial id -> its result
    while heap:
        now, _, kind, t, k = heapq.heappop(heap)
        if now > window:
            break
        if t.get("gone"):
            continue
        if kind == "epoch":
            if t["stop_at"] is not None and k > t["stop_at"]:
                continue
            # every epoch reported is seen (a peer's data), decisions only before a stop
            # the oracle: after the first epoch, stops every training whose recorded result is
            # worse than `target` (the best any rule could do once grace is 1)
            stop = result(t) > target + 1e-12 if stopper_text == "oracle" and k == 0 \
                else st is not None and st.observe(t["id"], k, t["vals"][k])
            if stop and t["stop_at"] is None:
                s = min(k + 1, len(t["ends"]) - 1)
                if not t["full"] and s == len(t["ends"]) - 1 and k + 1 > s:
                    s = k   # unknown beyond the recording: stop where it is (rare)
                t["stop_at"] = s
                heapq.heappush(heap, (t["t0"] + t["ends"][s] + (t["post"] or 1.0), seq, "stop",
                                      t, None))
                seq += 1
            continue
        if kind in ("end", "cut") and t["stop_at"] is not None:
            continue
        t["gone"] = True
        if kind == "cut":
            horizon = min(horizon, now)
            continue
        t["spent"] = now - (t["t0"] - t["pre"])
        if kind == "stop":
            n_stopped += 1
            stops[t["id"]] = t["stop_at"] + 1
            # the model as stopped is a result too: its last (or best) epoch's val_loss
            seen = [v for v in t["vals"][:t["stop_at"] + 1] if v is not None and math.isfinite(v)]
            if seen:
                values[t["id"]] = min(seen) if objective == "best-epoch" else seen[-1]
                done.append((now, values[t["id"]], False))
        elif t["status"] == "completed" and t["objective"] is not None:
            y = values[t["id"]] = result(t)
            done.append((now, y, True))
        take(now)
    done = [d for d in sorted(done) if d[0] <= window]
    return {"completed": sum(d[2] for d in done), "stopped": n_stopped,
            "best": min((d[1] for d in done), default=math.inf),
            "curve": [(x, y) for x, y, _ in done],
            "horizon": horizon, "stops": stops, "values": values, "order": [t["id"] for t in trials],
            "ends": {t["id"]: (t["t0"] - t["pre"], t["spent"]) for t in trials if "spent" in t}}


def trim(src: str, dst: str) -> None:
    """A copy of a benchmark store small enough to keep in the repository
    (benchmarks/recordings/): every experiment and trial as stored, and every event with only what
    the replay and the tables read (its kind, epoch and time; ``val_loss`` and ``fold`` of an
    epoch_end); the EQ transcript, the segments and the model rows left out."""
    import sqlite3
    if Path(dst).exists():
        raise SystemExit(f"stopping.py --trim: {dst} exists; remove it or give another name.")
    a, c = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(c)     # a consistent copy even of a store in WAL mode
    a.close()
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for t in ("eq_messages", "segments", "models"):
        if t in tables:
            c.execute(f"DELETE FROM {t}")
    rows = c.execute("SELECT id, kind, metrics FROM events").fetchall()
    for i, kind, m in rows:
        m = json.loads(m) if isinstance(m, str) else (m or {})
        kept = {k: m[k] for k in ("val_loss", "fold") if k in m} if kind == "epoch_end" else {}
        c.execute("UPDATE events SET metrics = ? WHERE id = ?", (json.dumps(kept), i))
    c.commit()
    c.execute("PRAGMA journal_mode = DELETE")   # one self-contained file: no -wal beside it
    c.execute("VACUUM")
    c.close()


def seed_list(text: str) -> list[int]:
    """``6-15,19-23`` -> [6, ..., 15, 19, ..., 23]."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            sys.exit(f"stopping.py: --seed-list {text!r}: {part!r} is not a seed or a range "
                     f"a-b; give e.g. 6-15,19-23")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pilots", nargs="+", default=["drug", "treat"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1,
                    help="seeds first-seed .. first-seed + seeds - 1 (the random sampler's: other "
                         "seeds, other configurations; e.g. to test on seeds a choice was not made on)")
    ap.add_argument("--seed-list", metavar="LIST",
                    help="instead of --first-seed/--seeds: these seeds, e.g. 6-15,19-23 (for "
                         "--report and --replay over recordings of separate invocations)")
    ap.add_argument("--window", type=float, default=600.0)
    ap.add_argument("--stoppers", nargs="+", default=["none", "asha", "median"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--algo", default="optuna")
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--runs", default=str(REPO / "runs" / "stopping"))
    ap.add_argument("--pool", action="store_true",
                    help="replay: after a seed's own recorded trainings, the other seeds' (in seed "
                         "order, cyclically; those the recording cut off left out): random-sampler "
                         "trainings are independent draws from the space, so this is a longer "
                         "random search of the same kind")
    ap.add_argument("--replay", nargs="+", default=[], metavar="DB",
                    help="no runs: replay the stoppers on the learning curves recorded by the runs "
                         "without stopping in these stores (URLs or SQLite files) (a run of this script with --stoppers "
                         "none and a longer --window), at --window seconds")
    ap.add_argument("--objective", choices=("last", "best-epoch"), default="last",
                    help="replay: a trial's result is the pilot's objective (the last epoch's "
                         "model: default), or the best val_loss of its epochs (what a pilot "
                         "keeping its best epoch's weights would return)")
    ap.add_argument("--restore-best", action="store_true",
                    help="live runs: the pilots keep their best epoch's weights (restore_best_weights "
                         "= 1 in the space), so a training's result, a stopped one's too, is its "
                         "best epoch's val_loss; replay such a recording with --objective best-epoch")
    ap.add_argument("--side-by-side", action="store_true",
                    help="live runs: start the runs of one seed (every stopper's) at the same "
                         "time, each with its own workers and store (stopping-<rule>.db), instead "
                         "of one after the other: every arm has the same machine load at every "
                         "moment, and a seed takes one window instead of one per stopper")
    ap.add_argument("--tol", type=float, default=0.0,
                    help="also print the table with 'the same best' meaning within this much of "
                         "the run without stopping (e.g. 0.001: drug's val_loss goes to 1e-7 in "
                         "many trainings that all classify every validation sample right)")
    ap.add_argument("--report", nargs="+", default=[], metavar="DB",
                    help="no runs: the tables of live runs already in these stores (URLs or "
                         "SQLite files, e.g. benchmarks/recordings/), for --pilots, --stoppers and "
                         "the seeds given; runs of several invocations together")
    ap.add_argument("--trim", nargs=2, metavar=("STORE", "COPY"),
                    help="no runs: write a copy of a benchmark's SQLite store with only what the "
                         "replay and the tables read (for benchmarks/recordings/)")
    a = ap.parse_args()
    if a.trim:
        trim(*a.trim)
        return 0
    if a.stoppers[0] != "none":
        a.stoppers = ["none"] + [s for s in a.stoppers if s != "none"]
    runs = Path(a.runs).resolve()
    db = f"sqlite:///{runs / 'stopping.db'}"
    seeds = seed_list(a.seed_list) if a.seed_list else \
        list(range(a.first_seed, a.first_seed + a.seeds))
    if a.replay:
        return main_replay(a, seeds)
    if a.report:
        return main_report(a, seeds)
    runs.mkdir(parents=True, exist_ok=True)
    # --side-by-side: one store per arm (a stopper's name before ':'), written by one search each
    dbs = {st: db if not a.side_by_side else
           f"sqlite:///{runs / ('stopping-' + st.split(':')[0] + '.db')}" for st in a.stoppers}
    print(f"[stopping] {len(a.pilots)} pilots x {len(seeds)} seeds x {len(a.stoppers)} stoppers, "
          f"{a.window:g} s each{' (side by side)' if a.side_by_side else ''}, {a.procs - 1} "
          f"workers, algo {a.algo}, store {', '.join(sorted(set(dbs.values())))}; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    for pilot in a.pilots:
        extra = '\n  makeDiscreteParam("restore_best_weights", values = c(1L)),' if a.restore_best else ""
        (runs / f"{pilot}_space.R").write_text(SPACES[pilot].format(epochs=int(a.epochs), extra=extra))
        results = {}
        for s in seeds:
            # alternating, so a load change hits every stopper alike; or all at once, each in its
            # own store (--side-by-side: the same load for every arm, at every moment)
            groups = [[(st, dbs[st])] for st in a.stoppers] if not a.side_by_side \
                else [[(st, dbs[st]) for st in a.stoppers]]
            for group in groups:
                t = time.time()
                started = [(*start(pilot, s, st, a, runs, d), d) for st, d in group]
                finish(started, a.window)
                for (st, d), (exp, *_) in zip(group, started):
                    results[(st, s)] = m = measure(d, exp, a.window)
                    print(f"[stopping] {exp}: {m['completed']} completed, {m['stopped']} "
                          f"stopped, best {m['best']:.4g} ({time.time() - t:.0f} s, load "
                          f"{os.getloadavg()[0]:.1f})", flush=True)
        tables(pilot, results, a, seeds)
    return 0


def why(trials: list[dict], base: dict, res: dict, stopper: str) -> str:
    """Why a stopper did or did not reach the no-stopping run's best sooner: where that best was
    in the order of trainings and when it came, whether this stopper stopped it, and how much of
    the trainings' time the stops saved."""
    by = {t["id"]: t for t in trials}
    tb = time_to(base["curve"], base["best"])
    if math.isinf(tb):
        return "no completed training without stopping"
    # the trial that gave the no-stopping best: the completed one with that objective, first
    bid = next(i for i in base["order"] if abs(base["values"].get(i, math.inf) - base["best"])
               <= 1e-12)
    k = base["order"].index(bid) + 1
    t = by[bid]
    cost = t["pre"] + t["ends"][-1] + t["post"]
    line = (f"the no-stopping best is training #{k} (id {bid}, {len(t['ends'])} epochs, first "
            f"epoch {100 * (t['pre'] + t['ends'][0]) / cost:.0f}% of its {cost:.0f} s), done at "
            f"{tb:.0f} s")
    if stopper == "none":
        return line
    if bid in res["stops"]:
        line += f"; {stopper} stopped it after {res['stops'][bid]} epoch(s)"
    else:
        tr = time_to(res["curve"], base["best"])
        line += f"; {stopper} kept it" + ("" if math.isinf(tr) else f", done at {tr:.0f} s")
    # time the stopped trainings used, against what they would have used unstopped
    spent = sum(res["ends"][i][1] for i in res["stops"] if i in res["ends"])
    full = sum(by[i]["pre"] + by[i]["ends"][-1] + by[i]["post"] for i in res["stops"])
    if full > 0:
        line += (f"; its {len(res['stops'])} stops used {100 * spent / full:.0f}% of those "
                 f"trainings' full time")
    return line


def store_for(dbs: list[str], exp: str) -> str:
    """The first of the recording stores that holds experiment ``exp``."""
    from sqlalchemy import create_engine, text
    for db in dbs:
        eng = create_engine(db)
        try:
            with eng.connect() as c:
                if c.execute(text("SELECT 1 FROM experiments WHERE name = :n"),
                             {"n": exp}).first():
                    return db
        finally:
            eng.dispose()
    raise SystemExit(f"stopping.py: no run {exp!r} in {', '.join(dbs)}: run it first (a "
                     f"recording for --replay is a run with --stoppers none; see the docstring).")


def urls(stores: list[str]) -> list[str]:
    """Store arguments as URLs: a plain path is a SQLite file."""
    return [d if "://" in d else f"sqlite:///{Path(d).resolve()}" for d in stores]


def tables(pilot: str, results: dict, a, seeds: list[int]) -> None:
    """The table, and with --tol the one where "the same best" is within tol."""
    report(pilot, results, a.stoppers, seeds, a.window)
    if a.tol:
        report(pilot, results, a.stoppers, seeds, a.window, a.tol)


def main_report(a, seeds: list[int]) -> int:
    """The tables of live runs already stored (each run found by its experiment name)."""
    dbs = urls(a.report)
    for pilot in a.pilots:
        results = {}
        for st in a.stoppers:
            for s in seeds:
                exp = f"{pilot}-{st.split(':')[0]}-s{s}"
                results[(st, s)] = measure(store_for(dbs, exp), exp, a.window)
        tables(pilot, results, a, seeds)
    return 0


def main_replay(a, seeds: list[int]) -> int:
    dbs = urls(a.replay)
    print(f"[stopping] replay of the curves recorded in {', '.join(dbs)}, {a.window:g} s per run")
    for pilot in a.pilots:
        results = {}
        rec = {}
        for s in seeds:
            db = store_for(dbs, f"{pilot}-none-s{s}")
            rec[s] = (*recorded(db, f"{pilot}-none-s{s}"), db)
        for s in seeds:
            trials, first, db = rec[s]
            if a.pool:
                k = seeds.index(s)
                # the trainings the recording cut off are left out: their ends are unknown, and
                # one in the middle of the pool would end the replay's horizon there
                trials = [t for o in seeds[k:] + seeds[:k] for t in rec[o][0] if t["full"]]
            real = measure(db, f"{pilot}-none-s{s}", a.window)
            for st in a.stoppers:
                results[(st, s)] = m = replay([dict(t) for t in trials], first, st, a.window,
                                              a.objective, results[("none", s)]["best"]
                                              if st == "oracle" else -math.inf)
                cut = "" if m["horizon"] >= a.window else f" (recording used up at {m['horizon']:.0f} s)"
                print(f"[stopping] {pilot} seed {s} {st}: {m['completed']} completed, "
                      f"{m['stopped']} stopped, best {m['best']:.4g}{cut}")
                print(f"[stopping]   why: {why(trials, results[('none', s)], m, st)}")
            print(f"[stopping] {pilot} seed {s}: the real run without stopping: "
                  f"{real['completed']} completed, best {real['best']:.4g} in {a.window:g} s; "
                  f"recorded {len(trials)} trainings")
        tables(pilot, results, a, seeds)
        predictive(pilot, [t for s in seeds for t in rec[s][0]], a.objective)
    return 0


def predictive(pilot: str, trials: list[dict], objective: str) -> None:
    """How well a training's first epochs predict its result: Spearman's rank correlation, over
    the recorded trainings that finished, between the best val_loss after n epochs (what the
    stoppers compare) and the result; and the first epoch's share of a training's time (what a
    stop after it cannot save)."""
    full = [t for t in trials if t["full"] and t["objective"] is not None
            and all(v is not None and math.isfinite(v) for v in t["vals"])]
    if len(full) < 3:
        return
    fin = [min(t["vals"]) if objective == "best-epoch" else t["objective"] for t in full]

    def ranks(xs):
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0.0] * len(xs)
        for k, i in enumerate(order):
            r[i] = k
        return r

    def spearman(xs, ys):
        rx, ry = ranks(xs), ranks(ys)
        mx, my = statistics.mean(rx), statistics.mean(ry)
        num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
        den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
        return num / den if den else float("nan")

    n_ep = min(len(t["vals"]) for t in full)
    cells = []
    for n in (1, 3, 9, 27):
        if n <= n_ep:
            cells.append(f"{n}: {spearman([min(t['vals'][:n]) for t in full], fin):+.2f}")
    share = statistics.median((t["pre"] + t["ends"][0]) / (t["pre"] + t["ends"][-1] + t["post"])
                              for t in full)
    print(f"{pilot}: rank correlation of the best val_loss after n epochs with the result "
          f"({objective}), {len(full)} finished trainings of {n_ep} epochs: " + ", ".join(cells)
          + f"; the first epoch (with the model's build) is {100 * share:.0f}% of a training's "
          f"time (median)")


if __name__ == "__main__":
    sys.exit(main())
