"""Process helpers: no child process outlives its parent.

``die_with_parent`` runs in a child between fork and exec (``preexec_fn``): Linux delivers
``sig`` to it when the thread that forked it exits (``prctl(PR_SET_PDEATHSIG)``), so a worker rank
killed with SIGKILL, or an MPI job torn down, takes its trial processes and resident interpreter
with it. On systems without prctl it does nothing (the caller's own cleanup still applies).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

_libc = None


def _prctl():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc.prctl


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies. Usable as
    ``preexec_fn`` (then ``parent`` is taken before the fork, see ``die_with_parent_of``)
    or called first thing in a child. If the parent is already gone (it died before prctl took
    effect: the process was re-parented), exit at once instead."""
    if not sys.platform.startswith("linux"):
        return
    if _prctl()(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(e)}")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)  # the race: the parent died between fork and prctl


def die_with_parent_of(pid: int | None = None, sig: int = signal.SIGKILL, new_session: bool = False,
                       ignore_stop: bool = False):
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process (``pid``,
    default the caller). ``new_session``: in a session of its own, so a Ctrl-C to the terminal's
    process group does not reach it (it still dies with its parent). ``ignore_stop``: SIGINT and
    SIGTERM ignored from the start (the disposition survives exec; Python keeps an ignored
    SIGINT ignored), for children whose stop the parent orchestrates."""
    parent = os.getpid() if pid is None else pid
    if sys.platform.startswith("linux"):
        _prctl()  # load libc now: nothing but async-signal-safe work after fork

    def preexec() -> None:
        if new_session:
            os.setsid()
        if ignore_stop:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        die_with_parent(sig, parent)
    return preexec
