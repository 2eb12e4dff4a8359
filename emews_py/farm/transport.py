"""MPI between the driver (rank 0) and the workers: message tags, a back-off for idle waits,
probe-and-receive, and non-blocking sends kept alive until complete. No trial logic here.

Nobody waits in a blocking MPI receive: MPICH busy-polls a core there, which on a 2-core node
halves throughput. Idle ranks ``Iprobe`` and sleep with a growing back-off instead: short while
work flows, long (``EMEWS_IDLE_WAIT_S``, 30 ms) once a rank has had nothing for ``IDLE_AFTER_S``,
so 128 idle ranks wake ~4,000 times a second instead of 64,000 (``benchmarks/idle.py``).
"""
from __future__ import annotations

import enum
import os
import time

DRIVER = 0


class Tag(enum.IntEnum):
    TASKS = 1      # driver -> worker: [(trial id, params), ...], run in this order
    STOP = 2       # driver -> worker: leave the loop
    HELLO = 3      # worker -> driver: {"host", "pid", "mode", "import_s"} or {"error": ...}
    EVENTS = 4     # worker -> driver: [event dict, ...] (always ahead of the results they belong to)
    RESULTS = 5    # worker -> driver: [Result wire tuple, ...], the rest of the oldest chunk
    PROGRESS = 6   # worker -> driver: (results so far, running trial id, its start) mid-chunk


IDLE_AFTER_S = 0.5    # with nothing to do this long, a rank is idle: it may sleep longer


def idle_wait_s() -> float:
    """The longest sleep of an idle rank: the worst extra latency of the first message after an
    idle spell (a trial handed out then starts within it). ``EMEWS_IDLE_WAIT_S=0.002`` restores
    the old back-off, which never slept more than 2 ms (benchmarks/idle.py compares both)."""
    raw = os.environ.get("EMEWS_IDLE_WAIT_S", "")
    try:
        v = float(raw) if raw else 0.03
    except ValueError:
        v = -1.0
    if not 0 < v <= 1:
        raise ValueError(f"EMEWS_IDLE_WAIT_S={raw!r}: expected seconds between 0 and 1, the "
                         f"longest sleep of an idle rank (default 0.03); unset it or fix it.")
    return v


class Backoff:
    """Sleep between empty polls: 20 us growing to ``limit`` (2 ms) while work flows; once
    ``limit`` has been reached for ``idle_after`` seconds, on up to ``idle_limit`` (30 ms), the
    latency an idle rank adds to the next message. ``reset()`` after any progress."""

    def __init__(self, first: float = 2e-5, limit: float = 0.002, idle_limit: float | None = None,
                 idle_after: float = IDLE_AFTER_S):
        self.first, self.limit, self.delay = first, limit, 0.0
        self.idle_limit = max(limit, idle_wait_s() if idle_limit is None else idle_limit)
        self.idle_after, self.capped_at = idle_after, 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def _grow(self) -> None:
        if self.delay < self.limit:
            self.delay = min(self.delay * 2 if self.delay else self.first, self.limit)
            if self.delay == self.limit:
                self.capped_at = time.monotonic()
        elif self.delay < self.idle_limit and time.monotonic() - self.capped_at >= self.idle_after:
            self.delay = min(self.delay * 2, self.idle_limit)

    def sleep(self) -> None:
        time.sleep(self.delay)
        self._grow()

    def wait(self, poll) -> None:
        """As ``sleep``, but through ``poll(seconds)`` (e.g. ``Connection.poll``), which returns
        early when its pipe has something: a worker wakes at once for its child's messages."""
        poll(self.delay)
        self._grow()


def mpi():
    from mpi4py import MPI
    return MPI


def poll_any(comm, status):
    """One pending message from anyone: (message, source, tag), or None."""
    m = comm.improbe(source=mpi().ANY_SOURCE, tag=mpi().ANY_TAG, status=status)
    if m is None:
        return None
    return m.recv(), status.Get_source(), status.Get_tag()


def recv_from(comm, source: int, status, backoff: Backoff):
    """Wait for the next message from ``source`` without spinning: (message, tag)."""
    while not comm.Iprobe(source=source, tag=mpi().ANY_TAG, status=status):
        backoff.sleep()
    backoff.reset()
    tag = status.Get_tag()
    return comm.recv(source=source, tag=tag), tag


class Sends:
    """Outstanding ``isend`` requests. The driver never blocks in a send: a worker may be blocked
    sending it a large result at the same moment (MPI rendezvous), and both would wait forever."""

    def __init__(self, comm):
        self.comm = comm
        self.pending: list = []

    def isend(self, obj, dest: int, tag: Tag) -> None:
        self.pending.append(self.comm.isend(obj, dest=dest, tag=tag))

    def test(self) -> None:
        """Drop the requests that completed (their buffers may go)."""
        if self.pending:
            self.pending = [r for r in self.pending if not r.Test()]
