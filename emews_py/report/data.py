"""What the report reads from the store: one experiment, its trials, the epoch events of its best
trials, and the figures derived from them (best so far, worker timeline, utilization). Read-only;
plain Python values, no plotting here."""
from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.engine import Engine

from emews_py.store.queries import experiment_status
from emews_py.store.schema import events, experiments, trials, utcnow
from emews_py.trials import TrialStatus

BEST_CURVES = 5      # learning curves of this many best trials
BEST_PARALLEL = 20   # parallel coordinates of this many best trials
TOP_TABLE = 10       # rows of the top-trials table


class ReportError(Exception):
    """Nothing to report (unknown or empty experiment): one line for the user."""


def _finite(v) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _secs(t, t0) -> float | None:
    return None if t is None or t0 is None else (t - t0).total_seconds()


def load(engine: Engine, exp_id: int, now=None) -> dict:
    """Everything the report shows for experiment ``exp_id``, as plain values (times as seconds
    since the experiment's start, ``t0``). Raises ReportError for an unknown or empty experiment."""
    now = now or utcnow()
    st = experiment_status(engine, exp_id, now=now)
    if not st:
        raise ReportError(f"the store has no experiment {exp_id} (emews status lists them)")
    st = st[0]
    t = trials.c
    with engine.connect() as c:
        exp = c.execute(select(experiments.c.space_json, experiments.c.settings,
                               experiments.c.space, experiments.c.final_message)
                        .where(experiments.c.id == exp_id)).mappings().first()
        rows = [dict(r) for r in c.execute(
            select(t.id, t.params, t.status, t.objective, t.metrics, t.worker, t.host,
                   t.submitted_at, t.started_at, t.finished_at, t.error, t.attempts)
            .where(t.experiment_id == exp_id).order_by(t.id)).mappings()]
        if not rows:
            raise ReportError(f"experiment {exp_id} ({st['name']}) has no trials yet: nothing to "
                              f"report (its status: {st['shown']})")
        ok = [r for r in rows if r["status"] == TrialStatus.COMPLETED.value
              and _finite(r["objective"]) is not None]
        ranked = sorted(ok, key=lambda r: (r["objective"], r["id"]))
        best_ids = [r["id"] for r in ranked[:BEST_CURVES]]
        ev = c.execute(select(events.c.trial_id, events.c.epoch, events.c.metrics, events.c.at)
                       .where(events.c.trial_id.in_(best_ids), events.c.kind == "epoch_end")
                       .order_by(events.c.trial_id, events.c.id)).all() if best_ids else []
        n_epoch_events = c.execute(
            select(events.c.id).join(trials, trials.c.id == events.c.trial_id)
            .where(trials.c.experiment_id == exp_id, events.c.kind == "epoch_end").limit(1)).first()

    t0 = min((x for x in [st["started_at"], *(r["started_at"] for r in rows)] if x is not None),
             default=None)
    for r in rows:
        r["objective"] = _finite(r["objective"])
        r["start_s"] = _secs(r["started_at"], t0)
        r["end_s"] = _secs(r["finished_at"], t0)
        if r["status"] == TrialStatus.RUNNING.value and r["started_at"] is not None:
            # still running: its bar reaches the time of the report, or the last heartbeat of
            # a job that is gone (stale)
            last = now if st["shown"] == "running" else (st["heartbeat_at"] or now)
            r["end_s"] = max(_secs(last, t0), r["start_s"])
        r["duration_s"] = (r["end_s"] - r["start_s"]
                           if r["start_s"] is not None and r["end_s"] is not None else None)

    curves: dict[int, list[dict]] = {}
    for trial_id, epoch, metrics, _at in ev:
        m = metrics if isinstance(metrics, dict) else {}
        curves.setdefault(trial_id, []).append(
            {"epoch": epoch, "fold": m.get("fold"), "loss": _finite(m.get("loss")),
             "val_loss": _finite(m.get("val_loss"))})

    space = exp["space_json"] if isinstance(exp["space_json"], dict) else {}
    params = [p for p in space.get("params", []) if isinstance(p, dict) and "id" in p]
    known = {p["id"] for p in params}
    for r in rows:   # a space without JSON export (or a key it lacks): take it from the trials
        for k, v in (r["params"] or {}).items():
            if k not in known:
                known.add(k)
                params.append({"id": k, "type": "numeric" if _finite(v) is not None else "discrete"})
    return {"status": st, "space": params, "space_source": space.get("source") or exp["space"],
            "settings": exp["settings"] if isinstance(exp["settings"], dict) else {},
            "final_message": exp["final_message"], "trials": rows, "ranked": ranked,
            "curves": {i: curves[i] for i in best_ids if i in curves},
            "any_epoch_events": n_epoch_events is not None, "now": now, "t0": t0,
            "utilization": utilization(rows, st, t0),
            "segments_s": [{"number": s["number"], "start_s": _secs(s["started_at"], t0)}
                           for s in st["segments"]]}


def best_so_far(rows: list[dict]) -> list[dict]:
    """Completed trials with a finite objective in the order they finished, each with the lowest
    objective seen up to it."""
    done = sorted((r for r in rows if r["status"] == TrialStatus.COMPLETED.value
                   and r["objective"] is not None and r["end_s"] is not None),
                  key=lambda r: (r["end_s"], r["id"]))
    out, best = [], math.inf
    for n, r in enumerate(done, 1):
        best = min(best, r["objective"])
        out.append({"n": n, "id": r["id"], "end_s": r["end_s"], "objective": r["objective"],
                    "best": best})
    return out


def utilization(rows: list[dict], st: dict, t0) -> dict | None:
    """Busy worker-seconds / (workers x makespan), as benchmarks/utilization.py measures it. A
    campaign of several jobs counts each job's own span and workers, not the time between jobs."""
    ran = [r for r in rows if r["start_s"] is not None and r["end_s"] is not None]
    if not ran:
        return None
    busy = sum(max(0.0, r["end_s"] - r["start_s"]) for r in ran)
    segs = st["segments"]
    spans = []
    if segs:
        starts = [_secs(s["started_at"], t0) for s in segs]
        for i, s in enumerate(segs):
            lo = starts[i] if starts[i] is not None else -math.inf
            hi = starts[i + 1] if i + 1 < len(segs) and starts[i + 1] is not None else math.inf
            inside = [r for r in ran if lo <= r["start_s"] < hi] if len(segs) > 1 else ran
            if inside:
                spans.append((s["workers"] or st["workers"] or 1,
                              max(r["end_s"] for r in inside) - min(r["start_s"] for r in inside)))
    else:
        spans = [(st["workers"] or len({r["worker"] for r in ran}) or 1,
                  max(r["end_s"] for r in ran) - min(r["start_s"] for r in ran))]
    capacity = sum(w * s for w, s in spans)
    return {"busy_s": busy, "makespan_s": sum(s for _, s in spans),
            "workers": max(w for w, _ in spans) if spans else None,
            "value": busy / capacity if capacity > 0 else None}
