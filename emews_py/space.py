"""Search spaces in Python: CANDLE ParamHelpers files (exported to JSON by eq/R/space.R) or JSON.

Python optimizers get the same space as R ones; the driver uses it to reject points that are
outside the space before they reach a pilot.
"""
from __future__ import annotations

import atexit
import json
import math
import random
import selectors
import subprocess
import tempfile
from pathlib import Path

from emews_py import rbridge
from emews_py.farm.procs import die_with_parent_of
from emews_py.rbridge import REPO_ROOT


class SpaceError(Exception):
    pass


def _rscript(*args: str, timeout: float = 120) -> str:
    """``Rscript eq/R/space.R ARGS`` through the R bridge; R's message becomes a SpaceError."""
    try:
        return rbridge.rscript("space.R", *args, timeout=timeout)
    except rbridge.RError as e:
        if "Rscript is not on PATH" in str(e):
            raise SpaceError("Rscript is not on PATH; R is needed to read ParamHelpers space "
                             "files. Run `make setup`, or give SPACE as a .json file.") from None
        raise SpaceError(str(e)) from None


def load_space(path: str | Path) -> dict:
    """The space as JSON (``{"source", "params": [...]}``); raises SpaceError naming the file."""
    path = Path(path).resolve()
    if not path.is_file():
        raise SpaceError(f"search space file {path} does not exist. Set SPACE to a ParamHelpers R "
                         f"file (param.set <- makeParamSet(...)) or a JSON space; defaults are in "
                         f"{REPO_ROOT / 'workflows'}.")
    if path.suffix.lower() == ".json":
        try:
            space = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SpaceError(f"search space file {path} is not valid JSON ({e}). Fix the file; "
                             f"the format is in docs/eq-protocol.md.") from None
        space.setdefault("source", str(path))
    else:
        out = _rscript("export", str(path))
        try:
            space = json.loads(out)
        except json.JSONDecodeError:
            raise SpaceError(f"eq/R/space.R gave no JSON for {path}: {out[:300]!r}") from None
    _check(space, path)
    return space


def _check(space: dict, path: Path) -> None:
    params = space.get("params") if isinstance(space, dict) else None
    if not params:
        raise SpaceError(f"search space {path} defines no parameters; add at least one to "
                         f"param.set (or to \"params\" in a JSON space).")
    for p in params:
        if "id" not in p or p.get("type") not in ("numeric", "integer", "discrete", "logical"):
            raise SpaceError(f"search space {path}: parameter {p!r} needs an \"id\" and a \"type\" "
                             f"of numeric, integer, discrete or logical.")
        if p["type"] in ("numeric", "integer") and not (p.get("lower") is not None
                                                        and p.get("upper") is not None
                                                        and p["lower"] <= p["upper"]):
            raise SpaceError(f"search space {path}: parameter '{p['id']}' needs finite lower <= "
                             f"upper bounds.")
        if p["type"] == "discrete" and not p.get("values"):
            raise SpaceError(f"search space {path}: discrete parameter '{p['id']}' has no values; "
                             f"give it at least one.")


