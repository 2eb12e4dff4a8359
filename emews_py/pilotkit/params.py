"""Parameter coercion and checks for pilots: values as a search space delivers them, typed.

Search spaces deliver values as JSON (from R, an integer may come as ``3.0`` and a discrete value
as a string), so pilots coerce each parameter here; a bad value is a ``PilotError`` whose message
names the parameter, which the farm stores with the failed trial. Standard library only: no Keras,
TensorFlow, JAX or numpy.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable

from emews_py.pilotkit.context import PilotError

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def _who(pilot: str | None) -> str:
    return f"pilot {pilot}: " if pilot else ""


def to_int(v: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer parameter as it may arrive from R or JSON (3, 3.0, "3"); bools, fractions, NaN
    and infinity are errors naming the parameter, and so is a value outside [lo, hi]."""
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
        i = int(round(f))
        if abs(f - i) > 1e-9:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise PilotError(f"parameter {name!r} must be an integer, got {v!r}") from None
    if (lo is not None and i < lo) or (hi is not None and i > hi):
        raise PilotError(f"parameter {name!r} = {i} is out of range [{lo}, {hi}]")
    return i


def to_float(v: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number within [lo, hi] (either bound may be None); bools are errors."""
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
    except (TypeError, ValueError):
        raise PilotError(f"parameter {name!r} must be a number, got {v!r}") from None
    if not math.isfinite(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        raise PilotError(f"parameter {name!r} = {f} is out of range [{lo}, {hi}]")
    return f


def to_bool(v: Any, name: str) -> bool:
    """True/False as R (TRUE), JSON (true), a default model file (True), 1/0 or a string
    ("true", "no", ...) gives it; anything else is an error naming the parameter."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise PilotError(f"parameter {name!r} must be true or false (also 1/0, 'yes'/'no'), got {v!r}")


def parse_int_list(v: Any, name: str, allow_empty: bool = False,
                   drop_zeros: bool = False) -> list[int]:
    """A list of layer sizes: ``[400, 200]``, ``400``, ``'400,200'``, ``'400 200'`` (CANDLE
    Supervisor's form) and ``'[400, 200]'`` all give ``[400, 200]``. Search spaces give discrete
    choices of lists as such strings, since their values must be JSON scalars. ``drop_zeros``
    removes 0 entries (``'0'`` then means no layers); negative sizes are errors."""
    if isinstance(v, str):
        items = v.strip().strip("[]()").replace(",", " ").split()
    elif isinstance(v, (list, tuple)):
        items = list(v)
    else:
        items = [v]
    out = [to_int(x, name) for x in items]
    if any(x < 0 for x in out):
        raise PilotError(f"parameter {name!r} has a negative size: {v!r}")
    if drop_zeros:
        out = [x for x in out if x > 0]
    if not out and not allow_empty:
        raise PilotError(f"parameter {name!r} is empty; give at least one layer size")
    return out


def check_choice(value: Any, name: str, choices: Iterable[str], pilot: str | None = None) -> str:
    """``value`` as the member of ``choices`` it names (case and surrounding blanks ignored, so
    ``'Adam'`` gives ``'adam'``); anything else is an error listing the choices."""
    choices = list(choices)
    key = str(value).strip().lower()
    for c in choices:
        if str(c).lower() == key:
            return c
    raise PilotError(f"{_who(pilot)}parameter {name!r} = {value!r} is not one of "
                     f"{', '.join(map(str, choices))}")


def set_deadline(ctx, timeout: Any) -> None:
    """Apply a pilot-level ``timeout`` (seconds, 0 = none) on top of the trial's own deadline."""
    t = to_float(timeout or 0, "timeout", 0.0)
    if t > 0:
        d = time.time() + t
        ctx.deadline = d if ctx.deadline is None else min(ctx.deadline, d)


__all__ = ["to_int", "to_float", "to_bool", "parse_int_list", "check_choice", "set_deadline"]
