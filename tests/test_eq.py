"""The ZeroMQ EQ transport with real processes: the driver never blocks on a dead optimizer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import zmq

from emews_py import eq

# An optimizer-side process: connects, sends one OUT_put, then waits for the answer and prints it.
PEER = """
import sys
from emews_py import eq
c = eq.connect(sys.argv[1])
c.OUT_put("Params")
print("got:" + c.IN_get(), flush=True)
try:
    c.IN_get()
except eq.EQAbort as e:
    print("aborted:" + str(e), flush=True)
c.close()
"""


@pytest.fixture
def server():
    s = eq.EQServer(f"ipc://{tempfile.gettempdir()}/emews-test-{uuid.uuid4().hex[:12]}.sock")
    yield s
    s.close()


def start_peer(server) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PEER, server.endpoint], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def wait_put(server, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = server.poll(100)
        if m is not None:
            return m
    pytest.fail("the optimizer-side process sent nothing")


def test_reply_and_abort_reach_a_live_optimizer(server):
    p = start_peer(server)
    assert wait_put(server) == (eq.PUT, eq.PARAMS)
    server.reply("max.budget = 3")
    server.abort("stop, please")
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    assert "got:max.budget = 3" in out
    assert "aborted:EQ: the driver aborted the experiment: stop, please" in out


def test_reply_to_a_killed_optimizer_raises_instead_of_hanging(server):
    p = start_peer(server)
    assert wait_put(server) == (eq.PUT, eq.PARAMS)
    os.kill(p.pid, signal.SIGKILL)   # dies between its OUT_put and our answer
    p.wait(timeout=30)
    time.sleep(0.2)                  # let ZeroMQ's I/O thread see the closed connection
    t0 = time.monotonic()
    with pytest.raises(eq.EQPeerGone, match="optimizer"):
        server.reply("answer")
    assert time.monotonic() - t0 < 5.0
    server.abort("gone anyway")      # best effort: neither blocks nor raises
    assert time.monotonic() - t0 < 5.0


def test_reply_with_no_optimizer_ever_connected_raises(server):
    t0 = time.monotonic()
    with pytest.raises(eq.EQPeerGone):
        server.reply("nobody is listening", wait_s=0.3)
    assert time.monotonic() - t0 < 2.0


def test_reply_to_an_optimizer_that_stopped_reading_raises_after_a_bounded_wait(server):
    # Connected and alive, but never reads again (as an optimizer stuck in native code would).
    # Short queues on both ends (set before the connection), so the test needs little memory.
    server.sock.setsockopt(zmq.SNDHWM, 2)
    p = subprocess.Popen([sys.executable, "-c", "import sys, time, zmq\n"
                          "s = zmq.Context.instance().socket(zmq.PAIR)\n"
                          "s.setsockopt(zmq.RCVHWM, 2)\ns.connect(sys.argv[1])\n"
                          "s.send_multipart([b'put', b'Params'])\ntime.sleep(600)\n",
                          server.endpoint])
    try:
        assert wait_put(server) == (eq.PUT, eq.PARAMS)
        big = "x" * 100_000
        with pytest.raises(eq.EQPeerGone, match="no longer reads"):
            for _ in range(2000):             # fills ZeroMQ's queue and the socket buffers
                t0 = time.monotonic()
                server.reply(big, wait_s=0.5)
                assert time.monotonic() - t0 < 3.0
        assert p.poll() is None               # the optimizer is still alive: not mistaken for dead
    finally:
        p.kill()
        p.wait()
