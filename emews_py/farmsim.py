"""A discrete-event model of the farm: how busy W workers stay, and how many trials an hour they
finish, for a trial-duration distribution, the optimizer's proposal cost and the driver's costs.

    emews simulate-farm --workers 1024 --mean 600 --cv 1 --budget 10240 --algo stream \\
        --cost 0.5,0.002,0.0001,0

What is modelled, after the real code:
- the optimizer (one process, busy while it proposes) runs the loops of r_algorithms/mbo/loop.R
  (``stream``: submit the initial design, then each time results arrive propose as many points
  as the driver reports free workers; ``batch``: propose ``q`` points, wait for all, refit) or of
  r_algorithms/random.R (``random``: plain batches of ``q``, each waiting for its slowest trial);
  stream's look-ahead (``ahead``, r_algorithms/mbo/scale.R) keeps trials queued beyond the idle
  workers, so that a worker finishing during a proposal starts its next trial at once;
- the proposal cost ``cost(n, q) = a + b q + c min(n, n_cap) + d min(n, n_cap) q`` seconds (n
  results seen, q points asked; ``n_cap`` for a bounded training set), fitted with ``fit_cost``
  to measured (n, q, seconds) from benchmarks/proposal_cost.py or a run's EQ transcript; or
  one such cost on each side of mlrMBO's surrogate switch (``SwitchedCost``: the GP below
  gp.max.n fitted points, the forest from there);
- the driver (rank 0, one process) spends ``driver_s`` per trial handed out and per result, in
  turn (benchmarks/dispatch.py measures it); a trial starts ``gap_s`` after a worker is free and
  a trial is queued for it (the MPI hand-out, the child's start); a result reaches the optimizer
  ``result_s`` after the trial ends (the store flush before every answer, the EQ hop);
- the driver's ``free`` = workers minus trials queued or out at workers, as farm/protocol.py
  reports it; utilization = busy worker-seconds / (W x makespan), makespan from the first trial
  start to the last finish, as benchmarks/utilization.py measures the real farm.
Not modelled: failures, time limits, CPU contention between the ranks (it is in the measured
costs when they are measured under it).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import re
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

ALGOS = ("stream", "batch", "random")


class FarmSimError(ValueError):
    """Bad input: the message names the option and the fix."""


# ---- inputs ------------------------------------------------------------------------------------

def lognormal(mean: float, cv: float, seed: int = 0) -> Callable[[int], float]:
    """Trial i's duration: lognormal with this mean and coefficient of variation, the same draw
    as the bench pilot's ``duration_mean``/``duration_cv`` (pilots/bench ``duration``)."""
    if not (mean > 0 and math.isfinite(mean)):
        raise FarmSimError(f"the mean trial duration must be a positive number of seconds, not {mean}")
    if not (cv >= 0 and math.isfinite(cv)):
        raise FarmSimError(f"the coefficient of variation must be >= 0, not {cv}")
    from pilots.bench import duration
    return lambda i: duration(mean, cv, seed, i)


@dataclass(frozen=True)
class Cost:
    """Seconds the optimizer spends proposing q points after n results:
    a + b q + c m + d m q with m = min(n, n_cap)."""
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    n_cap: float = math.inf

    def __call__(self, n: int, q: int) -> float:
        m = min(n, self.n_cap)
        return self.a + self.b * q + self.c * m + self.d * m * q

    def scaled(self, f: float) -> "Cost":
        return Cost(self.a * f, self.b * f, self.c * f, self.d * f, self.n_cap)

    @classmethod
    def parse(cls, text: str, n_cap: float = math.inf, option: str = "--cost") -> "Cost":
        return cls(*_numbers(text, 4, option, "'a,b,c,d', the proposal cost a + b q + c n + d n q "
                             "in seconds (n results seen, q points asked)", "0.5,0.01,0.0002,0"),
                   n_cap=n_cap)


