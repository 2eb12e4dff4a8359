"""What the driver and the CLI ask of the store, each rule written once."""
from __future__ import annotations

import math
import os

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from emews_py.store.schema import experiments, segments, trials, utcnow
from emews_py.trials import OPEN_STATUSES, ExperimentStatus, TrialStatus, objective_or_none

_WHY_CANCELLED = {
    ExperimentStatus.COMPLETED: "the optimizer finished before this trial was needed",
    ExperimentStatus.FAILED: "cancelled: the experiment failed",
    ExperimentStatus.INTERRUPTED: "cancelled: the experiment was interrupted",
}
_WHY_INTERRUPTED = "interrupted: the job stopped before this trial finished; a resume runs it again"


def summary(engine: Engine, exp_id: int) -> dict:
    """Counts by status and the best completed trial of an experiment."""
    with engine.connect() as c:
        counts = dict(c.execute(select(trials.c.status, func.count())
                                .where(trials.c.experiment_id == exp_id)
                                .group_by(trials.c.status)).all())
        best = c.execute(select(trials.c.id, trials.c.objective, trials.c.params)
                         .where(trials.c.experiment_id == exp_id,
                                trials.c.status == TrialStatus.COMPLETED.value,
                                trials.c.objective.is_not(None))
                         .order_by(trials.c.objective).limit(1)).first()
        exp = c.execute(select(experiments).where(experiments.c.id == exp_id)).mappings().first()
    return {"counts": counts, "best": dict(best._mapping) if best else None,
            "experiment": dict(exp) if exp else None}


# ---- status (emews status, and any report built on it) -----------------------------------------

STALE_AFTER_S = 30.0   # the driver writes a heartbeat every 5 s; this long without one: its job is gone
_HEARTBEAT_S = 5.0     # farm.driver.HEARTBEAT_S (not imported: that would import mpi4py)


def stale_after_s() -> float:
    """Seconds without a sign of life after which a ``running`` experiment is shown stale:
    $EMEWS_STALE_AFTER_S (the tests use a few seconds), else STALE_AFTER_S. ValueError naming
    the variable unless it is a number of seconds above the driver's heartbeat period."""
    raw = os.environ.get("EMEWS_STALE_AFTER_S", "").strip()
    if not raw:
        return STALE_AFTER_S
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > _HEARTBEAT_S):
        raise ValueError(f"EMEWS_STALE_AFTER_S={raw!r} is not valid: it is how many seconds "
                         f"without a heartbeat make a running experiment stale, and must be a "
                         f"number greater than the driver's heartbeat period ({_HEARTBEAT_S:g} s), "
                         f"or else live jobs would be shown stale. Unset it for the default "
                         f"{STALE_AFTER_S:g}.")
    return v


def _age(now, t) -> float | None:
    return None if t is None else max(0.0, (now - t).total_seconds())


def _span(start, end) -> float:
    return max(0.0, (end - start).total_seconds()) if start and end else 0.0


