"""Random search in Python, written to the plain EMEWS EQ/Py convention (``import eqpy``):
settings handshake, ';'-joined JSON batches, DONE + final message.

Settings (JSON): max.budget, propose.points (default: the number of workers), seed, space.
"""
import json
import math
import random

import eqpy

from emews_py.space import Space


def run():
    eqpy.OUT_put("Params")
    settings = json.loads(eqpy.IN_get())
    space = Space(settings["space"])
    budget = int(settings["max.budget"])
    q = int(settings.get("propose.points") or settings["workers"])
    rng = random.Random(settings.get("seed"))
    best_y, best_x, evaluated = math.inf, None, 0
    while evaluated < budget:
        n = min(q, budget - evaluated)
        xs = space.transform([space.sample(rng) for _ in range(n)])
        eqpy.OUT_put(";".join(json.dumps(x) for x in xs))
        ys = [float(v) for v in eqpy.IN_get().split(";")]
        for x, y in zip(xs, ys):
            if not math.isnan(y) and y < best_y:
                best_y, best_x = y, x
        evaluated += n
    eqpy.OUT_put("DONE")
    eqpy.OUT_put(json.dumps({"algorithm": "py_random", "evaluations": evaluated,
                             "best.y": best_y if best_x else None, "best.x": best_x}))
