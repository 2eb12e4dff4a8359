"""Batch submission: site files (``workflows/sites/NAME.toml``) and the job script they make.

A site file is data (TOML): the batch-script template, the submit command, how to read the job
id from its output, the MPI launcher. ``emews workflow --site NAME`` checks everything a normal
workflow checks, writes RUN_DIR/job.sh from the template and submits it. The script names only
paths (quoted with shlex.quote) and the run's config.json: no hyperparameter or setting passes
through a shell. docs/sites.md describes the fields.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from emews_py.pilot import REPO_ROOT

SITES_DIR = REPO_ROOT / "workflows" / "sites"
SCRIPT = "job.sh"
OUTPUT = "job.out"
# What a template may use. The path-like ones and {command} come quoted for the shell; the rest
# are checked to be plain words (numbers, HH:MM:SS, names) before they are put in.
PLACEHOLDERS = {"nodes", "ppn", "procs", "walltime", "walltime_hm", "queue", "account",
                "job_name", "output", "workdir", "run_dir", "config", "command", "mpiexec",
                "script", "job_id", "gpus_per_node"}
REQUIRABLE = ("nodes", "ppn", "walltime", "queue", "account")
PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_]+)\}")   # ${VAR} is the shell's, left alone
WORD = re.compile(r"[A-Za-z0-9_.@+\-]+")


class SiteError(Exception):
    pass


@dataclass
class Site:
    name: str
    file: Path
    description: str
    requires: list[str]
    submit: list[str]
    script: str
    launcher: str
    job_id: str | None = None
    stdin: bool = False
    background: bool = False
    follow: str = ""
    cancel: str = ""
    gpus_per_node: str = ""   # the site's nodes' GPUs, when GPUS_PER_NODE is not given


def site_files() -> list[Path]:
    return sorted(SITES_DIR.glob("*.toml"))


def load_site(name: str) -> Site:
    """The site NAME (workflows/sites/NAME.toml) or a path to a site file."""
    path = Path(name)
    if not (path.suffix == ".toml" and path.is_file()):
        path = SITES_DIR / f"{name}.toml"
    if not path.is_file():
        have = ", ".join(p.stem for p in site_files()) or "none"
        raise SiteError(f"SITE={name!r}: there is no site file {path} (the sites are: {have}). "
                        f"Use one of those, give the path of a site file, or add "
                        f"workflows/sites/{name}.toml (copy one of the others; docs/sites.md "
                        f"describes the fields).")
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SiteError(f"site file {path} cannot be read as TOML ({e}); fix it (docs/sites.md "
                        f"has the format).") from None
    background = d.get("background", False)
    need = ["submit", "script", "launcher"] + ([] if background else ["job_id"])
    missing = [k for k in need if not d.get(k)]
    if missing:
        raise SiteError(f"site file {path} has no {', '.join(missing)}: a site file needs "
                        f"{', '.join(need)} (docs/sites.md; workflows/sites/slurm.toml is an "
                        f"example). Add the field(s).")
    submit = d["submit"]
    if isinstance(submit, str):
        submit = shlex.split(submit)
    requires = d.get("requires", [])
    bad = [r for r in requires if r not in REQUIRABLE]
    if bad:
        raise SiteError(f"site file {path}: requires lists {', '.join(map(repr, bad))}; it may "
                        f"list only {', '.join(REQUIRABLE)}.")
    site = Site(name=path.stem, file=path, description=d.get("description", path.stem),
                requires=list(requires), submit=[str(w) for w in submit], script=d["script"],
                launcher=d["launcher"], job_id=d.get("job_id"), stdin=bool(d.get("stdin")),
                background=bool(background), follow=d.get("follow", ""),
                cancel=d.get("cancel", ""), gpus_per_node=str(d.get("gpus_per_node", "")))
    for field in ("script", "launcher", "follow", "cancel"):
        for p in PLACEHOLDER.findall(getattr(site, field)):
            if p not in PLACEHOLDERS:
                raise SiteError(f"site file {path}: the {field} uses {{{p}}}, which emews does "
                                f"not know; the placeholders are {', '.join(sorted(PLACEHOLDERS))} "
                                f"(write a literal brace of the shell as ${{...}}).")
    return site


def job_values(site: Site, nodes: str, ppn: str, walltime: str, queue: str,
               account: str) -> dict:
    """NODES, PPN, WALLTIME, QUEUE, ACCOUNT checked: the values for the template ('' = not
    given). A field the site requires must be given."""
    given = {"nodes": nodes, "ppn": ppn, "walltime": walltime, "queue": queue, "account": account}
    missing = [k.upper() for k in site.requires if not given[k]]
    if missing:
        example = "NODES=2 PPN=4 WALLTIME=01:00:00"
        raise SiteError(f"SITE={site.name} needs {', '.join(missing)} (its site file {site.file} "
                        f"requires {', '.join(k.upper() for k in site.requires)}), e.g. "
                        f"{example}. Nothing was submitted.")
    out = dict(given)
    for k in ("nodes", "ppn"):
        v = given[k].strip()
        if v and (not re.fullmatch(r"[0-9]+", v) or int(v) == 0):
            what = "nodes" if k == "nodes" else "MPI processes per node"
            raise SiteError(f"{k.upper()}={given[k]!r}: the number of {what} must be a positive "
                            f"integer, e.g. {k.upper()}={2 if k == 'nodes' else 4}. Nothing was "
                            f"submitted.")
        out[k] = str(int(v)) if v else ""
    if walltime:
        m = re.fullmatch(r"([0-9]{1,4}):([0-5][0-9]):([0-5][0-9])", walltime.strip())
        if not m or not any(int(x) for x in m.groups()):
            raise SiteError(f"WALLTIME={walltime!r}: give the job's time limit as HH:MM:SS, e.g. "
                            f"WALLTIME=01:30:00 (hours may exceed 24: 48:00:00). Nothing was "
                            f"submitted.")
        h, mi, s = map(int, m.groups())
        out["walltime"] = f"{h:02d}:{mi:02d}:{s:02d}"
        total_min = math.ceil((h * 3600 + mi * 60 + s) / 60)   # LSF's -W is [HH:]MM
        out["walltime_hm"] = f"{total_min // 60:02d}:{total_min % 60:02d}"
    else:
        out["walltime_hm"] = ""
    for k in ("queue", "account"):
        if given[k] and not WORD.fullmatch(given[k]):
            raise SiteError(f"{k.upper()}={given[k]!r}: {'a queue' if k == 'queue' else 'an account'} name is letters, digits and "
                            f"'_.@+-' only (it goes into a batch directive). Nothing was "
                            f"submitted.")
    return out


def fill(template: str, values: dict) -> str:
    """Put the values in; a line with a placeholder whose value is empty (QUEUE or ACCOUNT not
    given) is left out, so the batch system's default applies."""
    lines = []
    for line in template.splitlines():
        names = PLACEHOLDER.findall(line)
        if any(values.get(n, "") == "" for n in names):
            continue
        lines.append(PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), line))
    return "\n".join(lines).strip("\n") + "\n"


