"""A pilot's default model file (CANDLE-style INI, ``[Global_Params]``) and the trial's parameters
merged over it: ``p = pilot_params(__file__, params)``."""
from __future__ import annotations

import ast
import configparser
import os
from pathlib import Path
from typing import Any

from emews_py.pilotkit.context import PilotError, UnknownParameterError


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
