"""The vocabulary every part shares: trial and experiment states, the trial record, the result.

A ``Trial`` is rank 0's record of one evaluation; it changes only through its own methods
(``start``, ``finish``, ``cancel``, ``requeue``), so every state change is one line here and the
store writes exactly these fields. A ``Result`` is what a worker sends back: immutable, and small
on the wire (a tuple), since no-op trials travel at >10,000/s.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any


class TrialStatus(str, enum.Enum):
    """The ``trials.status`` column. A ``str`` enum, so values compare and serialize as text."""
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"   # its job stopped (signal, time limit, kill); a resume runs it again
    STOPPED = "stopped"           # an early stopper (STOPPER) ended its training at stopped_epoch

    def __str__(self) -> str:
        return self.value


_STATUS_BY_VALUE = {s.value: s for s in TrialStatus}
OPEN_STATUSES = (TrialStatus.QUEUED.value, TrialStatus.RUNNING.value)  # may still run


class ExperimentStatus(str, enum.Enum):
    """The ``experiments.status`` column."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"   # its job was stopped (SIGTERM/SIGINT, time limit); resumable

    def __str__(self) -> str:
        return self.value


def objective_or_none(v: Any) -> float | None:
    """An objective as stored and reported: a float, +-inf included (a diverged loss is stored as
    such and reaches the optimizer as worse than every finite value), or None (NaN, missing)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


@dataclass(frozen=True, slots=True)
class Result:
    """A finished evaluation, as a worker reports it."""
    trial_id: int
    status: TrialStatus
    started_at: float
    finished_at: float
    worker: int | None = None
    host: str | None = None
    objective: float | None = None
    metrics: dict | None = None
    error: str | None = None
    model_path: str | None = None
    gpu: str | None = None              # the CUDA_VISIBLE_DEVICES the trial ran with
    stopped_epoch: int | None = None    # set when an early stopper ended the training

    def to_wire(self) -> tuple:
        return (self.trial_id, self.status.value, self.started_at, self.finished_at, self.worker,
                self.host, self.objective, self.metrics, self.error, self.model_path, self.gpu,
                self.stopped_epoch)

    @classmethod
    def from_wire(cls, w: tuple) -> "Result":
        return cls(w[0], _STATUS_BY_VALUE[w[1]], *w[2:])  # a dict lookup: Enum() costs µs per trial

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


@dataclass(slots=True)
class Trial:
    """One trial of an experiment, as rank 0 knows it (the columns of ``trials``)."""
    id: int
    params: dict
    submitted_at: float
    status: TrialStatus = TrialStatus.QUEUED
    worker: int | None = None
    host: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    objective: float | None = None
    metrics: dict | None = field(default=None)
    error: str | None = None
    attempts: int = 0               # how many times it was started (a resume runs it again)
    gpu: str | None = None          # 0004: CUDA_VISIBLE_DEVICES of its run
    stopped_epoch: int | None = None  # 0004: the epoch at which an early stopper ended it

    def start(self, worker: int, host: str | None, at: float) -> None:
        self.status, self.worker, self.host, self.started_at = TrialStatus.RUNNING, worker, host, at
        self.attempts += 1

    def finish(self, r: Result) -> None:
        """Record a worker's result; an infinite objective (a diverged loss) is kept, NaN is None."""
        self.status = r.status
        self.objective = objective_or_none(r.objective)
        self.metrics, self.error = r.metrics, r.error
        self.worker, self.host = r.worker, r.host
        self.started_at, self.finished_at = r.started_at, r.finished_at
        self.gpu, self.stopped_epoch = r.gpu, r.stopped_epoch

    def cancel(self, why: str, at: float) -> None:
        self.status, self.error, self.finished_at = TrialStatus.CANCELLED, why, at

    def requeue(self) -> None:
        """Back to the queue: its worker was written off before it started this trial, or a
        resume runs it again (it had not completed when its job stopped)."""
        self.status, self.worker, self.host, self.started_at = TrialStatus.QUEUED, None, None, None
        self.finished_at = self.objective = self.metrics = self.error = None
        self.gpu = self.stopped_epoch = None

    def interrupt(self, why: str, at: float) -> None:
        """Its job stops before it finished: a resume runs it again."""
        self.status, self.error, self.finished_at = TrialStatus.INTERRUPTED, why, at

    def value(self, impute: float = math.nan) -> float:
        """What a plain EMEWS optimizer receives: the objective (+inf for any infinite one: worse
        than every finite value), or ``impute`` if there is none (failed, timeout, NaN)."""
        if self.status is TrialStatus.COMPLETED and self.objective is not None:
            return math.inf if math.isinf(self.objective) else self.objective
        return impute
