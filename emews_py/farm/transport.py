"""MPI between the driver (rank 0) and the workers: message tags, a back-off for idle waits,
probe-and-receive, and non-blocking sends kept alive until complete. No trial logic here.

Nobody waits in a blocking MPI receive: MPICH busy-polls a core there, which on a 2-core node
halves throughput. Idle ranks ``Iprobe`` and sleep with a growing back-off instead: short while
work flows, long (``EMEWS_IDLE_WAIT_S``, 30 ms) once a rank has had nothing for ``IDLE_AFTER_S``,
so 128 idle ranks wake ~4,000 times a second instead of 64,000 (``benchmarks/idle.py``).
A worker on the driver's host (``signalable``) does better: the driver wakes it with a signal
(``WAKE``) when it sends to a rank quiet for ``WAKE_AFTER_S``, so such a rank may sleep
``WOKEN_IDLE_S`` (0.5 s); a worker on another host never gets a signal and naps at most 30 ms.
"""
from __future__ import annotations

import enum
import functools
import os
import select
import signal
import socket
import time
from pathlib import Path

DRIVER = 0


class Tag(enum.IntEnum):
    TASKS = 1      # driver -> worker: [(trial id, params), ...], run in this order
    STOP = 2       # driver -> worker: leave the loop
    HELLO = 3      # worker -> driver: {"host", "pid", "mode", "import_s"} or {"error": ...}
    EVENTS = 4     # worker -> driver: [event dict, ...] (always ahead of the results they belong to)
    RESULTS = 5    # worker -> driver: [Result wire tuple, ...], the rest of the oldest chunk
    PROGRESS = 6   # worker -> driver: (results so far, running trial id, its start) mid-chunk
    HALT = 7       # driver -> worker: trial id: stop its training at the next epoch (STOPPER)


IDLE_AFTER_S = 0.5    # with nothing to do this long, a rank is idle: it may sleep longer
WAKE = signal.SIGUSR1  # driver -> worker on its host: a message is on its way, stop sleeping
WAKE_AFTER_S = 0.25   # the driver signals a rank it has not heard from or sent to this long
WOKEN_IDLE_S = 0.5    # the longest sleep of a rank the driver signals (a missed wake costs this)


@functools.cache   # fixed for a process's life; the driver asks once per worker's hello
def node_id() -> str:
    """Where this process runs, as far as a pid is concerned: hostname, kernel (boot id) and PID
    namespace. The driver signals a worker by pid only when both say the same; a hostname alone
    does not: the nodes of some clusters (or containers on several machines) share one, and a
    SIGUSR1 to another machine's pid would kill whatever process has it here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "?"
    return f"{socket.gethostname()}/{boot}/{pidns}"


STOP_FILE = "stop-request"   # RUN_DIR/STOP_FILE: the CLI's stop for a driver on another host


def signalable(hello: dict) -> bool:
    """Whether the driver may signal the worker that sent ``hello`` (it runs on this host: same
    ``node_id``). Workers on other hosts are never signalled; they nap at most
    ``idle_wait_s()``."""
    return "pid" in hello and hello.get("node") == node_id()


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


def wake_signals() -> bool:
    """Whether the driver signals workers on its host: not with EMEWS_IDLE_WAIT_S=0.002, the old
    back-off, whose ranks never sleep long (benchmarks/idle.py compares it)."""
    return idle_wait_s() > 0.002


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


class Waker:
    """A worker's idle wait: ``poll`` on its child's pipe (if any) and on a pipe the ``WAKE``
    signal writes to (``signal.set_wakeup_fd``), so the driver's signal ends the sleep at once,
    also one that arrives just before it. ``woken`` says whether a signal ever came: the driver
    sends one right after HELLO to each worker on its host, which may then sleep longer."""

    def __init__(self):
        self.r, w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(w, False)
        signal.signal(WAKE, lambda *_: None)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.poller = select.poll()
        self.poller.register(self.r, select.POLLIN)
        self.fd = None
        self.woken = False   # a WAKE ever came
        self.rang = False    # one came in the last wait: the caller polls fast again (reset)

    def watch(self, fd: int | None) -> None:
        """Also wake for ``fd`` (the current child's pipe), instead of the one before."""
        if fd != self.fd:
            if self.fd is not None:
                self.poller.unregister(self.fd)
            if fd is not None:
                self.poller.register(fd, select.POLLIN)
            self.fd = fd

    def wait(self, seconds: float) -> None:
        if seconds < 0.001:  # poll counts whole milliseconds
            time.sleep(seconds)
            return
        for fd, _ in self.poller.poll(seconds * 1000.0):
            if fd == self.r:
                self.woken = self.rang = True
                try:
                    while os.read(self.r, 512):
                        pass
                except BlockingIOError:
                    pass


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
        self.wakeable: dict[int, int] = {}    # rank -> pid of the workers on the driver's host
        self.contact: dict[int, float] = {}   # rank -> when last sent to or heard from

    def wake_on_send(self, rank: int, pid: int) -> None:
        """``rank`` runs on this host as ``pid``: signal it when sending to it after a quiet
        spell (it may be in a long sleep). A first signal now tells it that it will be woken."""
        self.wakeable[rank] = pid
        self.contact[rank] = 0.0
        self._wake(rank)

    def heard(self, rank: int) -> None:
        if rank in self.wakeable:
            self.contact[rank] = time.monotonic()

    def _wake(self, rank: int) -> None:
        try:
            os.kill(self.wakeable[rank], WAKE)
        except OSError:  # gone: the driver learns it from MPI
            del self.wakeable[rank]

    def isend(self, obj, dest: int, tag: Tag) -> None:
        self.pending.append(self.comm.isend(obj, dest=dest, tag=tag))
        if dest in self.wakeable:  # after the send: the woken rank finds the message
            now = time.monotonic()
            if now - self.contact[dest] >= WAKE_AFTER_S:
                self._wake(dest)
            self.contact[dest] = now

    def test(self) -> None:
        """Drop the requests that completed (their buffers may go)."""
        if self.pending:
            self.pending = [r for r in self.pending if not r.Test()]
