"""Optuna's samplers on the farm: a drop-in EQ/Py optimizer (``ALGO=optuna``).

It is how mlrMBO is compared with the best-known Python samplers on the same farm, store and
spaces. Streaming, with Optuna's ask/tell interface and in-memory storage: it asks for as many
points as there are free workers, submits them (``eqpy.submit``), and each time results come back
(``eqpy.results``) tells them and fills the workers that freed up; exactly ``max.budget`` trials
in all. The space is the workflow's ParamHelpers space (``settings["space"]``): numeric and
integer parameters become Float/IntDistributions over their bounds (before the trafo, as
ParamHelpers defines them), discrete ones categorical, logical ones categorical [True, False];
a parameter with a trafo is sampled on its untransformed range and the space file's R trafo is
applied to the points sent (Optuna learns on the untransformed scale, like mlrMBO). A parameter
under ``requires`` is always sampled (as py_random does).

What Optuna is told: a completed trial its objective (minimized); a completed trial whose
objective is not finite (NaN: null; a diverged +-inf) +inf, worse than every finite value; a
failed or timed-out trial FAIL (Optuna's samplers leave those out); a trial the early stopper
(STOPPER) ended PRUNED, with its objective at the stop reported as the intermediate value of
the epoch it reached, as an Optuna pruner's trial would be (TPE ranks pruned trials below every
completed one, by how far they got and their value there, rather than ignoring them).

Settings (SETTINGS="sampler = 'cmaes'" or JSON):
  sampler            'tpe' (default), 'cmaes', 'gp' (needs PyTorch), 'nsga2', 'random', 'qmc'
  n.startup.trials   random trials before the model (tpe, cmaes, gp; Optuna's default otherwise)
  multivariate       tpe: multivariate TPE (default FALSE, Optuna's default)
  constant.liar      tpe: running trials count as bad ones so parallel proposals spread out
                     (default FALSE, Optuna's default)
  population.size    nsga2: the population (default: Optuna's, 50)
  verbose            TRUE (default): a line at the start and one at the end on stderr
  seed               the sampler's seed (the workflow sends one; fixed: the same proposals)
  max.budget         trials in all (the workflow's BUDGET)
Other workflow names (workers, param.set.file, space, propose.points, mode, impute,
keep.models) are accepted and ignored; any other name is refused with the closest known one.
Each sampler runs with Optuna's defaults otherwise.

The final message: {"algorithm", "sampler", "evaluations", "failed", "stopped", "best.y",
"best.x"} with best.x the parameters the pilot received (trafo applied); a stopped trial is never
the best.
"""
import difflib
import math
import os
import sys
import warnings

import eqpy

from emews_py.space import Space

SAMPLERS = ("tpe", "cmaes", "gp", "nsga2", "random", "qmc")
OWN = ("sampler", "n.startup.trials", "multivariate", "constant.liar", "population.size",
       "verbose")
# sent by the workflow (emews_py/cli.py) or meant for the farm or other optimizers
WORKFLOW = ("max.budget", "workers", "seed", "param.set.file", "space", "propose.points", "mode",
            "impute", "keep.models")


