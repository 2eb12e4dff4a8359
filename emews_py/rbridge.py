"""The only Python that talks to R: R literals, ``Rscript`` calls and the embedded rpy2 session.

Everything that turns Python values into R text, or runs R, goes through here, so quoting rules
and error wording live in one place.
"""
from __future__ import annotations

import math


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
