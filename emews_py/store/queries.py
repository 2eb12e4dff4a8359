"""What the driver and the CLI ask of the store, each rule written once."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from emews_py.store.schema import experiments, trials, utcnow
from emews_py.trials import OPEN_STATUSES, ExperimentStatus, TrialStatus, objective_or_none

_WHY_CANCELLED = {
    ExperimentStatus.COMPLETED: "the optimizer finished before this trial was needed",
    ExperimentStatus.FAILED: "cancelled: the experiment failed",
}


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


def end_experiment(engine: Engine, exp_id: int, status: ExperimentStatus, error: str | None = None,
                   final_message: str | None = None, why_cancelled: str | None = None,
                   running_as: TrialStatus = TrialStatus.CANCELLED,
                   why_running: str | None = None) -> int:
    """End an experiment in one transaction: every trial of it still queued or running becomes
    ``cancelled`` (``error`` = ``why_cancelled``, by default a reason that follows from ``status``;
    ``finished_at`` = now), and the experiment gets ``status``, ``finished_at``, ``error`` and
    ``final_message``. Returns how many trials were closed. The driver's normal end and failure,
    and the CLI's post-mortem of a job that died under the driver, all end experiments here.

    ``running_as``: the post-mortem closes a trial that was *running* when the MPI job died as
    ``failed`` (it died with the job, most likely its cause), with ``why_running``."""
    status = ExperimentStatus(status)
    if status is ExperimentStatus.RUNNING:
        raise ValueError(f"end_experiment({exp_id}): an experiment ends as completed or failed, "
                         f"not {status.value!r}")
    why = why_cancelled if why_cancelled is not None else _WHY_CANCELLED[status]
    now = utcnow()
    with engine.begin() as c:
        n = 0
        if running_as is not TrialStatus.CANCELLED:
            n += c.execute(update(trials)
                           .where(trials.c.experiment_id == exp_id,
                                  trials.c.status == TrialStatus.RUNNING.value)
                           .values(status=TrialStatus(running_as).value,
                                   error=why_running or why, finished_at=now)).rowcount
        n += c.execute(update(trials)
                      .where(trials.c.experiment_id == exp_id, trials.c.status.in_(OPEN_STATUSES))
                      .values(status=TrialStatus.CANCELLED.value, error=why, finished_at=now)).rowcount
        c.execute(update(experiments).where(experiments.c.id == exp_id)
                  .values(status=status.value, finished_at=now, error=error,
                          final_message=final_message))
    return n

def history(engine: Engine, exp_id: int) -> dict | None:
    """What an optimizer may reuse of an earlier experiment (the EQ ``history`` message, mlrMBO's
    ``warm.start``): its space and its finished trials in id order, i.e. completed ones (a NaN
    objective as None, an infinite one kept) and failed or timed-out ones (objective None), as
    ``{"experiment", "name", "space", "results": [{"id", "params", "status", "objective",
    "metrics"}]}``. Cancelled, interrupted, queued and running trials tell nothing about their
    point and are left out. None when the store has no experiment ``exp_id``."""
    finished = (TrialStatus.COMPLETED.value, TrialStatus.FAILED.value, TrialStatus.TIMEOUT.value)
    with engine.connect() as c:
        exp = c.execute(select(experiments.c.id, experiments.c.name, experiments.c.space_json)
                        .where(experiments.c.id == exp_id)).first()
        if exp is None:
            return None
        rows = c.execute(select(trials.c.id, trials.c.params, trials.c.status, trials.c.objective,
                                trials.c.metrics)
                         .where(trials.c.experiment_id == exp_id, trials.c.status.in_(finished))
                         .order_by(trials.c.id)).all()
    results = [{"id": r.id, "params": r.params, "status": r.status,
                "objective": objective_or_none(r.objective) if r.status == finished[0] else None,
                "metrics": r.metrics} for r in rows]
    return {"experiment": exp.id, "name": exp.name, "space": exp.space_json, "results": results}

