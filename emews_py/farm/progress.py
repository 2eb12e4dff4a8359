"""Rank 0's progress on the terminal: one live line on a TTY, a plain line every 30 s in a log.

    37/48 completed, 3 running, 1 failed, best 0.412, 2m10s elapsed, ~45s left

``EMEWS_PROGRESS`` picks the form: ``tty`` (a live line, redrawn a few times a second, with
every other line of rank 0 printed above it), ``plain`` (``[emews] progress: ...`` every
``EMEWS_PROGRESS_EVERY`` seconds, default 30, so a run shorter than that prints none) or ``off``.
Under mpiexec rank 0's stdout is a pipe even when the user's terminal is a TTY (hydra relays it,
partial lines included), so ``emews workflow``, which sees the terminal, sets it (and
``COLUMNS``); unset, rank 0 asks its own stdout.

Cost: the driver calls ``finished`` once per finished trial (a few comparisons) and ``tick`` from
its periodic check; the line is built at most every ``TTY_EVERY_S``, so the hot loop (thousands of
trials a second) does not notice it.
"""
from __future__ import annotations

import atexit
import math
import os
import sys
import time

from emews_py.trials import TrialStatus

TTY_EVERY_S = 0.25          # live line: at most 4 redraws a second
PLAIN_EVERY_S = 30.0        # plain line: the default period (EMEWS_PROGRESS_EVERY)
ETA_AFTER = 3               # finished trials (this job) before the time left is estimated


def duration(sec: float | None) -> str:
    """12s, 4m05s, 3h07m, 2d04h (the same as ``emews status``)."""
    from emews_py.cli import duration as d
    return d(sec)


def mode_from_env() -> str:
    m = os.environ.get("EMEWS_PROGRESS", "").strip().lower()
    if m in ("tty", "plain", "off"):
        return m
    return "tty" if sys.stdout.isatty() else "plain"


def every_from_env() -> float:
    try:
        v = float(os.environ.get("EMEWS_PROGRESS_EVERY", PLAIN_EVERY_S))
    except ValueError:
        return PLAIN_EVERY_S
    return v if v > 0 else PLAIN_EVERY_S


class Progress:
    """Counts of the experiment's trials, updated incrementally, and their display."""

    def __init__(self, budget, mode: str | None = None, every: float | None = None,
                 start: float | None = None):
        try:
            self.budget = int(budget) if budget is not None else None
        except (TypeError, ValueError):
            self.budget = None
        self.mode = mode or mode_from_env()
        self.every = every if every is not None else every_from_env()
        self.start = start if start is not None else time.time()
        self.completed = self.failed = self.timeout = self.stopped = 0
        self.best: float | None = None
        self.done_here = 0           # finished in this job: the rate for the estimate
        self.last_shown = self.start
        self.live = None

    # ---- counting ----------------------------------------------------------------------------
    def seed(self, trials) -> None:
        """What earlier jobs of a resumed experiment finished (not counted in the rate)."""
        for t in trials:
            self.count(t)

    def count(self, t) -> None:
        s = t.status
        if s is TrialStatus.COMPLETED:
            self.completed += 1
            v = t.objective
            if v is not None and (self.best is None or v < self.best):
                self.best = v
        elif s is TrialStatus.FAILED:
            self.failed += 1
        elif s is TrialStatus.TIMEOUT:
            self.timeout += 1
        elif s is TrialStatus.STOPPED:     # by the early stopper (STOPPER): finished, not failed
            self.stopped += 1

    def finished(self, t) -> None:
        """A trial of this job finished (completed, stopped, failed or timeout)."""
        self.count(t)
        self.done_here += 1

    # ---- the line ----------------------------------------------------------------------------
    def text(self, now: float, running: int) -> str:
        done = f"{self.completed}/{self.budget}" if self.budget else f"{self.completed}"
        bad = self.failed + self.timeout
        failed = f"{bad} failed" + (f" ({self.timeout} timeout)" if self.timeout else "")
        best = "-" if self.best is None else f"{self.best:.4g}"
        elapsed = now - self.start
        stopped = f"{self.stopped} stopped, " if self.stopped else ""
        return (f"{done} completed, {stopped}{running} running, {failed}, best {best}, "
                f"{duration(elapsed)} elapsed, {self.eta(elapsed)} left")

    def eta(self, elapsed: float) -> str:
        """From this job's completion rate; "?" until a few trials finished (or no budget)."""
        if not self.budget or self.done_here < ETA_AFTER or elapsed <= 0:
            return "?"
        left = self.budget - (self.completed + self.stopped + self.failed + self.timeout)
        if left <= 0:
            return "~0s"
        sec = left * elapsed / self.done_here
        return "?" if not math.isfinite(sec) else f"~{duration(sec)}"

    def tick(self, now: float, running: int) -> None:
        """From the driver's periodic check: redraw the live line, or print the plain one."""
        if self.mode == "tty":
            if now - self.last_shown >= TTY_EVERY_S:
                self.last_shown = now
                self.show(self.text(now, running))
        elif self.mode == "plain" and now - self.last_shown >= self.every:
            self.last_shown = now
            sys.stdout.write(f"[emews] progress: {self.text(now, running)}\n")
            sys.stdout.flush()

    def show(self, line: str) -> None:
        from rich.text import Text
        t = Text(line, no_wrap=True, overflow="ellipsis")
        if self.live is None:
            self.live = self.open_live(t)
        else:
            self.live.update(t, refresh=True)

    def open_live(self, first):
        """A rich Live display on stdout (forced: under mpiexec stdout is hydra's pipe to the
        terminal). stdout and stderr go through it, so the driver's and the optimizer's lines are
        printed above the live line instead of through it."""
        from rich.console import Console
        from rich.live import Live

        class _Console(Console):
            def show_cursor(self, show: bool = True) -> bool:
                return False   # a rank 0 killed mid-run must not leave the user's cursor hidden

        console = _Console(file=sys.stdout, force_terminal=True, soft_wrap=True,
                           highlight=False, markup=False, emoji=False)
        live = Live(first, console=console, auto_refresh=False, transient=True,
                    redirect_stdout=True, redirect_stderr=True)
        live.start(refresh=True)
        atexit.register(self.stop)
        return live

    def stop(self) -> None:
        """Remove the live line (before the summary, and at exit); stdout is itself again."""
        live, self.live = self.live, None
        if live is not None:
            try:
                live.stop()
            except Exception:  # noqa: BLE001 - a closed terminal must not fail the run's end
                pass
            sys.stdout.flush()