def _numbers(text: str, k: int, option: str, what: str, example: str) -> list[float]:
    """``k`` comma-separated numbers >= 0 from an option's text, or FarmSimError naming it."""
    try:
        v = [float(x) for x in text.split(",")]
        if len(v) != k or not all(math.isfinite(x) and x >= 0 for x in v):
            raise ValueError
    except ValueError:
        raise FarmSimError(f"{option} {text!r}: give {('three', 'four')[k - 3]} numbers >= 0, "
                           f"{what}, e.g. {option} {example}") from None
    return v


@dataclass(frozen=True)
class BelieverCost:
    """mlrMBO's batch rounds with a GP and fantasies (liar 'mean', the kriging believer of
    batch mode): the q points are chosen one at a time, the j-th with the GP conditioned on
    n + j points, so a round costs sum over j < q of (a + b m + c m^2), m = n + j (the measured
    per-point cost follows n + q/2, not n: 0.22 s at n = 64, q = 16 against 0.35 s at q = 64)."""
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0

    @staticmethod
    def terms(n: float, q: float) -> tuple[float, float, float]:
        s1 = q * n + q * (q - 1) / 2                                    # sum of m
        s2 = q * n * n + n * q * (q - 1) + (q - 1) * q * (2 * q - 1) / 6  # sum of m^2
        return q, s1, s2

    def __call__(self, n: int, q: int) -> float:
        t = self.terms(n, q)
        return self.a * t[0] + self.b * t[1] + self.c * t[2]

    def scaled(self, f: float) -> "BelieverCost":
        return BelieverCost(self.a * f, self.b * f, self.c * f)

    @classmethod
    def parse(cls, text: str, option: str = "--gp-believer") -> "BelieverCost":
        return cls(*_numbers(text, 3, option, "'a,b,c', the seconds a + b m + c m^2 to choose "
                             "each of the q points with the GP conditioned on m points",
                             "0.01,0.002,3e-5"))


def fit_believer(samples: Sequence[tuple[float, float, float]]) -> BelieverCost:
    """BelieverCost by least squares with non-negative coefficients of (n, q, seconds)."""
    import numpy as np
    from scipy.optimize import nnls
    if not samples:
        raise FarmSimError("fit_believer: no (n, q, seconds) samples to fit")
    A = np.array([BelieverCost.terms(n, q) for n, q, _ in samples], dtype=float)
    coef, _ = nnls(A, np.array([x[2] for x in samples], dtype=float))
    return BelieverCost(*map(float, coef))


@dataclass(frozen=True)
class SwitchedCost:
    """mlrMBO's default surrogate changes with n (surrogate = 'auto': a Gaussian process while
    fewer than gp.max.n points are fitted, then the forest), and its cost with it: the GP's
    rounds grow with n and q (O(n^3) fits, q sequential searches under the liar: 100 s for 128
    points at n = 128 on the 2-core machine), the forest's stay near flat (5 s). One
    a + b q + c n + d n q over both misfits either: ``below`` for n < ``switch_n``, ``above``
    from there."""
    below: Cost | BelieverCost
    above: Cost
    switch_n: float = 200

    def __call__(self, n: int, q: int) -> float:
        return (self.below if n < self.switch_n else self.above)(n, q)

    def scaled(self, f: float) -> "SwitchedCost":
        return SwitchedCost(self.below.scaled(f), self.above.scaled(f), self.switch_n)


def fit_switched(samples: Sequence[tuple[float, float, float]], switch_n: float,
                 n_cap: float = math.inf, believer: bool = False):
    """Each side of switch_n fitted apart: the GP's rounds with fit_cost, or with fit_believer
    (``believer``: batch mode's fantasies); the forest's as a + b q + c n (its fit grows with the
    bounded training set, its candidate scoring with q; no n q term, which one run's narrow
    range of n cannot pin down and which then misleads far from it). Samples on one side only
    give that side's fit alone (a run that never reached the switch says nothing about the
    other surrogate)."""
    lo = [x for x in samples if x[0] < switch_n]
    hi = [x for x in samples if x[0] >= switch_n]
    fit_lo = (lambda: fit_believer(lo)) if believer else (lambda: fit_cost(lo))
    if not hi:
        return fit_lo()
    if not lo:
        return fit_cost(hi, n_cap, interaction=False)
    return SwitchedCost(fit_lo(), fit_cost(hi, n_cap, interaction=False), switch_n)


