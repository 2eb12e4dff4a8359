"""What a pilot's ``run(params, ctx)`` is handed (``TrialContext``) and the errors it may raise.

Standard library only: rank 0, the CLI and non-Keras pilots import this without paying for Keras.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable


class PilotError(Exception):
    """A trial that cannot run as asked (bad parameter, missing data); the message is for users."""


class UnknownParameterError(PilotError):
    pass


class TrialTimeout(Exception):
    """Raised (or signalled through ``ctx.mark_timeout()``) when a trial passes its time limit."""


class TrialContext:
    """Per-trial handle given to ``run(params, ctx)``.

    ``event(kind, epoch=None, **metrics)`` sends a callback event to rank 0 (which stores it before
    the trial's result reaches the optimizer). ``deadline`` is a ``time.time()`` value or None.
    ``stop_requested()`` is True once the run's early stopper (STOPPER) wants this training ended;
    a training that honours it calls ``mark_stopped(epoch)`` and returns normally (the Keras
    callbacks of ``emews_py.pilotkit.keras`` do both), and the trial is stored ``stopped``.
    """

    def __init__(self, trial_id: int, run_dir: str | os.PathLike, deadline: float | None,
                 sink: Callable[[dict], None], worker: int = 0,
                 halted: Callable[[], bool] | None = None):
        self.trial_id = trial_id
        self.run_dir = Path(run_dir)
        self.deadline = deadline
        self.worker = worker
        self._sink = sink
        self._halted = halted
        self.timed_out = False
        self.stopped_epoch: int | None = None

    @classmethod
    def local(cls, run_dir: str | os.PathLike = ".", trial_id: int = 0, timeout: float | None = None):
        """A context for running a pilot by hand or in a unit test; events collect in ``.events``."""
        events: list[dict] = []
        ctx = cls(trial_id, run_dir, time.time() + timeout if timeout else None, events.append)
        ctx.events = events
        return ctx

    def event(self, kind: str, epoch: int | None = None, **metrics: Any) -> None:
        clean = {k: _jsonable(v) for k, v in metrics.items()}
        self._sink({"trial_id": self.trial_id, "kind": kind, "epoch": epoch,
                    "metrics": clean, "at": time.time()})

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def mark_timeout(self) -> None:
        self.timed_out = True

    def stop_requested(self) -> bool:
        """True once the early stopper asked this training to end (checked at epoch ends)."""
        return self.stopped_epoch is not None or (self._halted is not None and self._halted())

    def mark_stopped(self, epoch: int) -> None:
        """The training honoured the stop after ``epoch`` (0-based, as in its epoch_end events)."""
        if self.stopped_epoch is None:
            self.stopped_epoch = int(epoch)

    def check_deadline(self) -> None:
        """Cooperative time limit for pilots that loop: raises TrialTimeout past the deadline."""
        if self.deadline is not None and time.time() >= self.deadline:
            self.timed_out = True
            raise TrialTimeout(f"trial {self.trial_id} passed its time limit")

    def model_path(self, suffix: str = ".keras") -> Path:
        """Where to save this trial's model; rank 0 keeps the best K and removes the rest."""
        d = self.run_dir / "models"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"trial_{self.trial_id}{suffix}"


def _jsonable(v: Any) -> Any:
    # numpy values can only exist if numpy is loaded; never import it here for a pilot without it
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    if isinstance(v, float) and v != v:
        return None
    return v
