"""``emews workflow``: check the inputs, make the run directory, launch the MPI farm.

Everything a user can get wrong (pilot, algorithm, space, settings) is checked here, before
``mpiexec`` starts, so a mistake costs seconds and names the file and the fix.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from emews_py import rbridge
from emews_py.config import RunConfig
from emews_py.pilot import PILOTS_DIR, REPO_ROOT, PilotError, read_default_model
from emews_py.space import SpaceError, load_space
from emews_py.trials import ExperimentStatus, TrialStatus

ALGO_DIRS = [REPO_ROOT / "r_algorithms", REPO_ROOT / "py_algorithms"]
DEFAULT_SPACES = {"bench": "bench_branin.R"}
# Default budgets: small enough for a 2-core machine in minutes, large enough that mlrMBO gets
# model-based rounds after its initial design.
DEFAULT_BUDGET = {"bench": 40, "treat": 48, "drug": 48, "ras": 36}


class UsageError(Exception):
    pass


def algorithm_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("EMEWS_ALGORITHM_PATH", "").split(os.pathsep) if p]
    return extra + ALGO_DIRS


def find_algorithm(name: str) -> Path:
    """``ALGO=name`` is r_algorithms/name.R or py_algorithms/name.py; a path to a file works too."""
    p = Path(name)
    if p.suffix in (".R", ".py") and p.is_file():
        return p.resolve()
    for d in algorithm_dirs():
        for ext in (".R", ".py"):
            f = d / f"{name}{ext}"
            if f.is_file():
                return f.resolve()
    avail = sorted({f.stem for d in algorithm_dirs() if d.is_dir() for f in d.iterdir()
                    if f.suffix in (".R", ".py") and not f.name.startswith("_")})
    raise UsageError(f"unknown ALGO '{name}': no r_algorithms/{name}.R or py_algorithms/{name}.py "
                     f"in {REPO_ROOT}. Available: {', '.join(avail)}. Set ALGO to one of them, or drop "
                     f"a new optimizer file into r_algorithms/ (see docs/writing-an-optimizer.md).")


def find_pilot(name: str) -> Path:
    d = PILOTS_DIR / name
    if not (d / "__init__.py").is_file():
        avail = sorted(p.name for p in PILOTS_DIR.iterdir()
                       if (p / "__init__.py").is_file() and not p.name.startswith("_"))
        raise UsageError(f"unknown PILOT '{name}': there is no package pilots/{name}/ in "
                         f"{PILOTS_DIR}. Available: {', '.join(avail)}. Set PILOT to one of them, or "
                         f"add pilots/{name}/ with __init__.py (run(params, ctx)) and "
                         f"{name}_default_model.txt.")
    return d


def default_space(pilot: str) -> Path:
    return REPO_ROOT / "workflows" / DEFAULT_SPACES.get(pilot, f"{pilot}_space.R")


def positive(name: str, given, integer: bool, what: str, example: str) -> float | int:
    """``given`` (text from the command line, or a SETTINGS value) as a number > 0, or a
    UsageError naming the variable, what was given and the fix."""
    text = str(given).strip()
    try:
        value = float(text) if not isinstance(given, bool) else math.nan
    except ValueError:
        value = math.nan
    kind = "a whole number" if integer else "a number"
    if not math.isfinite(value) or value <= 0 or (integer and value != int(value)):
        raise UsageError(f"{name}={text!r} is not valid: {name} is {what} and must be {kind} "
                         f"greater than 0. Give e.g. {name}={example}, or leave it out for the "
                         f"default.")
    return int(value) if integer else value


def parse_settings(text: str) -> dict:
    """User SETTINGS: R argument text (``design.size = 20, mode = 'batch'``) as in CANDLE, or a
    JSON object. R text is evaluated by R (as EMEWS does), never by Python."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"SETTINGS looks like JSON but is not valid ({e}): {text!r}") from None
    try:
        return rbridge.parse_settings(text)
    except rbridge.RError as e:
        raise UsageError(f"SETTINGS {text!r} is not valid R argument text: {e}. Write it as "
                         f"name = value pairs, e.g. SETTINGS=\"design.size = 20, "
                         f"mode = 'batch'\".") from None


def prepare(a: argparse.Namespace) -> tuple[RunConfig, Path]:
    """Check everything and write the run directory's config.json (a ``RunConfig``)."""
    a.pilot, a.algo = a.pilot or "bench", a.algo or "random"  # empty from `make` = the default
    pilot_dir = find_pilot(a.pilot)
    algo = find_algorithm(a.algo)
    model_file = pilot_dir / f"{a.pilot}_default_model.txt"
    defaults = read_default_model(model_file)
    space_file = Path(a.space).resolve() if a.space else default_space(a.pilot)
    space = load_space(space_file)
    unknown = [p["id"] for p in space["params"] if p["id"] not in defaults]
    if unknown:
        raise UsageError(f"search space {space_file} has parameter(s) {', '.join(map(repr, unknown))} "
                         f"that pilot '{a.pilot}' does not know ({model_file} defines: "
                         f"{', '.join(sorted(defaults))}). Rename them in the space file or choose "
                         f"another SPACE.")
    procs = positive("PROCS", a.procs, True, "the number of MPI ranks (one driver plus workers)",
                     "4") if a.procs else 4
    if procs < 2:
        raise UsageError(f"PROCS={procs}: the farm needs a driver and at least one worker; set PROCS=2 or more.")
    mode = a.mode or "resident"
    if mode not in ("resident", "app"):
        raise UsageError(f"MODE={mode!r}: use MODE=resident (trials in resident interpreters) or MODE=app "
                         f"(one subprocess per trial).")
    timeout = positive("TIMEOUT", a.timeout, False, "the per-trial time limit in seconds",
                       "120") if a.timeout else None
    opt_timeout = opt_timeout_of(a)
    stopper = stopper_of(getattr(a, "stopper", ""), a.pilot, pilot_dir, defaults, space)
    user = parse_settings(a.settings)
    if a.budget:
        budget = positive("BUDGET", a.budget, True, "the number of trials", "40")
    elif "max.budget" in user:
        budget = positive("max.budget", user["max.budget"], True,
                          "the number of trials (given in SETTINGS)", "40")
    else:
        budget = DEFAULT_BUDGET.get(a.pilot, 32)
    settings = {"max.budget": budget, "workers": procs - 1, "seed": random.randrange(1, 2**31 - 1),
                "param.set.file": str(space_file)}
    settings.update(user)
    settings["max.budget"] = budget
    impute = settings.pop("impute", None)
    impute = math.nan if impute is None else float(impute)
    keep = int(settings.pop("keep.models", 3))

    exp = a.exp or f"{a.pilot}-{algo.stem}"
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", exp):
        raise UsageError(f"EXP={exp!r}: use letters, digits, '.', '_' and '-' only (it names a directory).")
    from emews_py.store import experiments
    if len(exp) > experiments.c.name.type.length:
        raise UsageError(f"EXP={exp[:40]}... is {len(exp)} characters long; the store keeps experiment "
                         f"names of at most {experiments.c.name.type.length}. Give a shorter EXP.")
    runs_root, db = open_store(a)
    if "warm.start" in settings:
        check_warm_start(settings["warm.start"], db)
    run_dir = new_run_dir(runs_root, exp)
    cfg = RunConfig(exp=exp, pilot=a.pilot, algo=algo.stem, algo_file=str(algo), db=db,
                    run_dir=str(run_dir), endpoint=new_endpoint(), mode=mode, settings=settings,
                    space_file=str(space_file), space_text=space_file.read_text(),
                    space_json=space, timeout=timeout, impute=impute, keep_models=keep,
                    opt_timeout=opt_timeout, store_wait=store_wait_of(), stopper=stopper)
    cfg_file = run_dir / "config.json"
    cfg.write(cfg_file)
    return cfg, cfg_file, procs


