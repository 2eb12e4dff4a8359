"""MPI between the driver (rank 0) and the workers: message tags, a back-off for idle waits,
probe-and-receive, and non-blocking sends kept alive until complete. No trial logic here.

Nobody waits in a blocking MPI receive: MPICH busy-polls a core there, which on a 2-core node
halves throughput. Idle ranks ``Iprobe`` and sleep with a growing back-off instead.
"""
from __future__ import annotations

import enum
import time

DRIVER = 0


class Tag(enum.IntEnum):
    TASKS = 1      # driver -> worker: [(trial id, params), ...], run in this order
    STOP = 2       # driver -> worker: leave the loop
    HELLO = 3      # worker -> driver: {"host", "pid", "mode", "import_s"} or {"error": ...}
    EVENTS = 4     # worker -> driver: [event dict, ...] (always ahead of the results they belong to)
    RESULTS = 5    # worker -> driver: [Result wire tuple, ...], the rest of the oldest chunk
    PROGRESS = 6   # worker -> driver: (results so far, running trial id, its start) mid-chunk


class Backoff:
    """Sleep between empty polls: 20 us growing to 2 ms; ``reset()`` after any progress."""

    def __init__(self, first: float = 2e-5, limit: float = 0.002):
        self.first, self.limit, self.delay = first, limit, 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.delay * 2 if self.delay else self.first, self.limit)

    def wait(self, poll) -> None:
        """As ``sleep``, but through ``poll(seconds)`` (e.g. ``Connection.poll``), which returns
        early when its pipe has something: a worker wakes at once for its child's messages."""
        poll(self.delay)
        self.delay = min(self.delay * 2 if self.delay else self.first, self.limit)


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
