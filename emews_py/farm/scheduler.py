"""Which trial goes to which worker, and when a worker is stuck. Pure: no MPI, no database, no
clock (every method that needs the time takes ``now``), so it is unit-tested in milliseconds.

A worker runs the trials of a message ("chunk") in order. Per worker the scheduler keeps the
chunks sent and not yet answered, the ids of each chunk not yet reported, and which trial is
running since when (``Running``): a chunk's first trial starts when it reaches an idle worker
(or when the chunk before it is answered); later ones are reported by the worker's progress
notices (``on_progress``), which also carry the results finished so far. The watchdog blames
exactly that running trial, from its own start, and re-queues only trials that never started.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# Trials shorter than this travel to workers in chunks (one message, one answer); longer ones one
# at a time, so a slow worker never holds trials another could start.
CHUNK_BELOW_S = 0.005
MAX_CHUNK = 512


RANK_SILENT_S = 60.0  # the driver's backstop waits this much longer than the worker's own


def trial_stuck_after(timeout: float | None) -> float | None:
    """A resident trial is stopped cooperatively at TIMEOUT; one that still has not returned after
    this grace period (the larger of 10 s and a quarter of TIMEOUT) is stuck, in native code say:
    its worker kills the trial's interpreter, records ``timeout`` and goes on (``worker.py``)."""
    return timeout + max(10.0, 0.25 * timeout) if timeout else None


def stuck_after(timeout: float | None) -> float | None:
    """The driver's watchdog, a backstop for a worker RANK that stops answering (the worker
    itself ends a stuck trial at ``trial_stuck_after``): that plus RANK_SILENT_S."""
    t = trial_stuck_after(timeout)
    return t + RANK_SILENT_S if t else None


@dataclass(frozen=True, slots=True)
class Running:
    trial_id: int
    since: float


@dataclass(frozen=True, slots=True)
class Stuck:
    """The watchdog's verdict on one worker: ``trial_id`` ran since ``since`` without an answer;
    ``requeued`` (never started there) went back to the front of the queue."""
    rank: int
    trial_id: int
    since: float
    requeued: tuple[int, ...]


class Scheduler:
    def __init__(self, ranks: list[int], stuck_after_s: float | None = None):
        self.ranks = list(ranks)
        self.queue: deque[int] = deque()
        self.chunks: dict[int, deque[deque[int]]] = {r: deque() for r in self.ranks}
        self.running: dict[int, Running] = {}
        self.out: set[int] = set()          # workers written off by the watchdog
        self.n_inflight = 0                 # trials sent to workers in service, not answered yet
        self.estimate_s: float | None = None
        self.stuck_after_s = stuck_after_s

    # ---- the queue ---------------------------------------------------------------------------
    def submit(self, ids: list[int]) -> None:
        self.queue.extend(ids)

    def drop_queued(self) -> list[int]:
        """Empty the queue (the optimizer does not want those trials any more)."""
        ids = list(self.queue)
        self.queue.clear()
        return ids

    def unqueue(self, tid: int) -> bool:
        """Take a re-queued trial back out (its written-off worker answered after all)."""
        try:
            self.queue.remove(tid)
            return True
        except ValueError:
            return False

    # ---- sizing ------------------------------------------------------------------------------
    def observe(self, duration_s: float) -> None:
        """Duration estimate for chunk sizing: a slower trial counts at once (never 512 slow
        trials in one message), faster ones pull it down gradually."""
        e = self.estimate_s
        self.estimate_s = duration_s if e is None or duration_s > e else 0.9 * e + 0.1 * duration_s

    @property
    def fast(self) -> bool:
        return self.estimate_s is not None and self.estimate_s < CHUNK_BELOW_S

    def assign(self, now: float) -> list[tuple[int, list[int]]]:
        """Chunks to send now, as (rank, trial ids in running order). Keeps one chunk waiting at
        each worker only when there is more work than workers, so no worker idles between trials
        and none holds a trial another could start."""
        out: list[tuple[int, list[int]]] = []
        if not self.queue:
            return out
        n_workers = len(self.ranks)
        for rank in self.ranks:
            if not self.queue:
                break
            if rank in self.out:
                continue
            held = self.chunks[rank]
            limit = 2 if len(self.queue) > n_workers else 1
            if len(held) >= limit:
                continue
            size = min(MAX_CHUNK, max(1, len(self.queue) // n_workers)) if self.fast else 1
            q = self.queue
            ids = [q.popleft() for _ in range(min(size, len(q)))]
            if not held:
                self.running[rank] = Running(ids[0], now)
            held.append(deque(ids))
            self.n_inflight += len(ids)
            out.append((rank, ids))
        return out

    # ---- answers from workers ----------------------------------------------------------------
    def _report(self, rank: int, done: list[int]) -> None:
        if rank in self.out or not self.chunks[rank]:
            return
        head = self.chunks[rank][0]
        for tid in done:
            if head and head[0] == tid:
                head.popleft()
                self.n_inflight -= 1
            elif tid in head:  # out of order: cannot happen with an in-order worker; stay exact
                head.remove(tid)
                self.n_inflight -= 1

    def on_progress(self, rank: int, done: list[int], running_id: int, since: float) -> None:
        """A worker's notice: ``done`` finished (results travel with it), ``running_id`` runs."""
        self._report(rank, done)
        if rank not in self.out:
            self.running[rank] = Running(running_id, since)

    def on_chunk_done(self, rank: int, done: list[int], now: float) -> None:
        """A worker answered its oldest chunk (``done``: the results not reported before)."""
        if rank in self.out:
            return
        self._report(rank, done)
        held = self.chunks[rank]
        if held:
            self.n_inflight -= len(held.popleft())  # normally empty by now
        if held:
            self.running[rank] = Running(held[0][0], now)
        else:
            self.running.pop(rank, None)

    # ---- state -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.queue) or self.n_inflight > 0

    def free(self) -> int:
        """Workers in service with nothing queued or running for them."""
        return max(0, len(self.ranks) - len(self.out) - len(self.queue) - self.n_inflight)

    @property
    def all_out(self) -> bool:
        return len(self.out) == len(self.ranks)

    # ---- watchdog ----------------------------------------------------------------------------
    def watchdog(self, now: float) -> list[Stuck]:
        """Workers whose running trial is past ``stuck_after``: each is taken out of service; its
        trial is blamed, and its trials that never started go back to the front of the queue. A
        backstop: a healthy worker ends a stuck trial itself 60 s earlier, so this catches only a
        worker rank that stopped answering."""
        if self.stuck_after_s is None:
            return []
        verdicts = []
        for rank, run in list(self.running.items()):
            if now - run.since < self.stuck_after_s or rank in self.out:
                continue
            waiting = [t for chunk in self.chunks[rank] for t in chunk if t != run.trial_id]
            self.out.add(rank)
            self.n_inflight -= sum(len(c) for c in self.chunks[rank])
            self.chunks[rank].clear()
            del self.running[rank]
            self.queue.extendleft(reversed(waiting))
            verdicts.append(Stuck(rank, run.trial_id, run.since, tuple(waiting)))
        return verdicts