def check_warm_start(value, db: str) -> None:
    """SETTINGS warm.start = ID names an experiment of this store (checked before anything
    starts; the optimizer asks for its trials with the EQ history message)."""
    from sqlalchemy import select

    from emews_py.store import experiments, make_engine
    from emews_py.store.engine import shown_url
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value)
    found = None
    if ok:
        eng = make_engine(db)
        try:
            with eng.connect() as c:
                found = c.execute(select(experiments.c.id, experiments.c.pilot)
                                  .where(experiments.c.id == int(value))).first()
        finally:
            eng.dispose()
    if found is None:
        raise UsageError(f"SETTINGS warm.start = {value!r}: the store {shown_url(db)} has no "
                         f"experiment {value!r} to start from. `emews status` lists the "
                         f"experiments there; give warm.start one of their ids, or DB=URL of the "
                         f"store it ran in.")


# What a resume cannot change: the optimizer is restarted as it started and answered from the
# recorded EQ transcript, so it must see the same settings, space, budget and code.
RESUME_FIXED = (("pilot", "PILOT"), ("algo", "ALGO"), ("exp", "EXP"), ("budget", "BUDGET"),
                ("space", "SPACE"), ("settings", "SETTINGS"))


def resume_command(exp_id: int, db: str, default: str | None) -> str:
    """The line that says how to resume ``exp_id`` (DB only when it is not the default store)."""
    from emews_py.store.engine import shown_url
    shown = shown_url(db)
    if db == default:
        return f"make workflow RESUME={exp_id}  (or: emews workflow --resume {exp_id})"
    return (f"make workflow RESUME={exp_id} DB={shown}  (or: emews workflow --resume {exp_id} "
            f"--db {shown})")


def prepare_resume(a: argparse.Namespace) -> tuple[RunConfig, Path, int]:
    """``--resume ID``: the stored RunConfig of experiment ID with a new run directory and EQ
    endpoint, PROCS/MODE/TIMEOUT/OPT_TIMEOUT as given, written like a new run's."""
    import dataclasses

    from emews_py.config import ConfigError
    from emews_py.store import make_engine
    from emews_py.store.engine import shown_url
    from emews_py.store.queries import experiment_status
    stale_after = stale_after_of()
    rid = positive("RESUME", a.resume, True, "the id of the experiment to continue", "3")
    runs_root, db = open_store(a)
    eng = make_engine(db)
    try:
        found = experiment_status(eng, rid)
        with eng.connect() as c:
            from sqlalchemy import func, select

            from emews_py.store import experiments
            config = c.execute(select(experiments.c.config)
                               .where(experiments.c.id == rid)).scalar()
            lo, hi = c.execute(select(func.min(experiments.c.id),
                                      func.max(experiments.c.id))).one()
    finally:
        eng.dispose()
    where, pre = shown_url(db), f"RESUME={rid}:"
    warm = (f"start a new experiment; with ALGO=mlrMBO, SETTINGS=\"warm.start = {rid}\" seeds "
            f"its surrogate with the completed trials of experiment {rid}")
    if not found:
        have = f"its experiments are {lo} to {hi}" if lo is not None else "it has no experiments yet"
        raise UsageError(f"{pre} the store {where} has no experiment {rid} ({have}). "
                         f"`emews status --db URL` lists them; give the store the experiment ran "
                         f"in with DB=URL (--db URL).")
    x = found[0]
    name = f"experiment {rid} '{x['name']}'"
    if config is None:
        raise UsageError(f"{pre} {name} was recorded before schema version 0002 and has no stored "
                         f"configuration (experiments.config is NULL), so it cannot be resumed: a "
                         f"resume restarts its optimizer exactly as it started. Instead, {warm}.")
    if x["status"] == "completed":
        raise UsageError(f"{pre} {name} completed ({x['completed']} trials completed, its "
                         f"optimizer finished); there is nothing to resume. To search further, "
                         f"{warm}.")
    seg = x["segments"][-1] if x["segments"] else {}
    if x["status"] == "running" and not x["stale"] and not _dead_here(seg):
        age = x["alive_age_s"] or 0.0
        raise UsageError(f"{pre} {name} is still running: its last sign of life is {age:.0f} s "
                         f"old (segment {seg.get('number', 1)} on host {seg.get('host') or '?'}, "
                         f"pid {seg.get('pid') or '?'}, run directory "
                         f"{seg.get('run_dir') or x['run_dir']}). A resume continues a job that is "
                         f"gone: stop this one first (Ctrl-C, scancel, or kill -TERM of its "
                         f"mpiexec), or, if it died, wait: `emews status` shows it stale "
                         f"{stale_after:.0f} s after its last heartbeat.")
    try:
        stored = RunConfig.from_dict(config)
    except (ConfigError, TypeError) as e:
        raise UsageError(f"{pre} the configuration stored with {name} cannot be read by this "
                         f"emews-py ({e}); resume it with the release that started it, or "
                         f"{warm}.") from None
    algo_name = Path(stored.algo_file).stem
    same = {"pilot": (stored.pilot,), "algo": (stored.algo, algo_name, stored.algo_file),
            "exp": (stored.exp,)}
    changed = [f"{var}={getattr(a, attr)!r}" for attr, var in RESUME_FIXED
               if getattr(a, attr) and getattr(a, attr) not in same.get(attr, ())]
    if changed:
        raise UsageError(f"{pre} {' and '.join(changed)} cannot be given when resuming {name}: a "
                         f"resume restarts its optimizer with the pilot, algorithm, space, budget "
                         f"and settings it started with and answers it from the recorded EQ "
                         f"transcript, so any change would make the optimizer diverge from what it "
                         f"did. Leave them out (PROCS, MODE, TIMEOUT and OPT_TIMEOUT may change). "
                         f"To change them, {warm}.")
    if not Path(stored.algo_file).is_file():
        raise UsageError(f"{pre} the optimizer {stored.algo_file} that {name} ran is gone; put it "
                         f"back (the same code: its messages are checked against the transcript) "
                         f"to resume, or {warm}.")
    last = x["segments"][-1] if x["segments"] else {}
    procs = (positive("PROCS", a.procs, True, "the number of MPI ranks (one driver plus workers)",
                      "4") if a.procs else
             last.get("procs") or (x["workers"] + 1 if x["workers"] else
                                   int(stored.settings.get("workers", 3)) + 1))
    if procs < 2:
        raise UsageError(f"PROCS={procs}: the farm needs a driver and at least one worker; set "
                         f"PROCS=2 or more.")
    mode = a.mode or stored.mode
    if mode not in ("resident", "app"):
        raise UsageError(f"MODE={mode!r}: use MODE=resident (trials in resident interpreters) or "
                         f"MODE=app (one subprocess per trial).")
    timeout = positive("TIMEOUT", a.timeout, False, "the per-trial time limit in seconds",
                       "120") if a.timeout else stored.timeout
    stopper = stored.stopper
    if getattr(a, "stopper", ""):   # STOPPER may change on a resume, as TIMEOUT (off: 'none')
        pdir = find_pilot(stored.pilot)
        stopper = stopper_of(a.stopper, stored.pilot, pdir,
                             read_default_model(pdir / f"{stored.pilot}_default_model.txt"),
                             stored.space_json or {})
    run_dir = new_run_dir(runs_root, f"{stored.exp}-resume{rid}")
    settings, space_file = dict(stored.settings), stored.space_file
    sf = Path(space_file) if space_file else None
    if stored.space_text is not None and not (sf and sf.is_file()
                                              and sf.read_text() == stored.space_text):
        # The optimizer reads param.set.file: give it the space it started with.
        sf = run_dir / f"space{sf.suffix if sf else '.R'}"
        sf.write_text(stored.space_text)
        print(f"[emews] the space file {space_file} is gone or changed since experiment {rid} "
              f"started; using the copy stored with it: {sf}", flush=True)
        space_file = str(sf)
        if "param.set.file" in settings:
            settings["param.set.file"] = space_file
    cfg = dataclasses.replace(stored, db=db, run_dir=str(run_dir), endpoint=new_endpoint(),
                              mode=mode, timeout=timeout, settings=settings,
                              space_file=space_file, resume=rid,
                              opt_timeout=opt_timeout_of(a, stored.opt_timeout),
                              store_wait=store_wait_of(), stopper=stopper)
    cfg_file = run_dir / "config.json"
    cfg.write(cfg_file)
    print(f"[emews] resuming experiment {rid} '{stored.exp}' ({x['shown']}: {x['completed']} of "
          f"{x['budget']} trials completed)", flush=True)
    return cfg, cfg_file, procs


