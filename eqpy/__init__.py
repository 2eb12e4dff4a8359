"""EQ/Py: the EMEWS Python API. An algorithm does ``import eqpy`` and calls ``eqpy.OUT_put`` /
``eqpy.IN_get``; the helpers below (``settings``, ``submit``, ``results``, ``batch``, ``history``, ``done``)
are built on those two calls only (docs/eq-protocol.md).

A top-level package of the emews-py distribution, so ``import eqpy`` works wherever it is
installed. The calls go to ``emews_py.eq.client()``: the ZeroMQ connection to the driver in the
optimizer process, or the simulated farm under ``emews simulate``."""
from __future__ import annotations

import json
import math

from emews_py import eq as _eq


def OUT_put(string_params: str) -> None:
    _eq.client().OUT_put(string_params)


def IN_get() -> str:
    return _eq.client().IN_get()


def settings() -> dict:
    """The "Params" handshake: the workflow's algorithm settings as a dict (with "space")."""
    OUT_put("Params")
    return json.loads(IN_get())


def _clean(p: dict) -> dict:
    out = {}
    for k, v in p.items():
        if hasattr(v, "item"):  # numpy scalars
            v = v.item()
        out[k] = v
    return out


def _request(msg: dict) -> dict:
    OUT_put(json.dumps(msg))
    reply = json.loads(IN_get())
    for r in reply.get("results", ()):
        # a diverged objective comes as "Infinity"/"-Infinity" (JSON has no infinity): a float
        if isinstance(r.get("objective"), str):
            r["objective"] = float(r["objective"])
    return reply


def submit(points: list[dict]) -> list[int]:
    """Queue points without waiting; returns their trial ids."""
    return _request({"eq": "submit", "points": [_clean(p) for p in points]})["ids"]


def results(min: int = 1) -> dict:
    """Wait for at least ``min`` submitted trials to finish; returns the reply dict
    (``results``, ``pending``, ``free``, ``workers``)."""
    return _request({"eq": "results", "min": int(min)})


def batch(points: list[dict]) -> list[dict]:
    """Run points and wait for all of them; results in order, each with id, status, objective."""
    return _request({"eq": "batch", "points": [_clean(p) for p in points]})["results"]


def status() -> dict:
    return _request({"eq": "status"})


def history(experiment: int) -> dict:
    """An earlier experiment of the same store (to warm-start from it): the reply dict with
    ``experiment``, ``name``, ``space`` (its space as JSON) and ``results`` (its completed, failed
    and timed-out trials in id order, each like a result of ``batch``). An unknown id ends the run
    with an error naming it."""
    return _request({"eq": "history", "experiment": int(experiment)})


def done(final) -> None:
    """End the experiment: "DONE" then the final message (a string, or JSON-encoded)."""
    OUT_put("DONE")
    OUT_put(final if isinstance(final, str) else json.dumps(final))


def value(r: dict, impute: float = math.nan) -> float:
    """The objective of a result, or ``impute`` for a failed or timed-out trial."""
    o = r.get("objective")
    return impute if (r.get("status") != "completed" or o is None) else float(o)
