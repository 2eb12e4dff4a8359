"""Analytic benchmark functions as a pilot: the farm's machinery without Keras.

``sleep`` simulates training time (and honours the trial's time limit); ``hang`` sleeps without
looking at the time limit, as native code would; ``fail = True`` makes the trial raise and
``crash = True`` kills the process running it. The last three exercise failure handling;
``diverge = True`` returns ``inf``, as a diverged loss would.

``duration_mean = M`` (seconds, > 0) adds a training time drawn independently of the search, from a
lognormal with mean M and coefficient of variation ``duration_cv`` (default 1), seeded by
``duration_seed`` and the trial id, so a rerun in a fresh store draws the same durations
(``duration()``; benchmarks/utilization.py and emews_py/farmsim.py use it).

``epochs = E`` (> 0) simulates a training with a known learning curve: E epochs sharing the
trial's time (``sleep`` plus the drawn duration), after a ``train_begin`` event as the Keras
callback sends, each reporting an ``epoch_end`` event with
``val_loss = f(x) + curve / (epoch + 1)`` (f the chosen function), and the last epoch's
``val_loss`` as the objective. It honours the early stopper (STOPPER) at each epoch end as the
Keras callback does, so the farm's stopping is tested without Keras (tests/test_stoppers.py).
"""
from __future__ import annotations

import math
import os
import random
import signal
import time

from emews_py.pilotkit.context import PilotError
from emews_py.pilotkit.defaults import pilot_params
from emews_py.pilotkit.params import to_bool, to_float, to_int

# How `emews workflow` knows, without importing a pilot, that it reports epoch_end events (a
# stopper needs them): the value it reports, and the parameter that must be > 0 for it to do so.
EPOCH_METRIC = "val_loss"
EPOCHS_PARAM = "epochs"

MINIMA = {"branin": 0.397887357729739, "hartmann6": -3.32236801141551, "mixed": 0.0, "noop": 0.0}

_H_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_H_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_H_ALPHA = [1.0, 1.2, 3.0, 3.2]
_CAT = {"a": 0.0, "b": 0.3, "c": 0.6, "d": 1.0}


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x: list[float]) -> float:
    return -sum(a * math.exp(-sum(A * (xj - P) ** 2 for A, xj, P in zip(Ai, x, Pi)))
                for a, Ai, Pi in zip(_H_ALPHA, _H_A, _H_P))


def mixed(x1: float, x2: float, n: int, cat: str) -> float:
    if cat not in _CAT:
        raise PilotError(f"bench mixed: cat = {cat!r} is not one of {sorted(_CAT)}")
    return (x1 - 0.3) ** 2 + (x2 + 0.1) ** 2 + 0.05 * (n - 7) ** 2 + _CAT[cat]


def duration(mean: float, cv: float, seed: int, trial_id: int) -> float:
    """A lognormal draw with this mean and coefficient of variation, the same for the same
    (seed, trial id) in every process (a string seed hashes the same everywhere)."""
    s2 = math.log1p(cv * cv)
    rng = random.Random(f"bench-duration:{seed}:{trial_id}")
    return rng.lognormvariate(math.log(mean) - s2 / 2, math.sqrt(s2))


def run(params: dict, ctx) -> float:
    p = pilot_params(__file__, params)
    f = p["function"]
    sleep, hang = to_float(p["sleep"], "sleep", 0.0), to_float(p["hang"], "hang", 0.0)
    mean = to_float(p["duration_mean"], "duration_mean", 0.0)
    if mean:
        sleep += duration(mean, to_float(p["duration_cv"], "duration_cv", 0.0),
                          to_int(p["duration_seed"], "duration_seed"), ctx.trial_id)
    epochs = to_int(p["epochs"], "epochs", 0)
    if sleep and not epochs:
        train_for(sleep, ctx)
    if hang:
        time.sleep(hang)
    if to_bool(p["crash"], "crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    if to_bool(p["fail"], "fail"):
        raise RuntimeError("bench pilot asked to fail (fail = True)")
    if to_bool(p["diverge"], "diverge"):
        return math.inf
    if epochs:
        return train(objective(p, f), epochs, sleep, to_float(p["curve"], "curve"), ctx)
    return objective(p, f)


def train(final: float, epochs: int, seconds: float, curve: float, ctx) -> float:
    """A simulated training whose val_loss at epoch e is final + curve / (e + 1)."""
    loss = math.inf
    ctx.event("train_begin", epochs=epochs)
    for e in range(epochs):
        train_for(seconds / epochs, ctx)
        loss = final + curve / (e + 1)
        ctx.event("epoch_end", epoch=e, loss=loss, val_loss=loss)
        if ctx.stop_requested():   # as the Keras callback does at an epoch end
            ctx.mark_stopped(e)
            break
    return loss


def train_for(seconds: float, ctx) -> None:
    """Sleep as a training would take this long, checking the time limit (TIMEOUT) every 50 ms,
    as a Keras callback does."""
    end = time.time() + seconds
    while time.time() < end:
        ctx.check_deadline()
        time.sleep(min(0.05, max(0.0, end - time.time())))


def objective(p: dict, f: str) -> float:
    if f == "noop":
        return 0.0
    if f == "branin":
        return branin(to_float(p["x1"], "x1"), to_float(p["x2"], "x2"))
    if f == "hartmann6":
        return hartmann6([to_float(p[f"x{i}"], f"x{i}") for i in range(1, 7)])
    if f == "mixed":
        return mixed(to_float(p["x1"], "x1"), to_float(p["x2"], "x2"), to_int(p["n"], "n"),
                     str(p["cat"]))
    raise PilotError(f"bench: unknown function {f!r}; use one of {', '.join(MINIMA)} "
                     f"(parameter 'function' in pilots/bench/bench_default_model.txt or the space)")
