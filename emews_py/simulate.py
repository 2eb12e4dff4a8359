"""``emews simulate``: run an optimizer against a simulated farm, in seconds, without MPI.

    emews simulate ALGO --function branin|hartmann6|mixed [--budget 100] [--workers 8]
                   [--seed N] [--settings "..."] [--repeat K]

ALGO is found as for ``emews workflow`` (``r_algorithms/NAME.R``, ``py_algorithms/NAME.py`` or a
path). Both kinds run unmodified against eq/R/sim.R, the one implementation of the simulated
farm's rules (protocol answers, W workers, random trial durations in simulated time, trials
evaluated on the bench functions): an R optimizer in the embedded R exactly as the optimizer
process runs it, a Python one with eqpy connected to the same simulated farm. The settings are
what the real farm sends (max.budget, workers, seed, param.set.file; plus "space" for Python),
with SETTINGS on top. Printed per run: evaluations, best objective, regret (best found minus
the function's known minimum), and proposal time per request (wall time the optimizer spent
between receiving an answer and sending its next points).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

from emews_py import eq, rbridge
from emews_py.cli import UsageError, find_algorithm, parse_settings
from emews_py.space import SpaceError, load_space
from emews_py.trials import TrialStatus

FUNCTIONS = ("branin", "hartmann6", "mixed")


def space_file(function: str) -> Path:
    return rbridge.REPO_ROOT / "workflows" / f"bench_{function}.R"


class OptimizerFailed(Exception):
    pass


def run_once(algo: Path, settings: dict, space: dict, workers: int, seed: int) -> dict:
    """One simulated run; returns fake_eq_report's dict plus the wall time."""
    t0 = time.perf_counter()
    if algo.suffix == ".R":
        farm = rbridge.SimFarm(rbridge.r_settings_text(settings), workers, seed + 1000)
        err = farm.run_r(algo)
    else:
        from emews_py.optimizer import load_py
        farm = rbridge.SimFarm(json.dumps(dict(settings, space=space)), workers, seed + 1000)
        prev = eq.install(farm)
        try:
            load_py(algo).run()
            err = ""
        except BaseException:  # noqa: BLE001 - the optimizer's own error, reported as such
            err = f"Error in Python optimizer {algo}:\n{traceback.format_exc()}"
        finally:
            eq.install(prev)
    if err:
        raise OptimizerFailed(err)
    rep = farm.report()
    rep["wall_s"] = time.perf_counter() - t0
    return rep


def summarize(rep: dict, minimum: float) -> dict:
    tr = rep["trials"]
    ys = [y for y, st in zip(tr["objective"], tr["status"])
          if st == TrialStatus.COMPLETED and y is not None]
    best = min(ys) if ys else math.nan
    prop = rep["proposal_s"]
    return {"evaluations": len(tr["id"]), "failed": len(tr["id"]) - len(ys), "best": best,
            "regret": best - minimum, "proposals": len(prop),
            "prop_median": statistics.median(prop) if prop else math.nan,
            "prop_max": max(prop) if prop else math.nan,
            "utilization": rep.get("utilization") or math.nan, "wall_s": rep["wall_s"],
            "ended": rep["state"] == "closed"}


def cmd_simulate(a: argparse.Namespace) -> int:
    try:
        if a.function not in FUNCTIONS:
            raise UsageError(f"unknown --function '{a.function}': the simulated farm evaluates the "
                             f"bench pilot's functions {', '.join(FUNCTIONS)} (spaces in "
                             f"workflows/bench_*.R). Choose one of them.")
        for name in ("budget", "workers", "repeat"):
            if getattr(a, name) < 1:
                raise UsageError(f"--{name} {getattr(a, name)}: give a whole number >= 1.")
        algo = find_algorithm(a.algo)
        user = parse_settings(a.settings)
        sfile = space_file(a.function)
        space = load_space(sfile)
    except (UsageError, SpaceError) as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    minimum = rbridge.sim_minima()[a.function]
    lang = "R" if algo.suffix == ".R" else "Python"
    seeds = [a.seed + i for i in range(a.repeat)]
    print(f"[simulate] {algo.stem} ({lang}, {algo}) on {a.function} (known minimum {minimum:.6g}): "
          f"budget {a.budget}, {a.workers} simulated workers, seed(s) "
          f"{', '.join(map(str, seeds))}", flush=True)
    rows = []
    for seed in seeds:
        settings = {"max.budget": a.budget, "workers": a.workers, "seed": seed,
                    "param.set.file": str(sfile)}
        settings.update(user)
        settings["max.budget"] = a.budget
        try:
            rows.append(summarize(run_once(algo, settings, space, a.workers, seed), minimum))
        except OptimizerFailed as e:
            sys.stderr.write(f"emews: error: the optimizer {algo} stopped with an error "
                             f"(seed {seed}):\n{e}\n")
            return 1
        except rbridge.RError as e:
            sys.stderr.write(f"emews: error: the optimizer {algo} broke the EQ protocol "
                             f"(seed {seed}): {e}\n")
            return 1
    head = (f"{'run':>3} {'seed':>5} {'evaluations':>11} {'failed':>6} {'best':>12} {'regret':>12} "
            f"{'proposals':>9} {'prop_median_s':>13} {'prop_max_s':>10} {'utilization':>11} "
            f"{'wall_s':>7}")
    print(head)
    for i, (seed, r) in enumerate(zip(seeds, rows), 1):
        print(f"{i:>3} {seed:>5} {r['evaluations']:>11} {r['failed']:>6} {r['best']:>12.6g} "
              f"{r['regret']:>12.6g} {r['proposals']:>9} {r['prop_median']:>13.4f} "
              f"{r['prop_max']:>10.4f} {r['utilization']:>11.2f} {r['wall_s']:>7.1f}")
    for seed, r in zip(seeds, rows):
        if not r["ended"]:
            print(f"warning: seed {seed}: the optimizer returned without sending DONE and a final "
                  f"message (the real farm would end the experiment with a warning)")
    regrets = [r["regret"] for r in rows]
    prop = [r["prop_median"] for r in rows if not math.isnan(r["prop_median"])]
    print(f"regret: median {statistics.median(regrets):.6g} over {len(rows)} run(s) "
          f"(best found minus {minimum:.6g}); evaluations: "
          f"{', '.join(str(r['evaluations']) for r in rows)}; proposal time per request: median "
          f"{statistics.median(prop) if prop else math.nan:.4f} s, max "
          f"{max(r['prop_max'] for r in rows):.4f} s")
    return 0


def add_parser(sub) -> None:
    """Register ``emews simulate`` on the CLI's subparsers."""
    s = sub.add_parser("simulate", help="run an optimizer against a simulated farm (no MPI), "
                                        "print regret and proposal times",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("algo", help="r_algorithms/NAME.R, py_algorithms/NAME.py, or a path")
    s.add_argument("--function", default="branin", help="branin, hartmann6 or mixed")
    s.add_argument("--budget", type=int, default=100, help="evaluations (max.budget)")
    s.add_argument("--workers", type=int, default=8, help="simulated workers")
    s.add_argument("--seed", type=int, default=1, help="seed of the first run")
    s.add_argument("--settings", default="", help="algorithm settings, R argument text or JSON")
    s.add_argument("--repeat", type=int, default=1, help="runs, with seeds seed, seed+1, ...")
    s.set_defaults(func=cmd_simulate)
