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
    from emews_py.store.engine import StoreUnavailable, check_store
    if len(exp) > experiments.c.name.type.length:
        raise UsageError(f"EXP={exp[:40]}... is {len(exp)} characters long; the store keeps experiment "
                         f"names of at most {experiments.c.name.type.length}. Give a shorter EXP.")
    runs_root = Path(a.runs or os.environ.get("EMEWS_RUNS", "runs")).resolve()
    db = a.db or f"sqlite:///{runs_root / 'emews.db'}"
    if not a.db:
        runs_root.mkdir(parents=True, exist_ok=True)  # the default store lives there
    try:  # before anything starts: a store that cannot be opened would leave the workers waiting
        check_store(db)
    except StoreUnavailable as e:
        raise UsageError(str(e)) from None
    run_dir = runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{exp}-{uuid.uuid4().hex[:4]}"
    run_dir.mkdir(parents=True)
    # ipc:// paths are limited to ~100 bytes, so the socket lives in the temp dir, not the run dir.
    endpoint = f"ipc://{tempfile.gettempdir()}/emews-{uuid.uuid4().hex[:12]}.sock"
    cfg = RunConfig(exp=exp, pilot=a.pilot, algo=algo.stem, algo_file=str(algo), db=db,
                    run_dir=str(run_dir), endpoint=endpoint, mode=mode, settings=settings,
                    space_file=str(space_file), space_text=space_file.read_text(),
                    space_json=space, timeout=timeout, impute=impute, keep_models=keep)
    cfg_file = run_dir / "config.json"
    cfg.write(cfg_file)
    return cfg, cfg_file


def launcher(procs: int) -> list[str]:
    """``mpiexec -n PROCS`` by default; a site can set EMEWS_LAUNCHER, e.g. 'srun -n {procs}'."""
    tmpl = os.environ.get("EMEWS_LAUNCHER")
    if tmpl:
        return [w.replace("{procs}", str(procs)) for w in shlex.split(tmpl)]
    mpiexec = Path(sys.executable).parent / "mpiexec"
    return [str(mpiexec) if mpiexec.exists() else (shutil.which("mpiexec") or "mpiexec"), "-n", str(procs)]


def cmd_workflow(a: argparse.Namespace) -> int:
    try:
        cfg, cfg_file = prepare(a)
    except (UsageError, SpaceError, PilotError) as e:
        sys.stderr.write(f"emews: error: {e}\n")
        return 2
    procs = int(float(a.procs)) if a.procs else 4   # checked by prepare
    cmd = launcher(procs) + [sys.executable, "-m", "emews_py.farm", str(cfg_file)]
    print(f"[emews] run directory: {cfg.run_dir}", flush=True)
    print(f"[emews] {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        mark_abandoned(cfg, rc)
    return rc


def mark_abandoned(cfg: RunConfig, rc: int) -> None:
    """If the MPI job died under rank 0 (a worker crashed and mpiexec killed the job), rank 0 could
    not record it: do it here, so the store never shows a dead experiment as running. The same
    rule as the driver's own failure path (``store.end_experiment``): open trials are cancelled."""
    from sqlalchemy import select

    from emews_py.store import end_experiment, experiments, make_engine
    try:
        eng = make_engine(cfg.db)
        with eng.connect() as c:
            exp = c.execute(select(experiments.c.id).where(
                experiments.c.run_dir == cfg.run_dir,
                experiments.c.status == ExperimentStatus.RUNNING.value)).scalar()
        if exp is None:
            return
        why = (f"the MPI job ended abnormally (exit status {rc}) before the driver could finish: "
               f"most likely a worker process crashed (see the output above and {cfg.run_dir})")
        # Unlike a failure the driver saw, a running trial here died with the job, most likely
        # the cause of it: it failed. Everything else follows the one rule of end_experiment.
        end_experiment(eng, exp, ExperimentStatus.FAILED, error=why,
                       why_cancelled=f"cancelled: {why}", running_as=TrialStatus.FAILED,
                       why_running=f"the MPI job died while this trial ran: {why}")
        sys.stderr.write(f"[emews] ERROR: experiment {exp} failed: {why}\n")
    except Exception as e:  # noqa: BLE001 - the store may be what failed
        sys.stderr.write(f"[emews] could not mark the experiment failed in {cfg.db}: {e}\n")


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="emews", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workflow", help="run a hyperparameter search (what `make workflow` calls)")
    w.add_argument("--pilot", default="bench")
    w.add_argument("--algo", default="random")
    w.add_argument("--procs", default="4")
    w.add_argument("--budget", default="")
    w.add_argument("--space", default="")
    w.add_argument("--db", default="")
    w.add_argument("--exp", default="")
    w.add_argument("--mode", default="resident")
    w.add_argument("--timeout", default="")
    w.add_argument("--settings", default="")
    w.add_argument("--runs", default="", help="where run directories go (default ./runs or $EMEWS_RUNS)")
    w.set_defaults(func=cmd_workflow)
    q = sub.add_parser("sql", help="run an SQL query against the store")
    q.add_argument("query")
    q.add_argument("--db", default="")
    q.add_argument("--write", action="store_true",
                   help="allow changes (committed); without it the store is opened read-only")
    q.set_defaults(func=cmd_sql)
    from emews_py.simulate import add_parser as add_simulate  # imports this module: not at the top
    add_simulate(sub)
    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
