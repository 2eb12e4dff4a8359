"""What a pilot sees: its default model file, the trial context, and the errors it may raise.

A pilot is a package ``pilots/<name>/`` with ``<name>_default_model.txt`` (CANDLE-style INI,
section ``[Global_Params]``) and ``run(params, ctx) -> float | dict``. The dict form is
``{"objective": float, "metrics": {...}, "model_path": str | None}``.
"""
from __future__ import annotations

import ast
import configparser
import contextlib
import fcntl
import importlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
PILOTS_DIR = REPO_ROOT / "pilots"


class PilotError(Exception):
    """A trial that cannot run as asked (bad parameter, missing data); the message is for users."""


class UnknownParameterError(PilotError):
    pass


class TrialTimeout(Exception):
    """Raised (or signalled through ``ctx.mark_timeout()``) when a trial passes its time limit."""


def _literal(text: str) -> Any:
    # CANDLE model files hold Python literals ('relu', [1000, 500], 0.01, True); never eval.
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip().strip("'\"")


def read_default_model(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``[Global_Params]`` of a CANDLE default model file into a dict of Python values."""
    path = Path(path)
    if not path.is_file():
        raise PilotError(f"default model file {path} does not exist; every pilot needs one "
                         f"(INI with a [Global_Params] section).")
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keep parameter names as written
    try:
        cp.read(path)
    except configparser.Error as e:
        raise PilotError(f"default model file {path} is not valid INI: {e}. Fix the file.") from None
    if "Global_Params" not in cp:
        raise PilotError(f"default model file {path} has no [Global_Params] section; "
                         f"put the pilot's defaults under that header.")
    return {k: _literal(v) for k, v in cp["Global_Params"].items()}


def merge_params(defaults: dict, params: dict, source: str, pilot: str) -> dict:
    """Trial params override defaults; a name the pilot does not know is an error naming it."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise UnknownParameterError(
            f"pilot '{pilot}' does not know parameter(s) {', '.join(map(repr, unknown))}; "
            f"the parameters it accepts are those in {source}: {', '.join(sorted(defaults))}. "
            f"Rename the parameter in the search space, or add it to the default model file.")
    merged = dict(defaults)
    merged.update(params)
    return merged


_DEFAULTS: dict[str, tuple[dict, str, str]] = {}


def pilot_params(pilot_pkg_file: str, params: dict) -> dict:
    """Defaults of the pilot whose ``__init__.py`` is ``pilot_pkg_file``, overridden by ``params``.
    The default model file is read once per process (resident workers run many trials)."""
    hit = _DEFAULTS.get(pilot_pkg_file)
    if hit is None:
        pkg_dir = Path(pilot_pkg_file).resolve().parent
        model_file = pkg_dir / f"{pkg_dir.name}_default_model.txt"
        hit = _DEFAULTS[pilot_pkg_file] = (read_default_model(model_file), str(model_file), pkg_dir.name)
    defaults, source, name = hit
    return merge_params(defaults, params, source, name)


class TrialContext:
    """Per-trial handle given to ``run(params, ctx)``.

    ``event(kind, epoch=None, **metrics)`` sends a callback event to rank 0 (which stores it before
    the trial's result reaches the optimizer). ``deadline`` is a ``time.time()`` value or None.
    """

    def __init__(self, trial_id: int, run_dir: str | os.PathLike, deadline: float | None,
                 sink: Callable[[dict], None], worker: int = 0):
        self.trial_id = trial_id
        self.run_dir = Path(run_dir)
        self.deadline = deadline
        self.worker = worker
        self._sink = sink
        self.timed_out = False

    @classmethod
    def local(cls, run_dir: str | os.PathLike = ".", trial_id: int = 0, timeout: float | None = None):
        """A context for running a pilot by hand or in a unit test; events collect in ``.events``."""
        events: list[dict] = []
        ctx = cls(trial_id, run_dir, time.time() + timeout if timeout else None, events.append)
        ctx.events = events
        return ctx

    def event(self, kind: str, epoch: int | None = None, **metrics: Any) -> None:
        clean = {k: _jsonable(v) for k, v in metrics.items()}
        self._sink({"trial_id": self.trial_id, "kind": kind, "epoch": epoch,
                    "metrics": clean, "at": time.time()})

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def mark_timeout(self) -> None:
        self.timed_out = True

    def check_deadline(self) -> None:
        """Cooperative time limit for pilots that loop: raises TrialTimeout past the deadline."""
        if self.deadline is not None and time.time() >= self.deadline:
            self.timed_out = True
            raise TrialTimeout(f"trial {self.trial_id} passed its time limit")

    def model_path(self, suffix: str = ".keras") -> Path:
        """Where to save this trial's model; rank 0 keeps the best K and removes the rest."""
        d = self.run_dir / "models"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"trial_{self.trial_id}{suffix}"


def _jsonable(v: Any) -> Any:
    try:
        import numpy as np
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and v != v:
        return None
    return v


def load_pilot(name: str):
    """Import ``pilots.<name>``; an unknown name is a clear error listing the pilots there are."""
    available = sorted(p.name for p in PILOTS_DIR.iterdir()
                       if (p / "__init__.py").is_file() and not p.name.startswith("_"))
    if name not in available:
        raise PilotError(f"unknown PILOT '{name}': there is no package pilots/{name}/ in {PILOTS_DIR}. "
                         f"Available pilots: {', '.join(available)}. Set PILOT to one of them, or "
                         f"add a package pilots/{name}/ with __init__.py defining run(params, ctx).")
    return importlib.import_module(f"pilots.{name}")


def normalize_result(result: Any) -> dict:
    """A pilot may return a number or a dict; the farm always works with the dict form."""
    if isinstance(result, dict):
        if "objective" not in result:
            raise PilotError("pilot returned a dict without 'objective'; return a number or "
                             "{'objective': value, ...}.")
        out = dict(result)
    else:
        out = {"objective": result}
    obj = out["objective"]
    out["objective"] = None if obj is None else float(obj)
    out.setdefault("metrics", {})
    out.setdefault("model_path", None)
    return out


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
