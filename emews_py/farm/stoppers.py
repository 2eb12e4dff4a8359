"""Early stopping from epoch events (``STOPPER``): the rules, pure, fed ``(trial, epoch, value)``.

Rank 0 feeds every ``epoch_end`` event of a running trial to ``Stopper.observe``; a True answer
means "stop this training now" (the driver tells the trial's worker, the Keras callback ends the
training at the next epoch boundary, the trial is stored ``stopped``). No MPI, no store, no clock:
every rule is unit-tested on hand-made curves (tests/test_stoppers.py). docs/stopping.md says how
each rule decides, with its settings.

Lower values are better (``mode = min``, a validation loss); ``mode = max`` negates them. ``None``
or NaN (the training diverged: its weights are NaN and stay so) stops the trial at once, with
either rule and before any grace (as Keras' TerminateOnNaN); it counts as worse than every number
for its peers. ``epoch`` is 0-based as in the events; "n epochs" below counts from 1
(``n = epoch + 1``).

* ``asha``: asynchronous successive halving (Li et al., ASHA; as Ray Tune's ASHAScheduler in its
  stopping form). Rungs at ``max(1, grace) * eta**k`` epochs. A trial reaching a rung records its
  best value so far there and continues only if that value is within the best ``1/eta`` of the
  values recorded at that rung before it (their ``1/eta`` quantile), once at least ``min_peers``
  were recorded; the first trials at a rung always continue, and no trial waits for a rung to
  fill.
* ``median``: the median stopping rule (Golovin et al., Google Vizier). After ``grace`` epochs, a
  trial at epoch n stops if its best value so far is worse than the median, over the other trials
  that reported epoch n (running or finished, at least ``min_peers`` of them), of their running
  averages up to epoch n.
"""
from __future__ import annotations

import json
import math
import re

RULES = ("asha", "median")
# What each rule takes, with its default; `metric` None means the pilot's (pilot_epoch_metric).
DEFAULTS = {
    "asha": {"eta": 3.0, "grace": 1, "min_peers": 1, "metric": None, "mode": "min"},
    "median": {"grace": 1, "min_peers": 3, "metric": None, "mode": "min"},
}
OFF = ("", "none", "off", "0", "false", "no")


class StopperError(ValueError):
    """A STOPPER setting that cannot be used; the message is one paragraph for users."""


def _value(text: str):
    """A setting's value as written after '=': a number if it reads as one, else the text."""
    t = text.strip()
    try:
        f = float(t)
    except ValueError:
        return t
    return int(f) if re.fullmatch(r"[+-]?\d+", t) else f


def parse(text: str | None) -> dict | None:
    """``STOPPER`` as given (``asha``, ``median:grace=2,min_peers=4``, or a JSON object
    ``{"rule": "asha", "eta": 3}``) -> the full, checked settings dict, or None for no stopper.
    Raises StopperError naming the setting and the fix. Nothing is ever evaluated."""
    t = (text or "").strip()
    if t.lower() in OFF:
        return None
    if t.startswith("{"):
        try:
            given = json.loads(t)
        except json.JSONDecodeError as e:
            raise StopperError(f"STOPPER={t!r} looks like JSON but is not valid ({e}). Write e.g. "
                               f"STOPPER='{{\"rule\": \"asha\", \"eta\": 3}}' or "
                               f"STOPPER=asha:eta=3.") from None
        if not isinstance(given, dict):
            raise StopperError(f"STOPPER={t!r} must be a JSON object with a \"rule\".")
        given = dict(given)
        rule = str(given.pop("rule", ""))
    else:
        rule, _, rest = t.partition(":")
        given = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            k, eq, v = part.partition("=")
            if not eq or not k.strip():
                raise StopperError(f"STOPPER={t!r}: {part!r} is not a setting: write name=value "
                                   f"pairs after the rule, separated by commas, e.g. "
                                   f"STOPPER=asha:eta=3,grace=1.")
            given[k.strip()] = _value(v)
    rule = rule.strip().lower()
    if rule not in RULES:
        raise StopperError(f"STOPPER={t!r}: unknown stopper {rule!r}. Use STOPPER=asha "
                           f"(asynchronous successive halving on epochs) or STOPPER=median (the "
                           f"median stopping rule), optionally with settings, e.g. "
                           f"STOPPER=asha:eta=3,grace=1 (docs/stopping.md); leave STOPPER out to "
                           f"train every trial to its last epoch.")
    known = DEFAULTS[rule]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise StopperError(f"STOPPER={t!r}: {', '.join(unknown)} is not a setting of the {rule} "
                           f"stopper; it takes {', '.join(known)} (docs/stopping.md). Fix the "
                           f"name or remove it.")
    spec = {"rule": rule, **known, **given}
    check(spec, t)
    return spec


def _number(spec: dict, name: str, text: str, what: str, ok, integer: bool):
    v = spec[name]
    good = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and (not integer or float(v).is_integer()) and ok(v)
    if not good:
        raise StopperError(f"STOPPER={text!r}: {name} = {v!r} is not valid: {name} is {what}. "
                           f"Fix it (e.g. STOPPER={spec['rule']}:{name}="
                           f"{DEFAULTS[spec['rule']][name]:g}) or leave it out for the default "
                           f"({DEFAULTS[spec['rule']][name]:g}).")
    return int(v) if integer else float(v)