def check_point(space: dict, point: dict) -> str | None:
    """Why ``point`` (transformed values) is outside the space, or None if it is inside.

    Bounds are checked only where no trafo applies (the trafo'd range is the R function's), but
    every parameter of the space must be there with a real value: a point without one would run
    with the pilot's default, and a trafo that yields NaN makes R's JSON encoder drop the value
    or send null."""
    ids = {p["id"]: p for p in space["params"]}
    src = space.get("source")
    for k, v in point.items():
        p = ids.get(k)
        if p is None:
            return (f"parameter '{k}' is not in the search space {src} "
                    f"(it has {', '.join(ids)})")
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return (f"parameter '{k}' = {'null' if v is None else 'NaN'} is not a value of the "
                    f"search space {src}; a trafo that returns NA/NaN for some input gives this")
        if isinstance(v, float) and not math.isfinite(v):
            # also where a trafo applies: no pilot can train with an infinite hyperparameter
            return (f"parameter '{k}' = {v!r} is not a finite number (search space {src})"
                    + ("; a trafo that overflows (e.g. 10^x for a large x) gives this"
                       if p.get("trafo") else ""))
        if p.get("trafo"):
            continue
        t = p["type"]
        if t in ("numeric", "integer"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"parameter '{k}' = {v!r} is not a number"
            if not math.isfinite(v):
                return f"parameter '{k}' = {v!r} is not a finite number (search space {src})"
            if t == "integer" and float(v) != int(v):
                return f"parameter '{k}' = {v!r} is not an integer"
            if not (p["lower"] - 1e-9 <= v <= p["upper"] + 1e-9):
                return f"parameter '{k}' = {v!r} is outside [{p['lower']}, {p['upper']}]"
        elif t == "discrete":
            if v not in p["values"] and str(v) not in [str(x) for x in p["values"]]:
                return f"parameter '{k}' = {v!r} is not one of {p['values']}"
        elif t == "logical" and not isinstance(v, bool):
            return f"parameter '{k}' = {v!r} is not true/false"
    # Every key is in the space (checked above), so a shorter point lacks some; a parameter under
    # `requires` is legitimately absent while inactive.
    missing = [k for k, p in ids.items() if k not in point and not p.get("requires")] \
        if len(point) < len(ids) else None
    if missing:
        return (f"parameter(s) {', '.join(map(repr, missing))} of the search space {src} are "
                f"missing from the point, so the trial would run with the pilot's default. Send "
                f"every parameter; if the space has a trafo, one that returns NA/NaN drops the "
                f"parameter from the point (R's JSON encoder leaves it out)")
    return None


class Space:
    """Convenience for Python optimizers: sampling and trafo on the JSON space."""

    def __init__(self, space: dict):
        self.json = space
        self.params = space["params"]
        self.has_trafo = any(p.get("trafo") for p in self.params)
        self._trafo = None

    def sample(self, rng: random.Random) -> dict:
        """One point, uniformly at random, before trafo."""
        x = {}
        for p in self.params:
            t = p["type"]
            if t == "numeric":
                x[p["id"]] = rng.uniform(p["lower"], p["upper"])
            elif t == "integer":
                x[p["id"]] = rng.randint(int(p["lower"]), int(p["upper"]))
            elif t == "discrete":
                x[p["id"]] = rng.choice(p["values"])
            else:
                x[p["id"]] = rng.random() < 0.5
        return x

    def transform(self, points: list[dict]) -> list[dict]:
        """Apply the space file's R trafo functions (one request to a resident R for the whole
        list)."""
        if not self.has_trafo or not points:
            return points
        if self._trafo is None:
            self._trafo = TrafoServer(self.json["source"])
        return self._trafo.transform(points)

    def close(self) -> None:
        if self._trafo is not None:
            self._trafo.close()
            self._trafo = None


class TrafoServer:
    """One ``Rscript eq/R/space.R serve FILE`` for the life of an optimizer: a JSON line of
    points in, a JSON line out.

    Why resident: a streaming optimizer transforms each new point as a worker frees up, and a
    fresh Rscript (R plus ParamHelpers) took 0.8 s on a quiet machine and 1.8 s under a search's
    load: that long a worker sat idle between trials. The R process can die (a trafo that
    crashes R, a kill): the call that finds it gone raises SpaceError with R's last words, and the
    next call starts a new one. It ends when its stdin closes (close(), or at exit), and dies with
    the optimizer's process even inside a hung trafo (the farm's die_with_parent_of). One caller at
    a time (an optimizer's loop)."""

    def __init__(self, source: str, timeout: float = 120):
        self.source, self.timeout, self.proc, self.err = source, timeout, None, None

    def _start(self) -> None:
        self.err = tempfile.TemporaryFile(mode="w+")   # R's messages, for the error text
        try:
            self.proc = subprocess.Popen(
                ["Rscript", "--vanilla", str(rbridge.R_DIR / "space.R"), "serve", self.source],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                encoding="utf-8", preexec_fn=die_with_parent_of())
        except FileNotFoundError:
            raise SpaceError("Rscript is not on PATH; R is needed to apply the trafo of the "
                             f"search space {self.source}. Run `make setup`.") from None
        atexit.register(self.close)

    def _failed(self, what: str) -> SpaceError:
        proc, self.proc = self.proc, None
        proc.kill()
        rc = proc.wait()
        self.err.seek(0)
        said = " ".join(self.err.read().replace("Execution halted", "").split())
        self.err.close()
        return SpaceError(f"the R process applying the trafo of search space {self.source} {what} "
                          f"(exit status {rc}){': ' + said if said else ''}. Check the space's "
                          f"trafo functions (`Rscript eq/R/space.R transform {self.source} "
                          f"'[{{...}}]'` runs one point); the next call starts a new R process.")

    def transform(self, points: list[dict]) -> list[dict]:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                raise self._failed("had ended")
            self._start()
        try:
            self.proc.stdin.write(json.dumps(points) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failed("ended") from None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(self.timeout):
                raise self._failed(f"did not answer within {self.timeout:g} s")
        line = self.proc.stdout.readline()
        if not line.endswith("\n"):   # nothing, or half an answer: R died while writing it
            raise self._failed("ended")
        answer = json.loads(line)
        if "error" in answer:
            raise SpaceError(answer["error"])
        return answer["points"]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()    # R reads EOF and quits
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.err.close()
