"""The idle waits of farm/transport.py: the back-off's long sleep, and the signal that ends it."""
import os
import signal
import threading
import time

import pytest

from emews_py.farm import transport
from emews_py.farm.transport import WAKE, Backoff, Waker


def test_backoff_sleeps_long_only_after_an_idle_spell():
    b = Backoff(idle_limit=0.03, idle_after=0.2)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.15:
        b.sleep()
    assert b.delay == 0.002            # work may still flow: short naps
    while time.monotonic() - t0 < 0.5:
        b.sleep()
    assert b.delay == 0.03             # idle: the long sleep
    b.reset()
    b.sleep()
    assert b.delay == 2e-5             # progress: fast again


def test_idle_wait_setting(monkeypatch):
    monkeypatch.setenv("EMEWS_IDLE_WAIT_S", "0.002")
    assert Backoff().idle_limit == 0.002 and not transport.wake_signals()
    monkeypatch.setenv("EMEWS_IDLE_WAIT_S", "30ms")
    with pytest.raises(ValueError, match="EMEWS_IDLE_WAIT_S='30ms'.*between 0 and 1"):
        Backoff()


def test_wake_signal_ends_a_long_wait():
    old = signal.getsignal(WAKE)
    w = Waker()
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), WAKE)).start()
        t0 = time.monotonic()
        w.wait(5.0)
        assert time.monotonic() - t0 < 2.0 and w.rang and w.woken
        w.rang = False
        os.kill(os.getpid(), WAKE)     # a signal before the wait is not lost
        t0 = time.monotonic()
        w.wait(5.0)
        assert time.monotonic() - t0 < 1.0 and w.rang
        t0 = time.monotonic()
        w.wait(0.1)                    # drained: the next wait sleeps its time
        assert time.monotonic() - t0 >= 0.09
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(WAKE, old)