def fit_cost(samples: Sequence[tuple[float, float, float]], n_cap: float = math.inf,
             interaction: bool = True) -> Cost:
    """Least squares with non-negative coefficients of (n, q, seconds) samples; without
    ``interaction``, d = 0 (a + b q + c n)."""
    import numpy as np
    from scipy.optimize import nnls
    if not samples:
        raise FarmSimError("fit_cost: no (n, q, seconds) samples to fit")
    s = np.asarray(samples, dtype=float)
    m = np.minimum(s[:, 0], n_cap)
    A = np.column_stack([np.ones(len(s)), s[:, 1], m] + ([m * s[:, 1]] if interaction else []))
    coef, _ = nnls(A, s[:, 2])
    return Cost(*map(float, coef), n_cap=n_cap)


@dataclass(frozen=True)
class Farm:
    workers: int
    driver_s: float = 0.0   # rank 0's time per trial handed out and per result
    gap_s: float = 0.0      # a free worker's wait for a queued trial to start
    result_s: float = 0.0   # a result's way from the trial's end to the optimizer


# ---- the optimizer: generators that yield what loop.R / random.R call ------------------------

@dataclass(frozen=True)
class Think:        # busy proposing
    seconds: float


@dataclass(frozen=True)
class Submit:       # eq_submit: queue k trials, answer at once
    k: int


@dataclass(frozen=True)
class Batch:        # eq_batch / a plain EMEWS batch: queue k trials, answer when all are done
    k: int


@dataclass(frozen=True)
class Results:      # eq_results(min): answer with every result not yet delivered, and `free`
    min: int = 1


# Stream mode's look-ahead rules, as r_algorithms/mbo/scale.R's mbo_stream_q had them: 'auto-FxCW'
# keeps F x the most results of one round (over the last 5) queued, at most C x W. Real runs are
# reproduced with the rule they ran with (`git log -p -- r_algorithms/mbo/scale.R`):
AHEAD_RULES = {
    "auto": (2, 2),        # since 0015b7c (2026-11-29 18:39): at most 2 W
    "auto-2x-W": (2, 1),   # 8e86918 (17:45) to 0015b7c: twice the busiest round, at most W
    "auto-1x-W": (1, 1),   # 5664860 (15:44) to 8e86918: the busiest round, at most W
}                          # and 0 before 5664860: idle workers only
AHEAD_RE = re.compile(r"auto-([1-9][0-9]*)x-([1-9][0-9]*)?W")


def lookahead(ahead: int | str, workers: int, history: Sequence[int]) -> int:
    """Trials mbo_stream_q keeps queued beyond the idle workers: a number (at most 2 W, as
    scale.R caps it), 'auto' or an 'auto-FxCW' rule (AHEAD_RULES)."""
    if isinstance(ahead, int):
        return min(2 * workers, ahead)
    f, c = AHEAD_RULES.get(ahead) or _rule(ahead)
    return min(c * workers, f * max(history, default=0))


def _rule(text: str) -> tuple[int, int]:
    m = AHEAD_RE.fullmatch(text)
    if not m:
        raise FarmSimError(f"--ahead {text!r}: give 'auto' (mlrMBO's default), a rule 'auto-FxCW' "
                           f"(F x the busiest round's results, at most C x W, e.g. auto-1x-W) or a "
                           f"whole number >= 0 of trials to keep queued beyond the idle workers")
    return int(m.group(1)), int(m.group(2) or 1)


