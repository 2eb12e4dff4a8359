"""Model retention: of the model files pilots save, the best K (lowest objective, setting
``keep.models``) stay on disk with a ``models`` row each; the files and rows that drop out go."""
from __future__ import annotations

import bisect
from pathlib import Path


class ModelKeeper:
    def __init__(self, writer, keep: int):
        self.writer = writer
        self.keep = keep
        self.best: list[tuple[float, int, str]] = []  # sorted (metric, trial id, path)

    def offer(self, trial_id: int, path: str, metric: float | None) -> None:
        """A trial saved ``path``; ``metric`` is None for a trial that did not complete."""
        if metric is None or self.keep <= 0:
            Path(path).unlink(missing_ok=True)
            return
        bisect.insort(self.best, (metric, trial_id, path))
        if len(self.best) > self.keep:
            _, _, worst = self.best.pop()
            if worst == path:  # the new one is not among the best: never recorded
                Path(path).unlink(missing_ok=True)
                return
            self.writer.delete_model(worst)
            Path(worst).unlink(missing_ok=True)
        self.writer.add_model(trial_id, path, metric)