def _optuna():
    """``import optuna`` without finding this very file (py_algorithms/optuna.py) should its
    directory be on sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        mod = sys.modules.get("optuna")
        if mod is not None and os.path.abspath(getattr(mod, "__file__", "") or "") == \
                os.path.abspath(__file__):
            del sys.modules["optuna"]
        import optuna
    finally:
        sys.path[:] = saved
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # no line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def check_names(settings: dict) -> None:
    bad = [k for k in settings if k not in OWN and k not in WORKFLOW]
    if not bad:
        return
    what = []
    for b in bad:
        close = difflib.get_close_matches(b, OWN + WORKFLOW, n=1, cutoff=0.6)
        what.append(f"'{b}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ValueError(f"optuna: unknown setting{'s' if len(bad) > 1 else ''} {', '.join(what)}. "
                     f"py_algorithms/optuna.py takes: {', '.join(OWN)} (and the workflow's "
                     f"{', '.join(WORKFLOW)}); what each does is in its docstring. Correct the "
                     f"name in SETTINGS or remove it, e.g. SETTINGS=\"sampler = 'cmaes'\".")


def _int(settings: dict, name: str):
    v = settings.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        raise ValueError(f"optuna: setting {name} = {v!r} must be a whole number >= 0, e.g. "
                         f"SETTINGS=\"{name} = 10\".")
    return int(v)


def _bool(settings: dict, name: str, default: bool = False) -> bool:
    v = settings.get(name, default)
    if not isinstance(v, bool):
        raise ValueError(f"optuna: setting {name} = {v!r} must be TRUE or FALSE.")
    return v


def make_sampler(optuna, settings: dict):
    name = settings.get("sampler", "tpe")
    if not isinstance(name, str) or name.lower() not in SAMPLERS:
        raise ValueError(f"optuna: setting sampler = {name!r} is not one of Optuna's samplers "
                         f"here; choose sampler = one of {', '.join(repr(s) for s in SAMPLERS)} "
                         f"(default 'tpe'), e.g. SETTINGS=\"sampler = 'cmaes'\".")
    name = name.lower()
    seed = settings.get("seed")
    seed = None if seed is None else int(seed)
    startup = _int(settings, "n.startup.trials")
    kw = {} if startup is None else {"n_startup_trials": startup}
    s = optuna.samplers
    if name == "tpe":
        return name, s.TPESampler(seed=seed, multivariate=_bool(settings, "multivariate"),
                                  constant_liar=_bool(settings, "constant.liar"), **kw)
    if name == "cmaes":
        return name, s.CmaEsSampler(seed=seed, **kw)
    if name == "gp":
        try:
            import torch  # noqa: F401 - Optuna's GPSampler is built on it
        except ImportError:
            raise ValueError("optuna: sampler = 'gp' needs PyTorch, which is not installed: "
                             "`.venv/bin/pip install torch` (CPU wheels suffice), or choose "
                             "another sampler (" + ", ".join(SAMPLERS) + ").") from None
        return name, s.GPSampler(seed=seed, **kw)
    if name == "nsga2":
        pop = _int(settings, "population.size")
        return name, s.NSGAIISampler(seed=seed, **({} if pop is None else
                                                   {"population_size": pop}))
    if name == "qmc":
        return name, s.QMCSampler(seed=seed)
    return name, s.RandomSampler(seed=seed)


def distributions(optuna, space: Space) -> dict:
    d = optuna.distributions
    out = {}
    for p in space.params:
        t = p["type"]
        if t == "numeric":
            out[p["id"]] = d.FloatDistribution(float(p["lower"]), float(p["upper"]))
        elif t == "integer":
            out[p["id"]] = d.IntDistribution(int(p["lower"]), int(p["upper"]))
        elif t == "discrete":
            out[p["id"]] = d.CategoricalDistribution(list(p["values"]))
        else:
            out[p["id"]] = d.CategoricalDistribution([True, False])
    return out


def finite_or_worst(y) -> float:
    y = math.inf if y is None else float(y)
    return y if math.isfinite(y) else math.inf   # NaN and +-inf: worse than every finite value


def told_value(r: dict):
    """What Optuna is told of a completed result ``r``: a number, or None for FAIL."""
    if r.get("status") != "completed":
        return None
    return finite_or_worst(r.get("objective"))


def run():
    settings = eqpy.settings()
    check_names(settings)
    optuna = _optuna()
    name, sampler = make_sampler(optuna, settings)
    space = Space(settings["space"])
    dists = distributions(optuna, space)
    budget = int(settings["max.budget"])
    free = max(1, int(settings.get("workers") or 1))
    study = optuna.create_study(direction="minimize", sampler=sampler)   # in memory
    say = sys.stderr.write if _bool(settings, "verbose", True) else (lambda text: None)
    say(f"optuna {optuna.__version__}: {name} sampler, {len(dists)} parameters, "
        f"budget {budget}, seed {settings.get('seed')}\n")
    pending, sent = {}, {}     # trial id -> Optuna trial; trial id -> the point the pilot got
    submitted, failed, stopped, best_y, best_x = 0, 0, 0, math.inf, None
    while submitted < budget or pending:
        n = min(free if pending else max(free, 1), budget - submitted)
        if n > 0:
            asked = [study.ask(dists) for _ in range(n)]
            points = space.transform([dict(t.params) for t in asked])
            ids = eqpy.submit(points)
            pending.update(zip(ids, asked))
            sent.update(zip(ids, points))
            submitted += n
        rep = eqpy.results(1)
        for r in rep["results"]:
            trial = pending.pop(r["id"], None)
            if trial is None:
                continue
            if r.get("status") == "stopped":
                stopped += 1
                trial.report(finite_or_worst(r.get("objective")), step=int(r.get("stopped_epoch") or 0))
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            y = told_value(r)
            if y is None:
                failed += 1
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            study.tell(trial, y)
            if y < best_y:
                best_y, best_x = y, sent[r["id"]]
        free = int(rep.get("free", len(rep["results"])))
    say(f"optuna: {submitted} evaluated ({failed} failed, {stopped} stopped), best {best_y:.6g}\n")
    eqpy.done({"algorithm": "optuna", "sampler": name, "evaluations": submitted,
               "failed": failed, "stopped": stopped,
               "best.y": best_y if best_x is not None else None,
               "best.x": best_x})