def mbo_stream(budget: int, design: int, min_fit: int, cost: Callable, random_cost: Callable,
               ahead: int | str = 0, workers: int | None = None) -> Iterator:
    """mbo_loop_stream: the design at once, then at each answer propose for the free workers plus
    the look-ahead of r_algorithms/mbo/scale.R's mbo_stream_q: ``ahead`` trials kept queued beyond
    the idle workers ("auto": twice the most results that arrived in one round over the last 5, at
    most 2 W; the earlier rules by name, AHEAD_RULES; 0: idle workers only, mlrMBO before
    issue 9)."""
    n_sub = n_obs = 0
    history: deque[int] = deque(maxlen=5)
    if design:
        yield Submit(design)
        n_sub = design
    while True:
        npend = n_sub - n_obs
        can = n_sub < budget
        if npend == 0 and not can:
            return
        free, got = None, 0
        if npend > 0:
            got, free = yield Results(1)
            n_obs += got
        if not can:
            continue
        npend = n_sub - n_obs
        if free is None:
            free = max(0, workers - npend) if workers else 1
        if free <= 0 and npend == 0:
            free = 1
        history.append(got)
        if workers and ahead != 0:
            queued = max(0, npend - (workers - free))
            free += max(0, lookahead(ahead, workers, history) - queued)
        q = min(free, budget - n_sub)
        if q <= 0:
            continue
        yield Think(random_cost(n_obs, q) if n_obs < min_fit else cost(n_obs, q))
        yield Submit(q)
        n_sub += q


def mbo_batch(budget: int, design: int, q: int, cost: Callable) -> Iterator:
    """mbo_loop_batch: the design as one batch, then propose q, wait for all, refit."""
    n = 0
    if design:
        yield Batch(design)
        n = design
    while n < budget:
        k = min(q, budget - n)
        yield Think(cost(n, k))
        yield Batch(k)
        n += k


def random_batches(budget: int, q: int, cost: Callable) -> Iterator:
    """r_algorithms/random.R: sample q points, a plain batch, wait for all of it."""
    n = 0
    while n < budget:
        k = min(q, budget - n)
        yield Think(cost(n, k))
        yield Batch(k)
        n += k


# ---- the event loop ------------------------------------------------------------------------------

@dataclass
class Outcome:
    workers: int
    trials: int
    makespan: float             # first trial start to last finish, seconds
    busy: float                 # worker-seconds spent in trials
    utilization: float
    trials_per_hour: float
    utilization_ss: float       # the same while work remained: first start to the last start
    trials_per_hour_ss: float   # trials finished in that window, per hour
    optimizer_busy: float       # seconds the optimizer spent proposing
    driver_busy: float          # seconds rank 0 spent on trials and results
    starts: list = field(default_factory=list, repr=False)
    finishes: list = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("starts"), d.pop("finishes")
        return d