def check(spec: dict, text: str = "") -> None:
    text = text or json.dumps(spec)
    if "eta" in spec:
        spec["eta"] = _number(spec, "eta", text, "the reduction factor, a number greater than 1 "
                              "(a trial must be in the best 1/eta at each rung)", lambda v: v > 1,
                              False)
    spec["grace"] = _number(spec, "grace", text, "the number of epochs every trial runs before "
                            "it can be stopped, a whole number >= 0", lambda v: v >= 0, True)
    spec["min_peers"] = _number(spec, "min_peers", text, "how many other trials must have "
                                "reached an epoch before a trial can be stopped there, a whole "
                                "number >= 1", lambda v: v >= 1, True)
    if spec["mode"] not in ("min", "max"):
        raise StopperError(f"STOPPER={text!r}: mode = {spec['mode']!r}: use mode=min (lower is "
                           f"better, a loss: the default) or mode=max (an accuracy).")
    if spec["metric"] is not None and (not isinstance(spec["metric"], str) or not spec["metric"]):
        raise StopperError(f"STOPPER={text!r}: metric = {spec['metric']!r} must be the name of a "
                           f"value in the pilot's epoch_end events, e.g. metric=val_loss.")


def describe(spec: dict) -> str:
    """One line for the log: the rule and its settings."""
    keys = [k for k in DEFAULTS[spec["rule"]] if k != "metric" and (k != "mode" or spec[k] != "min")]
    return f"{spec['rule']} ({', '.join(f'{k}={spec[k]:g}' if isinstance(spec[k], (int, float)) else f'{k}={spec[k]}' for k in keys)})"


def quantile(xs: list[float], q: float) -> float:
    """The q-quantile of xs with linear interpolation (numpy's default); infinities allowed."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    if lo == hi or s[lo] == s[hi]:
        return s[lo]
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: list[float]) -> float:
    return quantile(xs, 0.5)


class _Curve:
    __slots__ = ("values", "sums", "best", "stopped")

    def __init__(self):
        self.values: list[float] = []   # the metric at epochs 0, 1, ... (lower is better)
        self.sums: list[float] = []     # running sums, for running averages
        self.best = math.inf
        self.stopped = False


class Stopper:
    """Feed ``observe(trial, epoch, value)`` with each epoch's value of each trial; it answers
    True once per trial to stop, with ``reasons[trial]`` saying why (stored with the trial)."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.grace = spec["grace"]
        self.min_peers = spec["min_peers"]
        self.sign = -1.0 if spec["mode"] == "max" else 1.0
        self.curves: dict[int, _Curve] = {}
        self.reasons: dict[int, str] = {}
        self.metric = spec.get("metric") or "the metric"

    def observe(self, trial: int, epoch: int, value) -> bool:
        v = math.inf if value is None else self.sign * float(value)
        diverged = math.isnan(v) or value is None
        if diverged:
            v = math.inf
        c = self.curves.get(trial)
        if c is None or epoch < len(c.values):  # new, or run again from the start (a resume)
            c = self.curves[trial] = _Curve()
        c.values.append(v)
        c.sums.append((c.sums[-1] if c.sums else 0.0) + v)
        c.best = min(c.best, v)
        n = len(c.values)
        if c.stopped:
            return False
        why = (f"{self.spec['rule']}: its {self.metric} was NaN after {n} epoch(s): the training "
               f"diverged") if diverged else self.decide(trial, c, n)
        if why is None:
            return False
        c.stopped = True
        self.reasons[trial] = why
        return True

    def decide(self, trial: int, c: _Curve, n: int) -> str | None:
        raise NotImplementedError

    def shown(self, v: float) -> str:
        return f"{self.sign * v:.6g}"


class Asha(Stopper):
    def __init__(self, spec: dict):
        super().__init__(spec)
        self.eta = spec["eta"]
        self.base = max(1, self.grace)
        self.rungs: dict[int, list[float]] = {}   # rung (epochs) -> best-so-far values recorded

    def is_rung(self, n: int) -> bool:
        m = float(self.base)
        while round(m) < n:
            m *= self.eta
        return round(m) == n

    def decide(self, trial: int, c: _Curve, n: int) -> str | None:
        if not self.is_rung(n):
            return None
        prior = self.rungs.setdefault(n, [])
        verdict = None
        if len(prior) >= self.min_peers:
            cut = quantile(prior, 1.0 / self.eta)
            if c.best > cut:
                verdict = (f"asha: after {n} epoch(s) its best {self.metric} {self.shown(c.best)} "
                           f"was not in the best 1/{self.eta:g} of the {len(prior)} trial(s) that "
                           f"reached this rung before it (cutoff {self.shown(cut)})")
        prior.append(c.best)
        return verdict


class Median(Stopper):
    def decide(self, trial: int, c: _Curve, n: int) -> str | None:
        if n < max(1, self.grace):
            return None
        peers = [p.sums[n - 1] / n for t, p in self.curves.items()
                 if t != trial and len(p.values) >= n]
        if len(peers) < self.min_peers:
            return None
        m = median(peers)
        if c.best > m:
            return (f"median: after {n} epoch(s) its best {self.metric} {self.shown(c.best)} was "
                    f"worse than the median {self.shown(m)} of the running averages of the "
                    f"{len(peers)} other trial(s) at that epoch")
        return None


def judged(metrics: dict | None, metric: str) -> bool:
    """Does an epoch_end event with these metrics count for the stopper? It must carry ``metric``;
    a pilot training several folds per trial numbers its epochs on across them, so only fold 0
    is judged (the driver live, replay.epoch_history on a resume)."""
    m = metrics or {}
    return metric in m and not (m.get("fold") or 0)


def make(spec: dict) -> Stopper:
    return {"asha": Asha, "median": Median}[spec["rule"]](spec)