def experiment_status(engine: Engine, exp_id: int | None = None, now=None) -> list[dict]:
    """The state of every experiment (or of ``exp_id`` only: a list of one, or empty when the
    store has no such experiment), read-only, in id order. Each is a dict with the experiment's
    columns (``id``, ``name``, ``pilot``, ``algorithm``, ``status`` as stored, ``mode``,
    ``workers``, ``run_dir``, ``started_at``, ``finished_at``, ``error``) and:

    - ``shown``: the status to show: ``stale`` for a ``running`` experiment whose last sign of life
      (heartbeat, else the start of its latest segment or of the experiment) is older than
      ``stale_after_s()``: its job is gone (``kill -9``, node lost, time limit) and nobody recorded it;
    - ``counts`` (trials by status), ``completed``, ``budget`` (``settings->max.budget``),
      ``running``, ``queued``, ``failed`` (failed + timeout), ``interrupted``;
    - ``best``: the lowest objective of a completed trial, ``best_trial`` with its id and params;
    - ``elapsed_s``: the sum over its segments of end - start (an open segment ends now if alive,
      else at its last heartbeat or trial activity); without segments, started..finished the same way;
    - ``heartbeat_at``, ``heartbeat_age_s`` (None when no heartbeat was ever written);
    - ``resumable``: stale, interrupted or failed, with a stored config (schema 0002 on);
    - ``segments``: [{number, host, pid, procs, workers, run_dir, started_at, ended_at, status,
      error, elapsed_s}], ``running_trials``: [{id, worker, host, started_at, elapsed_s, attempts,
      params}] (this one only with ``exp_id``).
    Times are naive UTC datetimes, ages and spans seconds."""
    now = now or utcnow()
    stale_after = stale_after_s()
    e, t = experiments.c, trials.c

    def where(col):
        return (lambda q: q.where(col == exp_id)) if exp_id is not None else (lambda q: q)
    with engine.connect() as c:
        exps = c.execute(where(e.id)(
            select(e.id, e.name, e.pilot, e.algorithm, e.status, e.settings, e.run_dir, e.mode,
                   e.workers, e.started_at, e.finished_at, e.error, e.heartbeat_at,
                   e.config.is_not(None).label("has_config")).order_by(e.id))).mappings().all()
        counts = c.execute(where(t.experiment_id)(
            select(t.experiment_id, t.status, func.count().label("n"),
                   func.max(t.started_at).label("last_start"),
                   func.max(t.finished_at).label("last_end"))
            .group_by(t.experiment_id, t.status))).all()
        segs = c.execute(where(segments.c.experiment_id)(
            select(segments).order_by(segments.c.experiment_id, segments.c.number))).mappings().all()
        if exp_id is not None:
            best_rows = c.execute(select(t.experiment_id, t.id, t.objective, t.params)
                                  .where(t.experiment_id == exp_id,
                                         t.status == TrialStatus.COMPLETED.value,
                                         t.objective.is_not(None))
                                  .order_by(t.objective, t.id).limit(1)).all()
            running = c.execute(select(t.id, t.worker, t.host, t.started_at, t.attempts, t.params)
                                .where(t.experiment_id == exp_id,
                                       t.status == TrialStatus.RUNNING.value)
                                .order_by(t.id)).mappings().all()
        else:
            best_rows = c.execute(select(t.experiment_id, func.min(t.objective))
                                  .where(t.status == TrialStatus.COMPLETED.value,
                                         t.objective.is_not(None))
                                  .group_by(t.experiment_id)).all()
            running = []
    by_exp: dict[int, dict] = {}
    activity: dict[int, object] = {}
    for x, status, n, last_start, last_end in counts:
        by_exp.setdefault(x, {})[status] = n
        for v in (last_start, last_end):
            if v is not None and (activity.get(x) is None or v > activity[x]):
                activity[x] = v
    seg_by_exp: dict[int, list] = {}
    for s in segs:
        seg_by_exp.setdefault(s["experiment_id"], []).append(dict(s))

    out = []
    for x in exps:
        d = {k: x[k] for k in ("id", "name", "pilot", "algorithm", "status", "run_dir", "mode",
                               "workers", "started_at", "finished_at", "error")}
        cnt = by_exp.get(x["id"], {})
        sg = seg_by_exp.get(x["id"], [])
        last = sg[-1] if sg else None
        beats = [b for b in (x["heartbeat_at"], last and last["heartbeat_at"]) if b is not None]
        heartbeat = max(beats) if beats else None
        signs = beats + [v for v in (last and last["started_at"], x["started_at"]) if v is not None]
        alive_at = max(signs) if signs else None
        age = _age(now, alive_at)
        stale = (x["status"] == ExperimentStatus.RUNNING.value
                 and (age is None or age > stale_after))
        live = x["status"] == ExperimentStatus.RUNNING.value and not stale
        act = activity.get(x["id"])

        def end_of(start, ended, beats, until=None):
            """When a span ended: ``ended``; if open: now while alive, else its last sign of
            life (heartbeat, trial activity) before ``until`` (the next segment's start)."""
            if ended is not None:
                return ended
            if live and until is None:
                return now
            later = [v for v in (*beats, act) if v is not None and start and v >= start
                     and (until is None or v <= until)]
            return max(later) if later else start
        for i, s in enumerate(sg):
            nxt = sg[i + 1]["started_at"] if i + 1 < len(sg) else None
            s["elapsed_s"] = _span(s["started_at"], end_of(
                s["started_at"], s["ended_at"],
                (s["heartbeat_at"], x["heartbeat_at"] if nxt is None else None), nxt))
        elapsed = (sum(s["elapsed_s"] for s in sg) if sg else
                   _span(x["started_at"], end_of(x["started_at"], x["finished_at"], beats)))
        settings = x["settings"] if isinstance(x["settings"], dict) else {}
        if exp_id is not None:
            best_trial = ({"id": best_rows[0].id, "objective": best_rows[0].objective,
                           "params": best_rows[0].params} if best_rows else None)
            best = best_trial and best_trial["objective"]
        else:
            best_trial = None
            best = next((b for i, b in best_rows if i == x["id"]), None)
        d.update(
            shown="stale" if stale else x["status"], counts=cnt,
            completed=cnt.get(TrialStatus.COMPLETED.value, 0), budget=settings.get("max.budget"),
            running=cnt.get(TrialStatus.RUNNING.value, 0),
            queued=cnt.get(TrialStatus.QUEUED.value, 0),
            failed=cnt.get(TrialStatus.FAILED.value, 0) + cnt.get(TrialStatus.TIMEOUT.value, 0),
            interrupted=cnt.get(TrialStatus.INTERRUPTED.value, 0),
            best=best, best_trial=best_trial, elapsed_s=elapsed,
            heartbeat_at=heartbeat, heartbeat_age_s=_age(now, heartbeat), alive_age_s=age,
            stale=stale, has_config=bool(x["has_config"]),
            resumable=bool(x["has_config"]) and (stale or x["status"] in (
                ExperimentStatus.INTERRUPTED.value, ExperimentStatus.FAILED.value)),
            segments=sg,
            running_trials=[dict(r, elapsed_s=_age(now, r["started_at"])) for r in running])
        out.append(d)
    return out