def simulate(farm: Farm, optimizer: Iterator, duration: Callable[[int], float] | Sequence[float],
             keep_times: bool = False) -> Outcome:
    """Run the optimizer against the farm until it returns and every trial has finished. Trial i
    (in submission order) lasts ``duration(i)`` (or ``duration[i]``)."""
    W = farm.workers
    if isinstance(W, bool) or not isinstance(W, int) or W < 1:
        raise FarmSimError(f"the farm needs at least one worker, not {W!r}")
    dur = duration.__getitem__ if isinstance(duration, Sequence) else duration
    heap: list = []                       # (time, seq, kind, trial)
    seq = 0
    queue: deque[int] = deque()
    st = dict(idle=W, out=0, drv=0.0, drv_busy=0.0, opt_busy=0.0, busy=0.0, n=0,
              undelivered=0, delivered=0, batch_left=0, first=math.inf, last=0.0)
    waiting: list = [None]                # the optimizer's pending request
    starts: list[float] = []
    finishes: list[float] = []
    spans: list[tuple[float, float]] = []     # (start, end) per trial, for the steady state

    def push(t, kind, i=None):
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, kind, i))

    def dispatch(now: float) -> None:
        while queue and st["idle"]:
            i = queue.popleft()
            st["idle"] -= 1
            st["out"] += 1
            st["drv"] = max(st["drv"], now) + farm.driver_s
            st["drv_busy"] += farm.driver_s
            start = st["drv"] + farm.gap_s
            d = float(dur(i))
            if not (d >= 0 and math.isfinite(d)):
                raise FarmSimError(f"trial {i}'s duration is {d}; durations must be finite and >= 0")
            st["busy"] += d
            st["first"] = min(st["first"], start)
            if keep_times:
                starts.append(start)
            spans.append((start, start + d))
            push(start + d, "finish", i)

    def answerable(req: Results) -> bool:
        pending = st["n"] - st["delivered"] - st["undelivered"]
        return st["undelivered"] >= min(req.min, st["undelivered"] + pending)

    def step(now: float, value) -> None:
        """Resume the optimizer with ``value``; run it until it waits, thinks or returns."""
        while True:
            try:
                cmd = optimizer.send(value)
            except StopIteration:
                waiting[0] = "done"
                return
            value = None
            if isinstance(cmd, Think):
                st["opt_busy"] += cmd.seconds
                push(now + cmd.seconds, "resume")
                return
            if isinstance(cmd, (Submit, Batch)):
                if cmd.k < 1:
                    raise FarmSimError(f"the optimizer submitted {cmd.k} points")
                queue.extend(range(st["n"], st["n"] + cmd.k))
                st["n"] += cmd.k
                dispatch(now)
                if isinstance(cmd, Batch):
                    waiting[0] = "batch"
                    st["batch_left"] = cmd.k
                    return
                continue
            if isinstance(cmd, Results):
                if answerable(cmd):
                    got = st["undelivered"]
                    st["delivered"] += got
                    st["undelivered"] = 0
                    value = (got, max(0, W - len(queue) - st["out"]))
                    continue
                waiting[0] = cmd
                return
            raise TypeError(f"unknown optimizer command {cmd!r}")

    step(0.0, None)
    while heap:
        now, _, kind, i = heapq.heappop(heap)
        if kind == "resume":
            step(now, None)
        elif kind == "finish":
            st["idle"] += 1
            st["out"] -= 1
            st["last"] = max(st["last"], now)
            if keep_times:
                finishes.append(now)
            st["drv"] = max(st["drv"], now) + farm.driver_s
            st["drv_busy"] += farm.driver_s
            push(st["drv"] + farm.result_s, "seen", i)
            dispatch(now)
        elif kind == "seen":
            w = waiting[0]
            if w == "batch":
                st["batch_left"] -= 1
                st["delivered"] += 1
                if st["batch_left"] == 0:
                    waiting[0] = None
                    step(now, None)
            else:
                st["undelivered"] += 1
                if isinstance(w, Results) and answerable(w):
                    got = st["undelivered"]
                    st["delivered"] += got
                    st["undelivered"] = 0
                    waiting[0] = None
                    step(now, (got, max(0, W - len(queue) - st["out"])))
    n = st["n"]
    makespan = st["last"] - st["first"] if n else 0.0
    util = st["busy"] / (W * makespan) if makespan > 0 else (1.0 if n else 0.0)
    last_start = max((a for a, _ in spans), default=0.0)
    window = last_start - st["first"] if n else 0.0
    if window > 0:
        util_ss = sum(max(0.0, min(b, last_start) - a) for a, b in spans) / (W * window)
        rate_ss = sum(1 for _, b in spans if b <= last_start) / window * 3600
    else:
        util_ss, rate_ss = util, 0.0
    return Outcome(W, n, makespan, st["busy"], util, n / makespan * 3600 if makespan > 0 else 0.0,
                   util_ss, rate_ss, st["opt_busy"], st["drv_busy"], starts, finishes)


def list_schedule(durations: Sequence[float], workers: int) -> Outcome:
    """The farm with zero overheads and every trial queued at once (greedy list scheduling): the
    bound a real run with the same durations can reach."""
    def submit_all():
        if durations:
            yield Submit(len(durations))
    return simulate(Farm(workers), submit_all(), list(durations))


# ---- the command line: emews simulate-farm ------------------------------------------------------

