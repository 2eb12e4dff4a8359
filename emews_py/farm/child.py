"""The resident interpreter: ``python -m emews_py.farm.child FD SLOT_FD``, one per worker rank.

It imports the pilot (and Keras) once and runs trial after trial, as the worker rank itself did
before; running it in a child process of the rank means a trial that kills its interpreter
(segfault, OOM killer, ``kill -9``) or hangs in native code costs only that trial: the rank, which
MPI cannot lose, kills and replaces the child and goes on (``worker.py``).

Talk with the worker goes over a socket pair (``multiprocessing.connection.Connection``,
pickled messages; no values in argv):

    worker -> child   ("init", RunConfig, rank, host)      first, once
                      ("chunk", [(trial id, params), ...]) run these in order
                      ("stop",)                            leave (EOF works too)
    child -> worker   ("ready", import_s) | ("error", traceback text)   after the import
                      ("events", [event dict, ...])        always ahead of their trial's result
                      ("results", [Result wire tuple, ...]) in running order
                      ("done",)                            the chunk is finished

Which trial runs since when is written to a shared 16-byte slot (``SLOT``) at each trial's start,
so the worker knows it at any moment, also when the child dies, at no cost per trial. The 8 bytes
after it (``HALT``) are the other way round: the worker writes there the id of a trial that the
driver's early stopper (STOPPER) wants ended, and the trial's Keras callback reads it at each epoch
end (``ctx.stop_requested()``). Shared memory rather than a message: the child's main thread is
inside ``model.fit`` and reads no messages until the trial ends, and a read costs nothing.

The child ignores SIGINT and SIGTERM (the driver orchestrates a clean stop: a Ctrl-C to the
process group must not print a traceback from every child) and dies with its worker
(``PR_SET_PDEATHSIG``, set by the worker's ``preexec_fn``).
"""
from __future__ import annotations

import mmap
import os
import signal
import struct
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

SLOT = struct.Struct("=dq")   # (started_at, trial id) of the trial running now; id 0: none yet
HALT = struct.Struct("=q")    # at offset SLOT.size: the id of a trial to stop (STOPPER); 0: none
SLOT_BYTES = SLOT.size + HALT.size
EVENTS_EVERY_S = 0.2          # a training trial's events reach the driver at least this often
RESULTS_EVERY_S = 0.05        # fast results are batched at most this long
SLOW_TRIAL_S = 0.005          # a trial at least this long sends its result at once


def write_slot(slot: mmap.mmap, tid: int, started: float) -> None:
    slot[:SLOT.size] = SLOT.pack(started, tid)


def write_halt(slot: mmap.mmap, tid: int) -> None:
    slot[SLOT.size:SLOT_BYTES] = HALT.pack(tid)


def read_halt(slot: mmap.mmap) -> int:
    a = slot[SLOT.size:SLOT_BYTES]
    while (b := slot[SLOT.size:SLOT_BYTES]) != a:
        a = b
    return HALT.unpack(a)[0]


def read_slot(slot: mmap.mmap) -> tuple[int, float]:
    """(trial id, started_at); read until two reads agree, so a torn write is never seen."""
    a = slot[:SLOT.size]
    while (b := slot[:SLOT.size]) != a:
        a = b
    started, tid = SLOT.unpack(a)
    return tid, started


class Outbox:
    """What the child sends, under one lock (the main thread and the event flusher both send):
    events always ahead of the results they belong to."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.results: list[tuple] = []
        self.last_events = 0.0
        self.last_results = time.time()
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="events", daemon=True).start()

    def _send_events(self) -> None:
        if self.events:
            self.conn.send(("events", self.events))
            self.events = []
        self.last_events = time.time()

    def event(self, ev: dict) -> None:
        with self.lock:
            self.events.append(ev)
            if time.time() - self.last_events >= EVENTS_EVERY_S:
                self._send_events()

    def _flusher(self) -> None:
        # An event reported just after a send would otherwise wait for the next one.
        while not self._stop.wait(EVENTS_EVERY_S / 2):
            with self.lock:
                if self.events and time.time() - self.last_events >= EVENTS_EVERY_S:
                    self._send_events()

    def result(self, wire: tuple, duration: float) -> None:
        with self.lock:
            self.results.append(wire)
            # Slow trials report at once (a crash later loses nothing); fast ones are batched,
            # which is what keeps no-op dispatch above 10,000 trials/s.
            if duration >= SLOW_TRIAL_S or time.time() - self.last_results >= RESULTS_EVERY_S:
                self._flush_results()

    def _flush_results(self) -> None:
        self._send_events()
        if self.results:
            self.conn.send(("results", self.results))
            self.results = []
        self.last_results = time.time()

    def chunk_done(self) -> None:
        with self.lock:
            self._flush_results()
            self.conn.send(("done",))


def serve(conn: Connection, slot: mmap.mmap) -> int:
    from emews_py.pilot import TrialContext, load_pilot, run_trial
    from emews_py.trials import Result

    kind, cfg, rank, host = conn.recv()
    assert kind == "init", kind
    t0 = time.perf_counter()
    try:
        pilot = load_pilot(cfg.pilot)
    except BaseException as e:  # noqa: BLE001 - reported to the driver, which fails the run
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        return 1
    conn.send(("ready", time.perf_counter() - t0))
    out = Outbox(conn)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")   # what the pilot sees (worker.assign_gpu)
    timeout, run_dir = cfg.timeout, cfg.run_dir
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the worker is gone or done
            return 0
        if msg[0] != "chunk":
            return 0
        for tid, params in msg[1]:
            started = time.time()
            write_slot(slot, tid, started)
            ctx = TrialContext(tid, run_dir, started + timeout if timeout else None, out.event,
                               worker=rank, halted=lambda tid=tid: read_halt(slot) == tid)
            status, res, error = run_trial(pilot, params, ctx, timeout)
            finished = time.time()
            out.result(Result(tid, status, started, finished, rank, host, res["objective"],
                              res["metrics"] or None, error, res["model_path"],
                              gpu=gpu, stopped_epoch=ctx.stopped_epoch).to_wire(),
                       finished - started)
        out.chunk_done()


def main(argv: list[str] | None = None) -> int:
    # SIG_IGN is also inherited from the worker's preexec_fn; setting it again costs nothing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    conn_fd, slot_fd = int(args[0]), int(args[1])
    conn = Connection(conn_fd)
    slot = mmap.mmap(slot_fd, SLOT_BYTES)
    os.close(slot_fd)
    try:
        return serve(conn, slot)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return 0  # the worker went away mid-send: nothing left to report to


if __name__ == "__main__":
    sys.exit(main())
