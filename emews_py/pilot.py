"""The farm's side of pilots: find and import ``pilots/<name>``, and normalise what ``run`` returns.

A pilot is a package ``pilots/<name>/`` with ``<name>_default_model.txt`` (CANDLE-style INI,
section ``[Global_Params]``) and ``run(params, ctx) -> float | dict``. The dict form is
``{"objective": float, "metrics": {...}, "model_path": str | None}``.

What a pilot itself uses lives in ``emews_py.pilotkit`` (see its docstring); the names below are
re-exported so that pilots and scripts written as ``from emews_py.pilot import pilot_params,
PilotError, TrialContext, ...`` keep working. Nothing here imports Keras.
"""
from __future__ import annotations

import importlib
import traceback
from pathlib import Path
from typing import Any

from emews_py.pilotkit.cache import data_cache_dir, prepare_lock, prepare_once
from emews_py.pilotkit.context import PilotError, TrialContext, TrialTimeout, UnknownParameterError
from emews_py.pilotkit.defaults import merge_params, pilot_params, read_default_model

REPO_ROOT = Path(__file__).resolve().parent.parent
PILOTS_DIR = REPO_ROOT / "pilots"


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


def run_trial(pilot, params: dict, ctx: TrialContext, timeout: float | None):
    """Run one trial in this process: (TrialStatus, normalized result, error text or None). The one
    rule for resident workers and app-mode subprocesses alike; a failing pilot never raises."""
    from emews_py.trials import TrialStatus
    empty = {"objective": None, "metrics": None, "model_path": None}
    try:
        res = normalize_result(pilot.run(params, ctx))
    except TrialTimeout:
        return (TrialStatus.TIMEOUT, empty,
                f"trial passed its time limit of {timeout} s (TIMEOUT) and was stopped")
    except Exception as e:  # noqa: BLE001 - a failing trial must not end the farm
        return TrialStatus.FAILED, empty, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    if ctx.timed_out:
        return TrialStatus.TIMEOUT, res, f"training stopped at the time limit of {timeout} s (TIMEOUT)"
    if getattr(ctx, "stopped_epoch", None) is not None:  # the early stopper ended its training
        return TrialStatus.STOPPED, res, None
    return TrialStatus.COMPLETED, res, None


__all__ = ["REPO_ROOT", "PILOTS_DIR", "load_pilot", "normalize_result", "run_trial",
           # re-exported from emews_py.pilotkit
           "PilotError", "UnknownParameterError", "TrialTimeout", "TrialContext",
           "read_default_model", "merge_params", "pilot_params",
           "data_cache_dir", "prepare_lock", "prepare_once"]