# Defaults measured 2026-11-29 (docs/scale.md): mlrMBO's proposal cost from
# benchmarks/proposal_cost.py's CPU time (10-D mixed space, fit.max = 1000: the optimizer on a core
# of its own), random.R's time per batch, the hand-out and result latencies from the real runs of
# benchmarks/utilization.py (benchmarks/farm_model.py prints them), and rank 0's cost per trial and
# per result from benchmarks/dispatch.py's 7,800 trials/s.
DEFAULTS = dict(driver_s=6.4e-5, gap_s=0.038, result_s=0.008, cost="2.04,0.0441,0,0",
                random_cost="0.45,0,0,0")


def add_parser(sub) -> None:
    """Register ``emews simulate-farm`` on the CLI's subparsers."""
    s = sub.add_parser("simulate-farm", help="discrete-event model of the farm: utilization and "
                       "trials/h for W workers, trial durations, proposal and driver costs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--workers", type=int, required=True, help="worker ranks W")
    s.add_argument("--algo", default="stream", help="stream or batch (mlrMBO) or random (R)")
    s.add_argument("--budget", type=int, help="trials (default 10 x W)")
    s.add_argument("--mean", type=float, default=600.0, help="mean trial duration, s (600)")
    s.add_argument("--cv", type=float, default=1.0, help="its coefficient of variation (1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the durations")
    s.add_argument("--q", type=int, help="points per batch (batch, random; default W)")
    s.add_argument("--design", type=int, help="mlrMBO's initial design size (default W: with its "
                   "GP, mlrMBO's default design is at least one round of the workers, design.R)")
    s.add_argument("--min-fit", type=int, help="stream: results before the first model-based "
                   "proposal (default design / 2)")
    s.add_argument("--ahead", default="auto", help="stream: trials kept queued beyond the idle "
                   "workers, 'auto' (mlrMBO's default: 2 x the busiest of the last 5 rounds' "
                   "results, at most 2 W), an earlier rule 'auto-1x-W' or 'auto-2x-W' (F x, at "
                   "most C x W), or a number; 0: idle workers only")
    s.add_argument("--cost", default=DEFAULTS["cost"], help="mlrMBO's proposal cost 'a,b,c,d': "
                   "a + b q + c n + d n q seconds")
    s.add_argument("--random-cost", default=DEFAULTS["random_cost"],
                   help="cost of random points (random search; stream before min.fit)")
    s.add_argument("--n-cap", type=float, default=math.inf, help="n is capped here in the cost "
                   "(a bounded training set)")
    s.add_argument("--gp-cost", help="mlrMBO's default surrogate switch: the proposal cost "
                   "'a,b,c,d' while fewer than --switch-n results are fitted (the Gaussian "
                   "process), --cost from there (the forest); benchmarks/farm_model.py prints both fits")
    s.add_argument("--gp-believer", help="as --gp-cost, for batch mode's GP rounds as the kriging "
                   "believer chooses them: 'a,b,c', each of the q points costs a + b m + c m^2 "
                   "seconds with the GP conditioned on m = n + j points")
    s.add_argument("--switch-n", type=float, default=200, help="where the cost switches "
                   "(mlrMBO's gp.max.n, 200)")
    s.add_argument("--driver-s", type=float, default=DEFAULTS["driver_s"],
                   help="rank 0's seconds per trial and per result")
    s.add_argument("--gap-s", type=float, default=DEFAULTS["gap_s"],
                   help="seconds from a free worker to its queued trial's start")
    s.add_argument("--result-s", type=float, default=DEFAULTS["result_s"],
                   help="seconds from a trial's end to the optimizer having its result")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")
    s.set_defaults(func=cmd_simulate_farm)


def optimizer_for(algo: str, workers: int, budget: int, q: int, design: int, min_fit: int,
                  cost: Cost, random_cost: Cost, ahead: int | str = "auto") -> Iterator:
    if algo == "stream":
        return mbo_stream(budget, min(design, budget), min_fit, cost, random_cost, ahead, workers)
    if algo == "batch":
        return mbo_batch(budget, min(design, budget), q, cost)
    if algo == "random":
        return random_batches(budget, q, random_cost)
    raise FarmSimError(f"--algo {algo!r} is not known; give stream or batch (mlrMBO's modes) or "
                       f"random (r_algorithms/random.R)")