def pilot_epoch_metric(pilot_dir: Path) -> tuple[str, str | None] | None:
    """Whether a pilot reports epoch_end events, read from its source (importing it would import
    Keras): (the value a stopper watches, the parameter that must be > 0 for events, or None), or
    None. A pilot says so with ``EPOCH_METRIC = "name"`` (and ``EPOCHS_PARAM = "param"``) at
    module level, or by training with the pilot kit's Keras callbacks (``callbacks_for``,
    ``StoreCallback``), which report Keras' ``val_loss``."""
    import ast
    try:
        tree = ast.parse((pilot_dir / "__init__.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    names: dict = {}
    uses_callbacks = False
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("EPOCH_METRIC", "EPOCHS_PARAM") \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            names[node.targets[0].id] = node.value.value
        if isinstance(node, ast.ImportFrom) and node.module in ("emews_py.pilotkit.keras",
                                                                 "emews_py.keras_callbacks"):
            uses_callbacks |= any(n.name in ("callbacks_for", "StoreCallback") for n in node.names)
    if "EPOCH_METRIC" in names:
        return names["EPOCH_METRIC"], names.get("EPOCHS_PARAM")
    return ("val_loss", None) if uses_callbacks else None


def stopper_of(text: str, pilot: str, pilot_dir: Path, defaults: dict, space: dict) -> dict | None:
    """STOPPER (``--stopper``) checked against the pilot: the settings for RunConfig, or None."""
    from emews_py.farm.stoppers import StopperError, parse
    try:
        spec = parse(text)
    except StopperError as e:
        raise UsageError(str(e)) from None
    if spec is None:
        return None
    found = pilot_epoch_metric(pilot_dir)
    shown = f"STOPPER={text.strip()!r}"
    if found is None:
        raise UsageError(f"{shown}: pilot '{pilot}' reports no epoch_end events, and a stopper "
                         f"judges a training by the values it reports at each epoch end. A Keras "
                         f"pilot reports them when it trains with emews_py.pilotkit.keras's "
                         f"callbacks_for(ctx) (or StoreCallback); a pilot that reports them "
                         f"itself (ctx.event('epoch_end', epoch=e, NAME=value)) says so with "
                         f"EPOCH_METRIC = 'NAME' in {pilot_dir / '__init__.py'}. Leave STOPPER out "
                         f"for this pilot, or make it report epochs (docs/stopping.md).")
    metric, epochs_param = found
    if epochs_param:
        in_space = any(p["id"] == epochs_param for p in space.get("params", []))
        try:
            default = float(defaults.get(epochs_param) or 0)
        except (TypeError, ValueError):
            default = 0.0
        if not in_space and default <= 0:
            raise UsageError(f"{shown}: pilot '{pilot}' reports epoch_end events only when its "
                             f"parameter {epochs_param} is greater than 0, and here it is "
                             f"{defaults.get(epochs_param)!r} (its default; the search space does "
                             f"not set it), so no trial could be judged. Add {epochs_param} to the "
                             f"search space (e.g. a discrete parameter with one value, 10), or "
                             f"leave STOPPER out.")
    spec["metric"] = spec["metric"] or metric
    return spec


def opt_timeout_of(a: argparse.Namespace, default: float = RunConfig.opt_timeout) -> float:
    return positive("OPT_TIMEOUT", a.opt_timeout, False, "how long, in seconds, the optimizer may "
                    "send nothing while every worker is idle before the run fails", "3600") \
        if a.opt_timeout else default


def store_wait_of() -> float:
    """How long a store that went away mid-run is waited for before the run stops (resumable):
    $EMEWS_STORE_WAIT seconds, default 10 min."""
    v = os.environ.get("EMEWS_STORE_WAIT", "")
    return positive("EMEWS_STORE_WAIT", v, False, "how long, in seconds, the run waits for a "
                    "store that went away before it stops", "600") if v else RunConfig.store_wait


def stale_after_of() -> float:
    """$EMEWS_STALE_AFTER_S (store.queries.stale_after_s), a bad value as a UsageError."""
    from emews_py.store.queries import stale_after_s
    try:
        return stale_after_s()
    except ValueError as e:
        raise UsageError(str(e)) from None


def default_db(a: argparse.Namespace | None = None) -> str:
    """DB as given, else the default store (RUNS/emews.db); with no arguments, the store a plain
    `make workflow` here uses (resume hints name DB only when it is another one)."""
    a = a or argparse.Namespace(db="", runs="")
    runs_root = Path(getattr(a, "runs", "") or os.environ.get("EMEWS_RUNS", "runs")).resolve()
    return a.db or f"sqlite:///{runs_root / 'emews.db'}"


def open_store(a: argparse.Namespace) -> tuple[Path, str]:
    """(where run directories go, the store's URL), the store opened (created or upgraded) once,
    before anything starts: a store that cannot be opened would leave the workers waiting."""
    from emews_py.store.engine import StoreUnavailable, check_store
    runs_root = Path(a.runs or os.environ.get("EMEWS_RUNS", "runs")).resolve()
    db = default_db(a)
    if not a.db:
        runs_root.mkdir(parents=True, exist_ok=True)  # the default store lives there
    try:
        check_store(db)
    except StoreUnavailable as e:
        raise UsageError(str(e)) from None
    return runs_root, db


def new_run_dir(runs_root: Path, name: str) -> Path:
    run_dir = runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{uuid.uuid4().hex[:4]}"
    run_dir.mkdir(parents=True)
    return run_dir


def new_endpoint() -> str:
    # ipc:// paths are limited to ~100 bytes, so the socket lives in the temp dir, not the run dir.
    return f"ipc://{tempfile.gettempdir()}/emews-{uuid.uuid4().hex[:12]}.sock"


def launcher(procs: int, hosts: list[str] | None = None) -> list[str]:
    """``mpiexec [HOSTS] -n PROCS`` by default; a site can set EMEWS_LAUNCHER, e.g.
    'srun -n {procs}'. ``hosts``: mpiexec's arguments naming the hosts (``hosts_of``)."""
    tmpl = os.environ.get("EMEWS_LAUNCHER")
    if tmpl:
        return [w.replace("{procs}", str(procs)) for w in shlex.split(tmpl)]
    return [default_mpiexec(), *(hosts or []), "-n", str(procs)]


HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$")


def _host_entry(entry: str, where: str) -> int | None:
    """Check one ``host[:count]``; returns its count (None: no count given)."""
    name, _, count = entry.partition(":")
    if not HOST_NAME.match(name) or (count and not (count.isdigit() and int(count) > 0)):
        raise UsageError(f"{where}: {entry!r} is not a host name with an optional number of "
                         f"ranks, `host` or `host:count` (letters, digits, `._-`; count a positive "
                         f"integer), e.g. HOSTS=node1:4,node2:4 or HOSTS=./hostfile.")
    return int(count) if count else None


def hosts_of(a: argparse.Namespace) -> list[str]:
    """HOSTS (``--hosts``): where mpiexec starts the ranks, for a run across hosts without a batch
    system. ``node1:4,node2:4`` (host and ranks on it; rank 0, the driver, on the first host)
    becomes ``-hosts node1:4,node2:4``; a file (a path with a ``/``, or an existing file) holding
    one ``host[:count]`` per line becomes ``-f FILE``. When every host has a count and PROCS is
    not given, PROCS is their sum. Returns mpiexec's arguments ([] without HOSTS)."""
    value = (getattr(a, "hosts", "") or "").strip()
    if not value:
        return []
    if getattr(a, "site", ""):
        raise UsageError(f"HOSTS={value!r} given with SITE={a.site}: in a batch job the batch "
                         f"system chooses the nodes (NODES, PPN) and mpiexec finds them. Leave "
                         f"HOSTS out with SITE, or leave SITE out to run here across HOSTS.")
    if os.environ.get("EMEWS_LAUNCHER"):
        raise UsageError(f"HOSTS={value!r} given while EMEWS_LAUNCHER is set "
                         f"({os.environ['EMEWS_LAUNCHER']!r}), which replaces mpiexec and its "
                         f"host arguments. Put the hosts into EMEWS_LAUNCHER, or unset it to let "
                         f"HOSTS reach the venv's mpiexec.")
    if "/" in value or os.path.isfile(value):
        path = Path(value).resolve()
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"HOSTS={value!r}: the host file cannot be read ({e}). Give a file "
                             f"with one `host[:count]` per line, or a list HOSTS=node1:4,node2:4."
                             ) from None
        entries = [ln.split("#", 1)[0].split()[0] for ln in lines if ln.split("#", 1)[0].strip()]
        where, args = f"HOSTS file {path}", ["-f", str(path)]
    else:
        entries = value.split(",")
        where, args = f"HOSTS={value!r}", ["-hosts", value]
    if not entries:
        raise UsageError(f"{where} names no host: give one `host[:count]` per line (rank 0, the "
                         f"driver, runs on the first).")
    counts = [_host_entry(e, where) for e in entries]
    if not a.procs and all(c is not None for c in counts):
        a.procs = str(sum(counts))
    return args


def default_mpiexec() -> str:
    """The venv's mpiexec (MPICH from PyPI, the MPI mpi4py was built with), else PATH's."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    return str(mpiexec) if mpiexec.exists() else (shutil.which("mpiexec") or "mpiexec")


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, within a second: /proc/PID/stat
    field 22 is clock ticks after boot, /proc/stat's btime the boot in whole seconds); None if
    there is no such process or it is a zombie (killed, not yet reaped: gone too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                     if ln.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    if fields[0] in ("Z", "X"):   # fields[0] is field 3 (state), fields[19] field 22
        return None
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _dead_here(seg: dict) -> bool:
    """The segment's driver is provably gone, so nobody need wait for its heartbeat to go stale:
    its RUN_DIR/driver.pid names this node (hostname, kernel boot id and PID namespace:
    transport.node_id, so another machine of the same name, a container or a reboot is not
    judged by a pid that means another process here), and that pid is free, a zombie, or a
    process that started after the driver wrote the file and is not running this run's config
    (a recycled pid). Anything less certain is not dead: the heartbeat decides."""
    from emews_py.farm.transport import node_id
    try:
        pid_file = Path(seg["run_dir"]) / "driver.pid"
        words = pid_file.read_text().split()
        pid, written = int(words[0]), pid_file.stat().st_mtime
    except (KeyError, TypeError, OSError, ValueError, IndexError):
        return False
    if len(words) < 2 or words[1] != node_id() or pid != seg.get("pid"):
        return False
    return _is_driver(pid, pid_file, written) is False   # None: not proven


def _is_driver(pid: int, pid_file: Path, written: float) -> bool | None:
    """Is local process ``pid`` the driver that wrote ``pid_file`` (at mtime ``written``)? False
    when the pid is free, a zombie, or a process that started after the file was written and is
    not running this run's config (a recycled pid); None when /proc cannot tell."""
    start = _started_at(pid)
    if start is None:
        return False
    # The driver started before it wrote the file; 1.5 s covers btime's whole seconds. A later
    # start is another process, unless the wall clock was stepped: then the driver's command
    # line (python -m emews_py.farm RUN_DIR/config.json) still shows it is the driver.
    if start <= written + 1.5:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:   # unreadable, or gone since
        return None
    return str(pid_file.with_name("config.json")).encode() in argv


BATCH_OPTIONS = ("nodes", "ppn", "walltime", "queue", "account", "dryrun")


def gpus_of(value: str, where: str = "GPUS_PER_NODE") -> str:
    """GPUS_PER_NODE checked: '' (not given) or a positive integer as text."""
    v = (value or "").strip()
    if v and (not v.isdigit() or int(v) == 0):
        raise UsageError(f"{where}={value!r}: the number of GPUs on each node must be a positive "
                         f"integer, e.g. GPUS_PER_NODE=4 (each worker rank then gets one, by its "
                         f"rank on the node); leave it out on nodes without GPUs.")
    return str(int(v)) if v else ""


def use_gpus(gpus: str) -> None:
    """GPUS_PER_NODE reaches the worker ranks through the environment mpiexec passes on
    (farm/worker.py assign_gpu)."""
    from emews_py.farm.worker import GPUS_ENV
    if gpus:
        os.environ[GPUS_ENV] = gpus


def cmd_workflow(a: argparse.Namespace) -> int:
    try:
        gpus = gpus_of(getattr(a, "gpus_per_node", ""))
        hosts = hosts_of(a)   # before prepare(): PROCS may come from it
    except UsageError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    if getattr(a, "site", ""):
        return cmd_submit(a)
    given = [o.upper() for o in BATCH_OPTIONS if getattr(a, o, "")]
    if given:
        sys.stderr.write(f"emews: error: {', '.join(given)} given without SITE: they describe a "
                         f"batch job. Add SITE=NAME (a file in workflows/sites/: slurm, pbs, lsf, "
                         f"local) to submit one, or leave them out to run here (PROCS=N).\n")
        return 2
    try:
        cfg, cfg_file, procs = prepare_resume(a) if a.resume else prepare(a)
    except (UsageError, SpaceError, PilotError) as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    cmd = launcher(procs, hosts) + [sys.executable, "-m", "emews_py.farm", str(cfg_file)]
    use_gpus(gpus)
    return start_job(cfg, cmd)


def dryrun_of(v: str) -> bool:
    if v.strip().lower() in ("", "0", "no", "false"):
        return False
    if v.strip().lower() in ("1", "yes", "true"):
        return True
    raise UsageError(f"DRYRUN={v!r}: use DRYRUN=1 to print the batch script without submitting "
                     f"it (or leave DRYRUN out).")


def cmd_submit(a: argparse.Namespace) -> int:
    """``--site NAME``: check everything as for a run here, write RUN_DIR/job.sh from the site
    file and submit it (or print it: --dryrun). The job runs ``emews launch`` on the same
    config.json; PROCS is NODES*PPN unless given."""
    from emews_py import sites
    try:
        dry = dryrun_of(a.dryrun)
        site = sites.load_site(a.site)
        values = sites.job_values(site, a.nodes, a.ppn, a.walltime, a.queue, a.account)
        values["gpus_per_node"] = (gpus_of(getattr(a, "gpus_per_node", "")) or
                                   gpus_of(site.gpus_per_node, f"gpus_per_node in {site.file}"))
        if not a.procs and values["nodes"] and values["ppn"]:
            a.procs = str(int(values["nodes"]) * int(values["ppn"]))
        cfg, cfg_file, procs = prepare_resume(a) if a.resume else prepare(a)
    except (UsageError, SpaceError, PilotError, sites.SiteError) as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    mpiexec = default_mpiexec()
    values.update(procs=str(procs), mpiexec=shlex.quote(mpiexec),
                  job_name=cfg.exp if cfg.resume is None else f"{cfg.exp}-resume{cfg.resume}")
    farm = sites.launch_command(site, procs, mpiexec, os.environ.get("EMEWS_LAUNCHER"))
    farm += [sys.executable, "-m", "emews_py.farm", str(cfg_file)]
    gpus = ["--gpus-per-node", values["gpus_per_node"]] if values["gpus_per_node"] else []
    command = [sys.executable, "-m", "emews_py.cli", "launch", *gpus, str(cfg_file), "--", *farm]
    script = sites.write_script(site, cfg.run_path, values, command, Path.cwd())
    print(f"[emews] run directory: {cfg.run_dir}", flush=True)
    print(f"[emews] batch script for {site.name} ({site.file}): {script}", flush=True)
    if dry:
        print(script.read_text(), end="", flush=True)
        # from the run directory: the script's output file is relative to it
        print(f"[emews] DRYRUN: nothing submitted; submit it with: cd "
              f"{shlex.quote(str(script.parent))} && "
              f"{shlex.join(w.replace('{script}', script.name) for w in site.submit)}"
              f"{' < ' + script.name if site.stdin else ''}", flush=True)
        return 0
    try:
        job = sites.submit(site, script)
    except sites.SiteError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    out = cfg.run_path / sites.OUTPUT
    print(f"[emews] submitted to {site.name}: job {job}", flush=True)
    follow = sites.fill(site.follow, {"job_id": job}).strip() if site.follow else ""
    print(f"[emews] follow it: `emews status` (the experiment is listed once the job starts)"
          f"{', `' + follow + '`' if follow else ''}, `tail -f {shlex.quote(str(out))}`",
          flush=True)
    cancel = sites.fill(site.cancel, {"job_id": job}).strip() if site.cancel else ""
    again = (f"RESUME={cfg.resume}" if cfg.resume is not None else "RESUME=ID")
    print(f"[emews] {('`' + cancel + '` stops it cleanly; ') if cancel else ''}after a stop or "
          f"its time limit, resubmit with the same command plus {again} (or --resume)",
          flush=True)
    return 0


def cmd_launch(a: argparse.Namespace) -> int:
    """``emews launch CONFIG -- MPI COMMAND``: what a batch script runs: the MPI job of a run
    directory that ``emews workflow --site`` prepared, with the stop handling and post-mortem of
    a run started here."""
    from emews_py.config import ConfigError
    try:
        cfg = RunConfig.read(a.config)
    except ConfigError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        sys.stderr.write("emews: error: launch needs the MPI command after --\n")
        return 2
    try:
        use_gpus(gpus_of(a.gpus_per_node))
    except UsageError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    return start_job(cfg, cmd)


def start_job(cfg: RunConfig, cmd: list[str]) -> int:
    print(f"[emews] run directory: {cfg.run_dir}", flush=True)
    print(f"[emews] {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # rank 0's stdout is hydra's pipe: it learns here whether the user's is a terminal (progress.py)
    env.setdefault("EMEWS_PROGRESS", "tty" if sys.stdout.isatty() else "plain")
    env.setdefault("COLUMNS", str(shutil.get_terminal_size().columns))
    rc, signaled = run_job(cmd, env, cfg.run_path / "driver.pid")
    if rc != 0:
        mark_abandoned(cfg, rc, signaled, default_db())
    return rc


SI_KERNEL = 0x80       # siginfo si_code of a signal the kernel sent: the terminal's Ctrl-C
KILL_AFTER_S = 20.0    # the driver stops within 10 s of a signal; past this, mpiexec is killed


def signal_driver(pid_file: Path | None, since: float = 0.0) -> bool:
    """SIGTERM to rank 0, whose pid (and node) the driver writes to RUN_DIR/driver.pid when it
    starts; False if it has not started yet (the caller tries again). A driver on another host
    (HOSTS) gets the request as RUN_DIR/stop-request: its pid means another process here, and a
    signal to mpiexec could be hydra's second one, which kills the job unrecorded. A file written
    before ``since`` (the job's start: an earlier job's, in the same run directory) or a pid that
    now names a process started after the file was written (a recycled pid) is not this job's
    driver, and nothing is signalled."""
    import signal

    from emews_py.farm.transport import STOP_FILE, node_id
    try:
        words = pid_file.read_text().split()
        pid, written = int(words[0]), pid_file.stat().st_mtime
    except (AttributeError, OSError, ValueError, IndexError):
        return False
    if written < since - 1.5:   # 1.5 s: mtime and the clock read apart
        return False
    try:
        if len(words) > 1 and words[1] != node_id():
            (pid_file.parent / STOP_FILE).write_text(f"{int(signal.SIGTERM)}\n")
        else:
            if _is_driver(pid, pid_file, written) is not True:
                return False
            os.kill(pid, signal.SIGTERM)
        return True
    except OSError:
        return False


def run_job(cmd: list[str], env: dict, pid_file: Path | None = None) -> tuple[int, int | None]:
    """Run the MPI job and wait for it; returns (exit status, first signal received or None).

    SIGINT/SIGTERM to this process do not kill the job: the driver (rank 0) records the stop
    (trials and experiment ``interrupted``) and exits; the CLI keeps waiting so that it can. The
    signal may have reached the whole job (a Ctrl-C at the terminal, a batch system) or this
    process only (``kill PID``, make passing on a SIGTERM), and the two cannot be told apart; so
    it is passed on as SIGTERM to the driver itself (``RUN_DIR/driver.pid``), which treats
    repeated stop signals as one. Never to mpiexec: hydra kills the job at once on a second
    signal, before anything is recorded. A second SIGINT (Ctrl-C), or mpiexec still alive
    KILL_AFTER_S after the first signal, kills the job's processes. Repeated SIGTERMs change
    nothing (make passes one on to its child)."""
    import signal
    stops = {signal.SIGINT, signal.SIGTERM}
    early: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: early.append(n)) for s in stops}
    started = time.time()
    try:
        proc = subprocess.Popen(cmd, env=env)   # inherits the default handlers and an empty mask
    except BaseException:
        for s, h in old.items():
            signal.signal(s, h)
        raise
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    first: int | None = None
    first_at, killed, forward = 0.0, False, False
    try:
        while True:
            got = [(x, None) for x in early]   # came before the mask: sender unknown
            early.clear()
            info = signal.sigtimedwait(stops, 0.2)
            if info is not None:
                got.append((info.si_signo, info.si_code))
            rc = proc.poll()
            if forward and rc is None and signal_driver(pid_file, started):
                forward = False   # a driver that was still starting gets it once it is up
            for signo, code in got:
                if rc is not None:   # it ended as the signal came: only remember the signal
                    first = first or signo
                elif first is None:
                    first, first_at = signo, time.time()
                    # A Ctrl-C at the terminal (SI_KERNEL) reached every rank already.
                    forward = code != SI_KERNEL
                    print(f"[emews] {signal.Signals(signo).name}: stopping the run; the driver "
                          f"records what ran (Ctrl-C again to kill it at once)", flush=True)
                elif signo == signal.SIGINT and not killed:
                    print("[emews] second Ctrl-C: killing the MPI job", flush=True)
                    kill_tree(proc.pid)
                    killed = True
            if rc is not None:
                break
            if first is not None and not killed and time.time() - first_at > KILL_AFTER_S:
                print(f"[emews] the MPI job is still running {KILL_AFTER_S:.0f} s after "
                      f"{signal.Signals(first).name}: killing it", flush=True)
                kill_tree(proc.pid)
                killed = True
    finally:
        while signal.sigtimedwait(stops, 0) is not None:   # drop what came during the stop
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s, h in old.items():
            signal.signal(s, h)
    if rc < 0:   # killed by a signal: the shell's convention
        rc = 128 - rc
    return rc, first


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (hydra's proxies and the ranks, their trial
    subprocesses), children first found through /proc."""
    import signal
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    todo, tree = [pid], []
    while todo:
        q = todo.pop()
        tree.append(q)
        todo.extend(kids.get(q, []))
    for q in tree:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass


def find_experiment(eng, cfg: RunConfig) -> int | None:
    """The experiment this run directory's job worked on: the resumed one, the one whose segment
    ran here, or (a fresh run whose driver died before writing its segment) experiments.run_dir."""
    from sqlalchemy import select

    from emews_py.store import experiments, segments
    if cfg.resume is not None:
        return cfg.resume
    with eng.connect() as c:
        return c.execute(select(segments.c.experiment_id)
                         .where(segments.c.run_dir == cfg.run_dir)
                         .order_by(segments.c.id.desc()).limit(1)).scalar() or \
            c.execute(select(experiments.c.id).where(experiments.c.run_dir == cfg.run_dir)
                      .order_by(experiments.c.id.desc()).limit(1)).scalar()


def mark_abandoned(cfg: RunConfig, rc: int, signaled: int | None, default: str | None) -> None:
    """The post-mortem of a job that exited non-zero. The driver records its own ends (completed,
    failed, interrupted by a signal); if the experiment still says ``running``, the MPI job died
    under rank 0 (mpiexec or rank 0 killed, a node lost) or was killed after a signal: record it
    here, so the store never shows a dead experiment as running. ``interrupted`` if this process
    was told to stop, else ``failed``; either way its queued and running trials become
    ``interrupted`` (a resume runs them again) and its open segment ends ``killed``/``failed``."""
    import signal

    from sqlalchemy import select

    from emews_py.store import end_experiment, experiments, make_engine
    try:
        eng = make_engine(cfg.db)
        exp = find_experiment(eng, cfg)
        if exp is None:
            return
        with eng.connect() as c:
            status = c.execute(select(experiments.c.status)
                               .where(experiments.c.id == exp)).scalar()
        if status != ExperimentStatus.RUNNING.value:
            return
        if signaled is not None:
            end = ExperimentStatus.INTERRUPTED
            why = (f"interrupted: the job was stopped ({signal.Signals(signaled).name}) and the "
                   f"MPI job ended (exit status {rc}) before the driver recorded it")
            seg = "killed"
        else:
            end = ExperimentStatus.FAILED
            why = (f"the MPI job ended abnormally (exit status {rc}) before the driver could "
                   f"record it: rank 0 or mpiexec died (killed, out of memory, node lost; see "
                   f"the output above and {cfg.run_dir})")
            seg = "failed"
        n = end_experiment(eng, exp, end, error=why, open_as=TrialStatus.INTERRUPTED,
                           segment_status=seg)
        eng.dispose()
        sys.stderr.write(f"[emews] experiment {exp} {end.value} ({n} unfinished trial(s) marked "
                         f"interrupted); resume it with: "
                         f"{resume_command(exp, cfg.db, default)}\n")
    except Exception as e:  # noqa: BLE001 - the store may be what failed
        sys.stderr.write(f"[emews] could not record the end of the experiment in "
                         f"{cfg.db}: {' '.join(str(e).split())[:500]}\n")


def sql_engine(url: str, write: bool):
    """The engine for ``emews sql``: read-only unless ``write`` (SQLite: a ``mode=ro`` URI;
    PostgreSQL: every transaction read-only, default_transaction_read_only=on)."""
    from urllib.parse import quote

    from sqlalchemy import create_engine, make_url
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if not write and u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            path = Path(u.database)
            if not path.is_file():
                raise UsageError(f"the store {path.resolve()} does not exist (nothing has run there "
                                 f"yet). Give the store with --db URL, e.g. --db "
                                 f"sqlite:////home/me/runs/emews.db.")
            u = u.set(database=f"file:{quote(str(path.resolve()))}",
                      query={**u.query, "mode": "ro", "uri": "true"})
        return create_engine(u, connect_args={"timeout": 30})
    args = {"connect_timeout": 10} if u.get_backend_name() == "postgresql" else {}
    if not write and u.get_backend_name() == "postgresql":
        args["options"] = "-c default_transaction_read_only=on"
    return create_engine(u, connect_args=args)


def cmd_sql(a: argparse.Namespace) -> int:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    url = a.db or f"sqlite:///{Path(os.environ.get('EMEWS_RUNS', 'runs')).resolve() / 'emews.db'}"

    def cell(v):
        return json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else str(v))
    try:
        eng = sql_engine(url, a.write)
        with eng.connect() as c:
            res = c.execute(text(a.query))
            if res.returns_rows:
                print("\t".join(res.keys()))
                for row in res:
                    print("\t".join(cell(v) for v in row))
            if a.write:
                c.commit()
        eng.dispose()
    except UsageError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    except SQLAlchemyError as e:
        orig = getattr(e, "orig", None)
        msg = " ".join(str(orig or e).split())
        read_only = (getattr(orig, "sqlite_errorname", "") == "SQLITE_READONLY"
                     or getattr(orig, "sqlstate", None) == "25006"     # psycopg 3
                     or getattr(orig, "pgcode", None) == "25006")      # psycopg2
        if read_only and not a.write:
            msg += (" -- emews sql opens the store read-only; add --write to change it (the "
                    "change is committed).")
        sys.stderr.write(f"emews: error: {msg}\n")
        return 1
    return 0


def duration(sec: float | None) -> str:
    """12s, 4m05s, 3h07m, 2d04h: what a person reads at a glance."""
    if sec is None:
        return "-"
    sec = int(round(sec))
    if sec < 60:
        return f"{sec}s"
    if sec < 3600:
        return f"{sec // 60}m{sec % 60:02d}s"
    if sec < 86400:
        return f"{sec // 3600}h{sec % 3600 // 60:02d}m"
    return f"{sec // 86400}d{sec % 86400 // 3600:02d}h"


def aligned(headers: list[str], rows: list[list], indent: str = "") -> str:
    cells = [headers] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(indent + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
                     for r in cells)


def when(t) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"


def objective_text(v) -> str:
    return "-" if v is None else f"{v:.6g}"


def stale_why(x: dict) -> str:
    said = (f"the store says running, but its job has given no sign of life for "
            f"{duration(x['alive_age_s'])}")
    if x.get("gone_pid"):
        return (f"{said} and its driver (pid {x['gone_pid']} on this node) is gone (killed, or "
                f"its job ended unrecorded)")
    return f"{said} (killed, node lost or out of time)"


def status_note(x: dict, db: str, default: str) -> str | None:
    """Why the experiment is not running and how to go on, or None."""
    if not x["resumable"]:
        return None
    if x["stale"]:
        why = f"is stale: {stale_why(x)}"
    else:
        why = "was interrupted" if x["status"] == "interrupted" else "failed"
    return f"experiment {x['id']} {why}; resume it with: {resume_command(x['id'], db, default)}"


def cmd_status(a: argparse.Namespace) -> int:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from emews_py.store import SCHEMA_VERSION, experiments
    from emews_py.store.engine import current_version, shown_url
    from emews_py.store.queries import experiment_status
    url, default = default_db(a), default_db()
    where = shown_url(url)
    try:
        stale_after_of()
        eng = sql_engine(url, write=False)
        with eng.connect() as c:
            version = current_version(c)
            ids = c.execute(select(func.min(experiments.c.id), func.max(experiments.c.id))).one() \
                if version else (None, None)
        if version is None or ids[0] is None:
            sys.stderr.write(f"emews: the store {where} has no experiments yet\n")
            return 1
        if version != SCHEMA_VERSION:
            sys.stderr.write(
                f"emews: error: the store {where} is at schema version {version} and this "
                f"emews-py reads version {SCHEMA_VERSION}: "
                + ("any `emews workflow` run against it upgrades it in place, or run `.venv/bin/"
                   f"python -m emews_py.store.migrations upgrade {where}`.\n"
                   if version < SCHEMA_VERSION else "it was written by a newer emews-py; "
                   "upgrade emews-py to read it.\n"))
            return 2
        rows = experiment_status(eng, a.id)
        eng.dispose()
        for x in rows:   # a driver gone from this node: stale at once, not after the heartbeat
            if x["status"] == "running" and not x["stale"] and x["segments"] \
                    and _dead_here(x["segments"][-1]):
                x.update(stale=True, shown="stale", resumable=x["has_config"],
                         gone_pid=x["segments"][-1]["pid"])
    except UsageError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    except SQLAlchemyError as e:
        sys.stderr.write(f"emews: error: the store {where} cannot be read: "
                         f"{' '.join(str(getattr(e, 'orig', None) or e).split())}\n")
        return 1
    if not rows:
        sys.stderr.write(f"emews: error: the store {where} has no experiment {a.id} (its "
                         f"experiments are {ids[0]} to {ids[1]}); `emews status` lists them\n")
        return 1
    if a.id is None:
        print(aligned(["ID", "NAME", "STATUS", "TRIALS", "RUNNING", "FAILED", "INTERRUPTED",
                       "BEST", "ELAPSED", "HEARTBEAT"],
                      [[x["id"], x["name"], x["shown"], f"{x['completed']}/{x['budget'] or '?'}",
                        x["running"], x["failed"], x["interrupted"], objective_text(x["best"]),
                        duration(x["elapsed_s"]),
                        f"{duration(x['heartbeat_age_s'])} ago" if x["heartbeat_at"] else "-"]
                       for x in rows]))
        notes = [n for x in rows if (n := status_note(x, url, default))]
        if notes:
            print()
            print("\n".join(notes))
        return 0
    x = rows[0]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(x["counts"].items())) or "none yet"
    shown = x["shown"]
    if x["stale"]:
        shown += f": {stale_why(x)}"
    b = x["best_trial"]
    lines = [
        ("status", shown),
        ("pilot", f"{x['pilot']}, algorithm {x['algorithm']}, mode {x['mode']}, "
                  f"{x['workers']} workers"),
        ("trials", f"{x['completed']} completed of {x['budget'] or '?'} (budget); {x['running']} "
                   f"running, {x['queued']} queued, {x['failed']} failed or timed out, "
                   f"{x['interrupted']} interrupted (by status: {counts})"),
        ("best", f"trial {b['id']}: objective {objective_text(b['objective'])} params "
                 f"{json.dumps(b['params'])}" if b else "none completed"),
        ("elapsed", f"{duration(x['elapsed_s'])}"
                    + (f" over {len(x['segments'])} segments" if len(x["segments"]) > 1 else "")),
        ("started", when(x["started_at"])),
        ("finished", when(x["finished_at"])),
        ("heartbeat", f"{duration(x['heartbeat_age_s'])} ago ({when(x['heartbeat_at'])})"
                      if x["heartbeat_at"] else "none written"),
        ("run dir", x["run_dir"] or "-"),
    ]
    print(f"experiment {x['id']} '{x['name']}'")
    print(aligned(["", ""], lines, "  ").split("\n", 1)[1])
    if x["segments"]:
        print("segments (one per job):")
        print(aligned(["#", "HOST", "PID", "PROCS", "STARTED", "ENDED", "ELAPSED", "ENDED AS"],
                      [[s["number"], s["host"], s["pid"], s["procs"], when(s["started_at"]),
                        when(s["ended_at"]), duration(s["elapsed_s"]),
                        # a segment that says running but is not the live job died unrecorded
                        "stale" if s["status"] == "running" and (
                            x["stale"] or s is not x["segments"][-1]) else s["status"]]
                       for s in x["segments"]], "  "))
    if x["running_trials"]:
        print("running trials:")
        print(aligned(["ID", "WORKER", "HOST", "ELAPSED", "ATTEMPT", "PARAMS"],
                      [[t["id"], t["worker"], t["host"], duration(t["elapsed_s"]),
                        t["attempts"], json.dumps(t["params"])] for t in x["running_trials"]],
                      "  "))
    if x["error"]:
        print("error:")
        print("\n".join("  " + ln for ln in x["error"].rstrip().splitlines()))
    if (n := status_note(x, url, default)):
        print(n)
    return 0


def cmd_trials(a: argparse.Namespace) -> int:
    """``emews trials ID``: the table of ``emews_py.trials`` (emews_py/data.py) as CSV or JSON."""
    from emews_py.data import DataError, records, trials
    if a.format not in ("csv", "json"):
        sys.stderr.write(f"emews: error: --format {a.format!r} is not known; give --format csv "
                         f"(the default) or --format json (a list of records)\n")
        return 2
    try:
        df = trials(default_db(a), a.experiment)
    except DataError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    try:
        if a.format == "csv":
            df.to_csv(sys.stdout, index=False)
        else:   # strict JSON: NaN as null, +-inf as "Infinity", times ISO 8601 UTC
            json.dump(records(df), sys.stdout, allow_nan=False)
            sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:     # `emews trials 3 | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    """emews report ID: one self-contained HTML file (emews_py/report), the store read-only."""
    from sqlalchemy.exc import SQLAlchemyError

    from emews_py.store import SCHEMA_VERSION
    from emews_py.store.engine import current_version, shown_url
    url = default_db(a)
    out = Path(a.output or f"report-{a.id}.html").expanduser().resolve()
    try:
        if out.is_dir():
            raise UsageError(f"the report path {out} is a directory; give a file name, e.g. "
                             f"-o {out / f'report-{a.id}.html'}")
        if not out.parent.is_dir():
            raise UsageError(f"cannot write the report to {out}: the directory {out.parent} does "
                             f"not exist; create it or give another path with -o")
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write the report to {out}: the directory {out.parent} is "
                             f"not writable; give another path with -o")
        from emews_py.report import ReportError, render
        stale_after_of()
        eng = sql_engine(url, write=False)
        with eng.connect() as c:
            version = current_version(c)
        if version != SCHEMA_VERSION:
            raise UsageError(f"the store {shown_url(url)} is at schema version {version} and "
                             f"emews report reads version {SCHEMA_VERSION}: any `emews workflow` "
                             f"run against it upgrades it in place" if version else
                             f"the store {shown_url(url)} has no experiments (not an emews store)")
        try:
            page = render(eng, a.id)
        except ReportError as e:
            raise UsageError(str(e)) from None
        finally:
            eng.dispose()
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")   # a viewer never sees half a file
        try:
            tmp.write_text(page, encoding="utf-8")
            os.replace(tmp, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write the report to {out}: {e.strerror or e}") from None
    except UsageError as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    except SQLAlchemyError as e:
        sys.stderr.write(f"emews: error: the store {shown_url(url)} cannot be read: "
                         f"{' '.join(str(getattr(e, 'orig', None) or e).split())}\n")
        return 1
    print(f"[emews] report of experiment {a.id}: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="emews", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workflow", help="run a hyperparameter search (what `make workflow` calls)")
    # Empty means the default (the Makefile passes every variable, set or not), so that a resume
    # can tell what was given.
    w.add_argument("--pilot", default="", help="default bench")
    w.add_argument("--algo", default="", help="default random")
    w.add_argument("--procs", default="", help="default 4 (a resume: as its last job)")
    w.add_argument("--budget", default="")
    w.add_argument("--space", default="")
    w.add_argument("--db", default="")
    w.add_argument("--exp", default="")
    w.add_argument("--mode", default="", help="resident (default) or app")
    w.add_argument("--timeout", default="")
    w.add_argument("--opt-timeout", default="",
                   help="fail if the optimizer sends nothing this many seconds while every "
                        "worker is idle (default 1800)")
    w.add_argument("--settings", default="")
    w.add_argument("--stopper", default="", help="early stopping of trainings behind their peers "
                   "at the same epoch: asha or median, with settings, e.g. asha:eta=3,grace=1 "
                   "(docs/stopping.md); default off")
    w.add_argument("--resume", default="", metavar="ID",
                   help="continue experiment ID (interrupted, killed or failed) in a new job")
    w.add_argument("--runs", default="", help="where run directories go (default ./runs or $EMEWS_RUNS)")
    w.add_argument("--hosts", default="", help="run across these hosts without a batch system: "
                   "node1:4,node2:4 (rank 0 on the first; PROCS their sum) or a host file "
                   "(docs/sites.md, more than one host)")
    w.add_argument("--gpus-per-node", default="", help="GPUs on each node: every worker rank "
                   "gets one by its rank on the node, as CUDA_VISIBLE_DEVICES (docs/sites.md)")
    b = w.add_argument_group("batch submission (docs/sites.md)")
    b.add_argument("--site", default="", help="submit a batch job: a site file "
                   "workflows/sites/NAME.toml (slurm, pbs, lsf, local) or a path to one")
    b.add_argument("--nodes", default="", help="nodes of the job")
    b.add_argument("--ppn", default="", help="MPI processes per node (PROCS = NODES*PPN unless given)")
    b.add_argument("--walltime", default="", help="the job's time limit, HH:MM:SS")
    b.add_argument("--queue", default="", help="queue or partition (default: the site's)")
    b.add_argument("--account", default="", help="account or project to charge")
    b.add_argument("--dryrun", default="", nargs="?", const="1",
                   help="print the batch script, submit nothing")
    w.set_defaults(func=cmd_workflow)
    la = sub.add_parser("launch", help="run a prepared run directory's MPI job (what a batch "
                                       "script of --site runs)")
    la.add_argument("--gpus-per-node", default="", help="one GPU per worker rank by its rank "
                    "on the node (GPUS_PER_NODE)")
    la.add_argument("config", help="RUN_DIR/config.json")
    la.add_argument("command", nargs=argparse.REMAINDER, help="-- the MPI command")
    la.set_defaults(func=cmd_launch)
    st = sub.add_parser("status", help="the experiments in the store, or one in detail")
    st.add_argument("id", nargs="?", type=int, help="an experiment id: show it in detail")
    st.add_argument("--db", default="")
    st.add_argument("--runs", default="", help="the default store is RUNS/emews.db")
    st.set_defaults(func=cmd_status)
    q = sub.add_parser("sql", help="run an SQL query against the store")
    q.add_argument("query")
    q.add_argument("--db", default="")
    q.add_argument("--write", action="store_true",
                   help="allow changes (committed); without it the store is opened read-only")
    q.set_defaults(func=cmd_sql)
    rp = sub.add_parser("report", help="one self-contained HTML report of an experiment")
    rp.add_argument("id", type=int, help="the experiment id (emews status lists them)")
    rp.add_argument("-o", "--output", default="", metavar="FILE",
                    help="where to write it (default ./report-ID.html)")
    rp.add_argument("--db", default="")
    rp.add_argument("--runs", default="", help="the default store is RUNS/emews.db")
    rp.set_defaults(func=cmd_report)
    tr = sub.add_parser("trials", help="an experiment's trials as CSV or JSON, params and "
                                       "metrics in columns (emews_py.trials)")
    tr.add_argument("experiment", help="an experiment id, or a name (shared: the latest)")
    tr.add_argument("--format", default="csv", help="csv (default) or json (records)")
    tr.add_argument("--db", default="")
    tr.add_argument("--runs", default="", help="the default store is RUNS/emews.db")
    tr.set_defaults(func=cmd_trials)
    from emews_py.simulate import add_parser as add_simulate  # imports this module: not at the top
    add_simulate(sub)
    from emews_py.farmsim import add_parser as add_simulate_farm
    add_simulate_farm(sub)
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except KeyboardInterrupt:   # before the job started (or outside it): nothing to record
        sys.stderr.write("emews: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
