"""ZeroMQ transport of the EQ layer.

One PAIR socket per experiment: the driver (rank 0) binds, the optimizer process connects.
Every message is two frames, ``[kind, payload]``; the kinds are the constants below:

optimizer -> driver: ``put`` (an ``OUT_put`` string), ``error`` (a traceback; the optimizer is
about to exit non-zero), ``bye`` (clean exit)
driver -> optimizer: ``get`` (the answer to the next ``IN_get``), ``abort`` (stop now: the run
failed elsewhere; EMEWS's EQR_ABORT)

The payloads are the EMEWS strings; the driver never blocks on the optimizer (it may be dead).
"""
from __future__ import annotations

import os
import sys
import time

import zmq

# Frame kinds (first frame of every message), named once.
PUT = "put"        # optimizer -> driver: an OUT_put string
ERROR = "error"    # optimizer -> driver: traceback, the optimizer exits non-zero next
BYE = "bye"        # optimizer -> driver: clean exit
GET = "get"        # driver -> optimizer: the answer to IN_get
ABORT = "abort"    # driver -> optimizer: stop now (EMEWS EQR_ABORT)

# EMEWS control strings inside a PUT payload (docs/eq-protocol.md).
PARAMS = "Params"              # settings handshake
END_MARKERS = ("DONE", "FINAL")  # followed by one final message

# How long reply() waits for room in the pipe before it declares the optimizer gone. The driver
# answers one request at a time, so a full pipe only happens when the peer stopped reading.
SEND_WAIT_S = 1.0


class EQAbort(SystemExit):
    """Raised in the optimizer process when the driver aborts the experiment."""


class EQPeerGone(Exception):
    """Raised in the driver when a message cannot be handed to the optimizer: its process is
    gone (killed, crashed) or has stopped reading."""


def _pair(linger_ms: int):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PAIR)
    sock.setsockopt(zmq.LINGER, linger_ms)
    return ctx, sock


class EQServer:
    """Driver side. Non-blocking: the farm loop polls it between MPI work."""

    def __init__(self, endpoint: str):
        self.ctx, self.sock = _pair(linger_ms=1000)
        self.sock.bind(endpoint)
        self.endpoint = endpoint

    def poll(self, timeout_ms: int = 0) -> tuple[str, str] | None:
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        kind, payload = self.sock.recv_multipart()
        return kind.decode(), payload.decode()

    def _send(self, kind: str, payload: str, wait_s: float) -> None:
        frames = [kind.encode(), payload.encode()]
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                return
            except zmq.Again:
                # No peer pipe (the optimizer disconnected) or its pipe is full: wait a little
                # for room, never indefinitely.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EQPeerGone(
                        f"EQ: could not hand a '{kind}' message to the optimizer within {wait_s:g} s: "
                        f"its process is gone or no longer reads its messages") from None
                self.sock.poll(min(left, 0.05) * 1000, zmq.POLLOUT)

    def reply(self, payload: str, wait_s: float = SEND_WAIT_S) -> None:
        """Answer the optimizer's pending IN_get; raises EQPeerGone if it cannot take it."""
        self._send(GET, payload, wait_s)

    def abort(self, reason: str) -> None:
        """Best effort: the optimizer may already be gone, which is fine here."""
        try:
            self._send(ABORT, reason, 0.0)
        except EQPeerGone:
            pass

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.endpoint.startswith("ipc://"):
            try:
                os.unlink(self.endpoint[len("ipc://"):])
            except OSError:
                pass


class EQClient:
    """Optimizer side: ``OUT_put`` and ``IN_get`` exactly as EMEWS defines them."""

    def __init__(self, endpoint: str):
        # a longer linger: the final message or an error must leave before the process exits
        self.ctx, self.sock = _pair(linger_ms=2000)
        self.sock.connect(endpoint)
        self._parent = os.getppid()

    def OUT_put(self, s: str) -> None:
        if not isinstance(s, str):
            raise TypeError(f"OUT_put expects a string, got {type(s).__name__}")
        self.sock.send_multipart([PUT.encode(), s.encode()])

    def IN_get(self) -> str:
        # Wake once a second to notice a driver that died, so an orphaned optimizer never hangs.
        while not self.sock.poll(1000, zmq.POLLIN):
            if os.getppid() != self._parent:
                raise EQAbort("EQ: the driver (rank 0) is gone; stopping the optimizer")
        kind, payload = self.sock.recv_multipart()
        if kind.decode() == ABORT:
            raise EQAbort(f"EQ: the driver aborted the experiment: {payload.decode()}")
        return payload.decode()

    def error(self, tb: str) -> None:
        self.sock.send_multipart([ERROR.encode(), tb.encode()])

    def bye(self) -> None:
        self.sock.send_multipart([BYE.encode(), b""])

    def close(self) -> None:
        self.sock.close()
        # Let queued frames (the final message, an error) leave before the process exits.
        self.ctx.term()


_client: EQClient | None = None


def client() -> EQClient:
    if _client is None:
        sys.stderr.write("eqpy: no EQ connection; optimizers are run by the emews driver "
                         "(make workflow ... ALGO=name) or by `emews simulate ALGO`, not "
                         "directly\n")
        raise RuntimeError("eqpy is not connected to a driver")
    return _client


def connect(endpoint: str) -> EQClient:
    global _client
    _client = EQClient(endpoint)
    return _client


def install(c):
    """Put another client (anything with OUT_put/IN_get, e.g. the simulated farm of
    ``emews simulate``) behind eqpy; returns the previous one."""
    global _client
    prev, _client = _client, c
    return prev