def _checked(a) -> dict:
    def positive(name, v):
        if v is None or isinstance(v, bool) or v < 1:
            raise FarmSimError(f"--{name} = {v} must be a positive integer")
        return v
    W = positive("workers", a.workers)
    budget = positive("budget", a.budget if a.budget is not None else 10 * W)
    q = positive("q", a.q if a.q is not None else W)
    design = W if a.design is None else a.design
    if design < 0 or (a.min_fit is not None and a.min_fit < 0):
        raise FarmSimError("--design and --min-fit must be >= 0")
    ahead = parse_ahead(a.ahead)
    for name in ("driver_s", "gap_s", "result_s"):
        v = getattr(a, name)
        if not (math.isfinite(v) and v >= 0):
            raise FarmSimError(f"--{name.replace('_', '-')} = {v} must be a number of seconds >= 0")
    if not (a.n_cap > 0):
        raise FarmSimError(f"--n-cap = {a.n_cap} must be > 0")
    cost = Cost.parse(a.cost, a.n_cap)
    gp_cost, gp_believer = a.gp_cost, a.gp_believer
    if gp_cost is not None and gp_believer is not None:
        raise FarmSimError("--gp-cost and --gp-believer both give the cost below the switch: give "
                           "one (--gp-believer for batch mode's fantasies, --gp-cost otherwise)")
    if gp_cost is not None or gp_believer is not None:
        switch_n = a.switch_n
        if not (math.isfinite(switch_n) and switch_n > 0):
            raise FarmSimError(f"--switch-n = {switch_n} must be a number of results > 0 (mlrMBO's "
                               f"gp.max.n, 200)")
        below = Cost.parse(gp_cost, option="--gp-cost") if gp_cost is not None \
            else BelieverCost.parse(gp_believer)
        cost = SwitchedCost(below, cost, switch_n)
    return dict(W=W, budget=budget, q=q, design=design, min_fit=a.min_fit if a.min_fit is not None
                else max(2, math.ceil(design / 2)), cost=cost,
                random_cost=Cost.parse(a.random_cost, option="--random-cost"), ahead=ahead)


def parse_ahead(v) -> int | str:
    if isinstance(v, str) and v.startswith("auto"):
        _ = AHEAD_RULES.get(v) or _rule(v)      # raises for a malformed rule
        return v
    try:
        n = int(v)
        if n < 0 or str(n) != str(v).strip():
            raise ValueError
    except ValueError:
        raise FarmSimError(f"--ahead {v!r}: give 'auto' (mlrMBO's default), a rule 'auto-FxCW' "
                           f"(e.g. auto-1x-W, the rule before 2026-11-29 17:45) or a whole number "
                           f">= 0 of trials to keep queued beyond the idle workers") from None
    return n


def cmd_simulate_farm(a) -> int:
    try:
        c = _checked(a)
        durations = lognormal(a.mean, a.cv, a.seed)
        opt = optimizer_for(a.algo, c["W"], c["budget"], c["q"], c["design"], c["min_fit"],
                            c["cost"], c["random_cost"], c["ahead"])
        o = simulate(Farm(c["W"], a.driver_s, a.gap_s, a.result_s), opt, durations)
    except FarmSimError as e:
        sys.stderr.write(f"emews simulate-farm: error: {e}. See `emews simulate-farm --help`.\n")
        return 2
    if a.json:
        print(json.dumps(dict(o.summary(), algo=a.algo, mean=a.mean, cv=a.cv)))
    else:
        print(f"{a.algo}: {o.workers} workers, {o.trials} trials of mean {a.mean:g} s (CV {a.cv:g}): "
              f"utilization {o.utilization:.1%}, makespan {o.makespan:.1f} s, "
              f"{o.trials_per_hour:,.0f} trials/h (while work remained: utilization "
              f"{o.utilization_ss:.1%}, {o.trials_per_hour_ss:,.0f} trials/h); optimizer busy {o.optimizer_busy:.1f} s, "
              f"driver busy {o.driver_busy:.2f} s")
    return 0
