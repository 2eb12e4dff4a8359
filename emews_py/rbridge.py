"""The only Python that talks to R: R literals, ``Rscript`` calls and the embedded rpy2 session.

Everything that turns Python values into R text, or runs R, goes through here, so quoting rules
and error wording live in one place. The R code itself is in ``eq/R/*.R``:

- ``space.R``    ParamHelpers spaces (``Rscript eq/R/space.R export|transform ...``)
- ``settings.R`` SETTINGS text -> JSON (``Rscript eq/R/settings.R TEXT``)
- ``runner.R``   running an optimizer script in the embedded R (OUT_put/IN_get, R traceback)
- ``sim.R``      the simulated farm behind ``emews simulate``
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
R_DIR = REPO_ROOT / "eq" / "R"


class RError(Exception):
    """R reported an error; the message is R's, as one paragraph."""


# --- R literals -------------------------------------------------------------------------------

def r_literal(v) -> str:
    """One Python value as R source text (strings single-quoted and escaped)."""
    if v is None:
        return "NA"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return f"{v}L" if abs(v) < 2**31 else repr(float(v))
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Inf" if v > 0 else "-Inf"
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "c(" + ", ".join(r_literal(x) for x in v) + ")"
    s = str(v).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


def r_settings_text(settings: dict) -> str:
    """Settings as R argument text, as CANDLE/Supervisor hands them to mlrMBO."""
    return ", ".join(f"{k} = {r_literal(v)}" for k, v in settings.items())


# --- Rscript ----------------------------------------------------------------------------------

