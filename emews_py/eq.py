"""ZeroMQ transport of the EQ layer.

One PAIR socket per experiment: the driver (rank 0) binds, the optimizer process connects.
Every message is two frames, ``[kind, payload]``:

optimizer -> driver: ``put`` (an ``OUT_put`` string), ``error`` (a traceback; the optimizer is
about to exit non-zero), ``bye`` (clean exit)
driver -> optimizer: ``get`` (the answer to the next ``IN_get``), ``abort`` (stop now: the run
failed elsewhere; EMEWS's EQR_ABORT)
"""
from __future__ import annotations

import os
import sys

import zmq


class EQAbort(SystemExit):
    """Raised in the optimizer process when the driver aborts the experiment."""


class EQServer:
    """Driver side. Non-blocking: the farm loop polls it between MPI work."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(endpoint)
        self.endpoint = endpoint

    def poll(self, timeout_ms: int = 0) -> tuple[str, str] | None:
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        kind, payload = self.sock.recv_multipart()
        return kind.decode(), payload.decode()

    def reply(self, payload: str) -> None:
        self.sock.send_multipart([b"get", payload.encode()])

    def abort(self, reason: str) -> None:
        try:
            self.sock.send_multipart([b"abort", reason.encode()], zmq.NOBLOCK)
        except zmq.ZMQError:
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
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(endpoint)
        self._parent = os.getppid()

    def OUT_put(self, s: str) -> None:
        if not isinstance(s, str):
            raise TypeError(f"OUT_put expects a string, got {type(s).__name__}")
        self.sock.send_multipart([b"put", s.encode()])

    def IN_get(self) -> str:
        # Wake once a second to notice a driver that died, so an orphaned optimizer never hangs.
        while not self.sock.poll(1000, zmq.POLLIN):
            if os.getppid() != self._parent:
                raise EQAbort("EQ: the driver (rank 0) is gone; stopping the optimizer")
        kind, payload = self.sock.recv_multipart()
        if kind == b"abort":
            raise EQAbort(f"EQ: the driver aborted the experiment: {payload.decode()}")
        return payload.decode()

    def error(self, tb: str) -> None:
        self.sock.send_multipart([b"error", tb.encode()])

    def bye(self) -> None:
        self.sock.send_multipart([b"bye", b""])

    def close(self) -> None:
        self.sock.close()
        # Let queued frames (the final message, an error) leave before the process exits.
        self.ctx.term()


_client: EQClient | None = None


def client() -> EQClient:
    if _client is None:
        sys.stderr.write("eqpy: no EQ connection; optimizers are run by the emews driver "
                         "(make workflow ... ALGO=name), not directly\n")
        raise RuntimeError("eqpy is not connected to a driver")
    return _client


def connect(endpoint: str) -> EQClient:
    global _client
    _client = EQClient(endpoint)
    return _client
