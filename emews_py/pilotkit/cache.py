"""Data a pilot prepares once per machine: the cache directory, and a build that concurrent
resident workers never see half-written."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def data_cache_dir(pilot: str) -> Path:
    """Where a pilot prepares its data once per machine (``EMEWS_DATA_CACHE``, default
    ``~/.cache/emews_py``), one subdirectory per pilot."""
    root = Path(os.environ.get("EMEWS_DATA_CACHE", Path.home() / ".cache" / "emews_py"))
    d = root / pilot
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def prepare_lock(path: str | os.PathLike):
    """An exclusive lock file: resident workers on one machine that start together prepare a
    pilot's data once; the others wait, then find it ready."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_once(dest: str | os.PathLike, build: Callable[[Path], None],
                 is_ready: Callable[[Path], bool]) -> bool:
    """Build a pilot's data directory ``dest`` once per machine: ``build(tmp)`` fills a temporary
    directory that then replaces ``dest`` in one rename, under a lock, so concurrent workers never
    see half-written data. Returns True if this call built it."""
    dest = Path(dest)
    if is_ready(dest):
        return False
    with prepare_lock(dest.parent / f".{dest.name}.lock"):
        if is_ready(dest):  # another worker built it while we waited
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}_", dir=dest.parent))
        try:
            build(tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return True