def rscript(script: str | Path, *args: str, timeout: float = 120) -> str:
    """Run ``Rscript --vanilla SCRIPT ARGS...`` (arguments as argv, never through a shell);
    ``script`` is a file name in eq/R or a path. Returns stdout, raises RError with R's message
    on a non-zero exit."""
    path = Path(script) if Path(script).is_absolute() else R_DIR / script
    try:
        p = subprocess.run(["Rscript", "--vanilla", str(path), *args],
                           capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RError("Rscript is not on PATH; R is needed here (run `make setup`).") from None
    except subprocess.TimeoutExpired:
        raise RError(f"Rscript {path} did not finish within {timeout:g} s.") from None
    if p.returncode != 0:
        raise RError((p.stderr.strip() or p.stdout.strip()).replace("Execution halted", "").strip())
    return p.stdout


def parse_settings(text: str) -> dict:
    """SETTINGS as R argument text (``design.size = 20, mode = 'batch'``) -> dict, evaluated by R
    (eq/R/settings.R). Raises RError with R's message."""
    out = json.loads(rscript("settings.R", text) or "{}")
    return out if isinstance(out, dict) else {}


# --- embedded R (rpy2) ------------------------------------------------------------------------

_session_ready = False


class _Lines:
    """R's console output, written as-is to a Python stream one complete line at a time.

    rpy2's default sends R's message()/warning() text through ``logging`` as ``R[write to
    console]: ...``, one record per chunk (the text, then its newline: a blank line). R writes a
    line in pieces (``cat("a "); cat("b\\n")``), so pieces wait here for their newline; the rest
    is written at exit."""

    def __init__(self, stream: str):
        self.stream, self.buf = stream, ""

    def __call__(self, s: str) -> None:
        self.buf += s
        cut = self.buf.rfind("\n") + 1
        if cut:
            self.write(self.buf[:cut])
            self.buf = self.buf[cut:]

    def write(self, text: str) -> None:
        f = getattr(sys, self.stream)   # looked up each time: the stream may be redirected
        f.write(text)
        f.flush()

    def flush(self) -> None:
        if self.buf:
            self.write(self.buf)
            self.buf = ""


def _console_callbacks() -> None:
    """R's stdout to sys.stdout and its stderr (message, warning) to sys.stderr, unprefixed."""
    import atexit
    from rpy2.rinterface_lib import callbacks
    out, err = _Lines("stdout"), _Lines("stderr")
    callbacks.consolewrite_print, callbacks.consolewrite_warnerror = out, err
    atexit.register(out.flush)
    atexit.register(err.flush)


def session():
    """The embedded R, set up once per process: EQ_HOME and the helpers every optimizer sees
    (eq/R/EQ.R, eq/R/space.R) plus the runner. Returns ``rpy2.robjects``."""
    global _session_ready
    if not _session_ready:
        _console_callbacks()   # before R starts: its start-up messages too
    import rpy2.robjects as ro
    if not _session_ready:
        ro.globalenv["EQ_HOME"] = str(REPO_ROOT)
        for helper in ("EQ.R", "space.R", "runner.R"):
            ro.r["source"](str(R_DIR / helper))
        _session_ready = True
    return ro


def run_r_optimizer(algo: Path, put: Callable[[str], None], get: Callable[[], str],
                    stop: tuple[type[BaseException], ...] = ()) -> str:
    """Run the R optimizer file ``algo`` with R globals OUT_put/IN_get calling ``put``/``get``.

    Returns '' on success or the R error text (with the R traceback). An exception of a type in
    ``stop`` raised by put/get ends the R script and is re-raised here after R has unwound."""
    import rpy2.rinterface as ri
    ro = session()
    stopped: list[BaseException] = []

    def call(fn, *a):
        try:
            v = fn(*a)
            return ri.StrSexpVector(["ok", "" if v is None else v])
        except stop as e:
            stopped.append(e)
            return ri.StrSexpVector(["error", str(e)])
        except Exception as e:  # noqa: BLE001 - becomes an R error naming the call
            return ri.StrSexpVector(["error", f"{getattr(fn, '__name__', 'EQ')} failed: {e}"])

    @ri.rternalize
    def py_put(s):
        return call(put, str(s[0]) if len(s) else "")

    @ri.rternalize
    def py_get():
        return call(get)

    ro.r["eq_bind_transport"](py_put, py_get)
    err = str(ro.r["eq_run_optimizer"](str(algo))[0])
    if stopped:
        raise stopped[0]
    return err


# --- the simulated farm (eq/R/sim.R) ----------------------------------------------------------

_sim_baseline: set[str] | None = None


def _globals(ro) -> set[str]:
    return set(ro.r["ls"](envir=ro.globalenv, **{"all.names": True}))


def _sim_session():
    """The embedded R with eq/R/sim.R sourced; remembers which globals belong to the runtime."""
    global _sim_baseline
    ro = session()
    if _sim_baseline is None:
        ro.r["source"](str(R_DIR / "sim.R"))
        _sim_baseline = _globals(ro)
    return ro


def sim_minima() -> dict[str, float]:
    """The known minima of the simulated bench functions (eq/R/sim.R ``fake_eq_minima``)."""
    m = _sim_session().globalenv["fake_eq_minima"]
    return {str(k): float(v) for k, v in zip(m.names, m)}


class SimFarm:
    """One simulated farm of eq/R/sim.R in the embedded R: the driver side of the EQ protocol
    with ``workers`` simulated workers, trials evaluated on the bench functions in simulated
    time. R optimizers run against it in R (``run_r``); Python ones call ``OUT_put``/``IN_get``,
    so it stands in for the ZeroMQ client behind ``eqpy``."""

    def __init__(self, settings: str, workers: int, seed: int):
        ro = _sim_session()
        # each run starts from the runtime's globals: what a previous optimizer left is removed
        left = _globals(ro) - _sim_baseline - {".Random.seed"}
        if left:
            ro.r["rm"](list=ro.StrVector(sorted(left)), envir=ro.globalenv)
        self._ro = ro
        self.h = ro.r["fake_eq_new"](settings=settings, workers=int(workers), seed=int(seed))

    def _call(self, fn: str, *args):
        from rpy2.rinterface_lib.embedded import RRuntimeError
        try:
            return self._ro.r[fn](self.h, *args)
        except RRuntimeError as e:
            raise RError(str(e).strip()) from None

    def OUT_put(self, s: str) -> None:
        if not isinstance(s, str):
            raise TypeError(f"OUT_put expects a string, got {type(s).__name__}")
        self._call("fake_eq_out_put", s)

    def IN_get(self) -> str:
        return str(self._call("fake_eq_in_get")[0])

    def run_r(self, algo: Path) -> str:
        """Run an R optimizer file against this farm (fake_eq_new defined OUT_put/IN_get as R
        globals); '' or the R error text with its traceback."""
        return str(self._ro.r["eq_run_optimizer"](str(algo))[0])

    def report(self) -> dict:
        """fake_eq_report: trials, proposal times, utilization, end state."""
        return json.loads(str(self._call("fake_eq_report")[0]))