def launch_command(site: Site, procs: int, mpiexec: str, env_launcher: str | None) -> list[str]:
    """The MPI launcher: $EMEWS_LAUNCHER if set (as for an interactive run), else the site's."""
    tmpl = env_launcher or site.launcher
    return [PLACEHOLDER.sub(lambda m: {"procs": str(procs), "mpiexec": mpiexec}
                            .get(m.group(1), m.group(0)), w) for w in shlex.split(tmpl)]


def write_script(site: Site, run_dir: Path, values: dict, command: list[str],
                 workdir: Path) -> Path:
    q = shlex.quote
    v = dict(values, output=OUTPUT, workdir=q(str(workdir)), run_dir=q(str(run_dir)),
             config=q(str(run_dir / "config.json")), command=shlex.join(command),
             script=q(str(run_dir / SCRIPT)))
    path = run_dir / SCRIPT
    path.write_text(fill(site.script, v))
    path.chmod(0o755)
    return path


def submit(site: Site, script: Path) -> str:
    """Submit the script from its run directory; returns the job id. SiteError (nothing
    submitted, or what the batch system said) if the command is missing or refuses it."""
    run_dir = script.parent
    argv = [w.replace("{script}", str(script)) for w in site.submit]
    where = f"(site file {site.file}, field submit)"
    if site.background:
        try:
            with open(run_dir / OUTPUT, "ab") as out:
                p = subprocess.Popen(argv, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            raise SiteError(f"{argv[0]} could not be started {where}: {e}. Nothing was "
                            f"submitted.") from None
        return str(p.pid)
    try:
        with open(script if site.stdin else os.devnull) as stdin:
            p = subprocess.run(argv, cwd=run_dir, capture_output=True, text=True, timeout=120,
                               stdin=stdin)
    except FileNotFoundError:
        raise SiteError(f"{argv[0]} is not on PATH {where}: SITE={site.name} submits with "
                        f"{argv[0]}, so run this on a login node of the cluster (or load its "
                        f"module), or use DRYRUN=1 to see the script. Nothing was "
                        f"submitted.") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SiteError(f"{argv[0]} failed {where}: {e}. Nothing was submitted.") from None
    said = " ".join((p.stdout + " " + p.stderr).split())[:1500]
    if p.returncode != 0:
        raise SiteError(f"{argv[0]} refused the job (exit status {p.returncode}): {said or '(no output)'}. "
                        f"Nothing was submitted; fix what it names (QUEUE, ACCOUNT, WALLTIME, "
                        f"NODES or PPN) and run the same command again. The script is {script}.")
    m = re.search(site.job_id, p.stdout, re.M) or re.search(site.job_id, p.stderr, re.M)
    if not m:
        raise SiteError(f"{argv[0]} accepted the script but its output does not match the site's "
                        f"job_id pattern {site.job_id!r} ({site.file}): {said or '(no output)'}. "
                        f"The job may be queued: check with the batch system, and fix job_id.")
    return m.group(1) if m.groups() else m.group(0)