def end_experiment(engine: Engine, exp_id: int, status: ExperimentStatus, error: str | None = None,
                   final_message: str | None = None, why_cancelled: str | None = None,
                   running_as: TrialStatus | None = None, why_running: str | None = None,
                   open_as: TrialStatus = TrialStatus.CANCELLED,
                   segment_status: str | None = None) -> int:
    """End an experiment in one transaction: every trial of it still queued or running becomes
    ``open_as`` (``cancelled``, or ``interrupted`` when the job was stopped: a resume runs those
    again), with ``error`` = ``why_cancelled`` (by default a reason that follows from ``status``)
    and ``finished_at`` = now; the experiment gets ``status``, ``finished_at``, ``error`` and
    ``final_message``; its open segment (``ended_at`` NULL) gets ``ended_at`` = now, ``error`` and
    ``segment_status`` (default: the experiment's status; the CLI's post-mortem says ``killed``).
    Returns how many trials were closed. The driver's normal end, failure and clean stop, and the
    CLI's post-mortem of a job that died under the driver, all end experiments here.

    ``running_as``: a trial that was *running* becomes this instead (with ``why_running``);
    default: the same as the queued ones."""
    status = ExperimentStatus(status)
    if status is ExperimentStatus.RUNNING:
        raise ValueError(f"end_experiment({exp_id}): an experiment ends as completed, failed or "
                         f"interrupted, not {status.value!r}")
    open_as = TrialStatus(open_as)
    why = why_cancelled if why_cancelled is not None else (
        _WHY_CANCELLED[status] if open_as is TrialStatus.CANCELLED else _WHY_INTERRUPTED)
    now = utcnow()
    with engine.begin() as c:
        n = 0
        if running_as is not None and TrialStatus(running_as) is not open_as:
            n += c.execute(update(trials)
                           .where(trials.c.experiment_id == exp_id,
                                  trials.c.status == TrialStatus.RUNNING.value)
                           .values(status=TrialStatus(running_as).value,
                                   error=why_running or why, finished_at=now)).rowcount
        n += c.execute(update(trials)
                      .where(trials.c.experiment_id == exp_id, trials.c.status.in_(OPEN_STATUSES))
                      .values(status=open_as.value, error=why, finished_at=now)).rowcount
        c.execute(update(experiments).where(experiments.c.id == exp_id)
                  .values(status=status.value, finished_at=now, error=error,
                          final_message=final_message))
        c.execute(update(segments).where(segments.c.experiment_id == exp_id,
                                         segments.c.ended_at.is_(None))
                  .values(status=segment_status or status.value, ended_at=now, error=error))
    return n


_VALUED = (TrialStatus.COMPLETED.value, TrialStatus.STOPPED.value)


def history(engine: Engine, exp_id: int) -> dict | None:
    """What an optimizer may reuse of an earlier experiment (the EQ ``history`` message, mlrMBO's
    ``warm.start``): its space and its finished trials in id order, i.e. completed ones (a NaN
    objective as None, an infinite one kept), early-stopped ones (status "stopped", the objective
    at the stop, as the live streaming protocol gives it) and failed or timed-out ones (objective
    None), as
    ``{"experiment", "name", "space", "results": [{"id", "params", "status", "objective",
    "metrics", "stopped_epoch"}]}``. Cancelled, interrupted, queued and running trials tell
    nothing about their point and are left out. None when the store has no experiment ``exp_id``."""
    finished = (TrialStatus.COMPLETED.value, TrialStatus.FAILED.value, TrialStatus.TIMEOUT.value,
                TrialStatus.STOPPED.value)
    with engine.connect() as c:
        exp = c.execute(select(experiments.c.id, experiments.c.name, experiments.c.space_json)
                        .where(experiments.c.id == exp_id)).first()
        if exp is None:
            return None
        rows = c.execute(select(trials.c.id, trials.c.params, trials.c.status, trials.c.objective,
                                trials.c.metrics, trials.c.stopped_epoch)
                         .where(trials.c.experiment_id == exp_id, trials.c.status.in_(finished))
                         .order_by(trials.c.id)).all()
    results = [{"id": r.id, "params": r.params, "status": r.status,
                "objective": objective_or_none(r.objective) if r.status in _VALUED else None,
                "metrics": r.metrics, "stopped_epoch": r.stopped_epoch} for r in rows]
    return {"experiment": exp.id, "name": exp.name, "space": exp.space_json, "results": results}

