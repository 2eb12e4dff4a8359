"""Batch submission through site files (workflows/sites/*.toml): the generated scripts, DRYRUN,
every bad input, submission through a fake `sbatch` on PATH (a real executable that records its
arguments: this tests the CLI, not Slurm), a resume resubmitted, and `local` running a bench
workflow in the background to completion."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from helpers import ROOT, output, query, run_workflow

FAKE_SBATCH = """#!/bin/bash
# records what the CLI ran, then answers as sbatch does
printf '%s\\n' "$@" > "{rec}/args"
pwd > "{rec}/cwd"
{body}
"""


def fake(tmp_path: Path, name: str, body: str) -> dict:
    """An executable ``name`` in tmp_path/bin that records its arguments and cwd in tmp_path/rec;
    returns the environment that puts it first on PATH."""
    bindir, rec = tmp_path / "bin", tmp_path / "rec"
    bindir.mkdir(exist_ok=True)
    rec.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(FAKE_SBATCH.format(rec=rec, body=body))
    exe.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def submitted(tmp_path: Path) -> bool:
    return (tmp_path / "rec" / "args").exists()


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("*") if p.is_dir()) if runs.exists() else []


def submit(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_workflow(tmp_path / "runs", "--budget", "4", *args, env=env, timeout=120)


def script_of(p: subprocess.CompletedProcess) -> tuple[Path, str]:
    m = re.search(r"batch script for \S+ \(.*\): (\S+)", p.stdout)
    assert m, output(p)
    return Path(m.group(1)), Path(m.group(1)).read_text()


def test_slurm_dryrun_prints_the_script_and_submits_nothing(tmp_path):
    env = fake(tmp_path, "sbatch", 'echo "Submitted batch job 123"')
    p = submit(tmp_path, "--site", "slurm", "--nodes", "2", "--ppn", "4", "--walltime", "1:30:00",
               "--queue", "debug", "--account", "proj_1", "--exp", "dry", "--dryrun", "1", env=env)
    assert p.returncode == 0, output(p)
    path, script = script_of(p)
    assert script in p.stdout                         # printed whole
    assert not submitted(tmp_path)
    assert f"nothing submitted; submit it with: cd {path.parent} && sbatch job.sh" in p.stdout
    assert path.parent.parent == tmp_path / "runs" and path.name == "job.sh"
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --time=01:30:00",
                 "#SBATCH --partition=debug", "#SBATCH --account=proj_1",
                 "#SBATCH --output=job.out", "#SBATCH --job-name=dry"]:
        assert line in script.splitlines(), (line, script)
    assert script.startswith("#!/bin/bash\n")
    # the farm command: the prepared config, through mpiexec with NODES*PPN ranks
    cfg = path.parent / "config.json"
    last = shlex.split(script.splitlines()[-1])
    assert last[0] == "exec" and last[2:5] == ["-m", "emews_py.cli", "launch"]
    assert last[5] == str(cfg) and last[6] == "--"
    assert Path(last[7]).name == "mpiexec" and last[8:10] == ["-n", "8"]
    assert last[-3:] == ["-m", "emews_py.farm", str(cfg)]
    c = json.loads(cfg.read_text())
    assert (c["exp"], c["settings"]["max.budget"], c["settings"]["workers"]) == ("dry", 4, 7)


@pytest.mark.parametrize("site,lines", [
    ("pbs", ["#PBS -l nodes=3:ppn=2", "#PBS -l walltime=00:10:00", "#PBS -q batch",
             "#PBS -A proj", "#PBS -o job.out", "#PBS -j oe", "#PBS -N gen"]),
    ("lsf", ["#BSUB -n 6", '#BSUB -R "span[ptile=2]"', "#BSUB -W 00:10", "#BSUB -q batch",
             "#BSUB -P proj", "#BSUB -o job.out", "#BSUB -J gen"]),
])
def test_pbs_and_lsf_scripts(tmp_path, site, lines):
    p = submit(tmp_path, "--site", site, "--nodes", "3", "--ppn", "2", "--walltime", "00:10:00",
               "--queue", "batch", "--account", "proj", "--exp", "gen", "--dryrun")
    assert p.returncode == 0, output(p)
    path, script = script_of(p)
    for line in lines:
        assert line in script.splitlines(), (line, script)
    assert f"cd {ROOT}" in script
    assert "-n 6 " in script.splitlines()[-1] and str(path.parent / "config.json") in script
    if site == "lsf":    # bsub reads directives from its standard input
        assert f"cd {path.parent} && bsub < job.sh" in p.stdout


def test_queue_and_account_lines_are_left_out_when_not_given(tmp_path):
    p = submit(tmp_path, "--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime",
               "00:05:00", "--dryrun", "1")
    assert p.returncode == 0, output(p)
    _, script = script_of(p)
    assert "--partition" not in script and "--account" not in script
    assert "#SBATCH --nodes=1" in script and " -n 2 " in script


def test_submission_through_sbatch_parses_the_job_id(tmp_path):
    env = fake(tmp_path, "sbatch", 'echo "Submitted batch job 123"')
    p = submit(tmp_path, "--site", "slurm", "--nodes", "2", "--ppn", "4", "--walltime",
               "01:00:00", "--queue", "debug", env=env)
    assert p.returncode == 0, output(p)
    path, _ = script_of(p)
    rec = tmp_path / "rec"
    assert (rec / "args").read_text().splitlines() == [str(path)]
    assert (rec / "cwd").read_text().strip() == str(path.parent)   # job.out lands there
    assert "submitted to slurm: job 123" in p.stdout
    assert "`squeue -j 123`" in p.stdout and "`scancel 123`" in p.stdout
    assert f"tail -f {path.parent / 'job.out'}" in p.stdout and "emews status" in p.stdout


def test_sbatch_refusing_the_job_is_reported_with_its_own_error(tmp_path):
    env = fake(tmp_path, "sbatch", 'echo "sbatch: error: invalid partition specified: nope" >&2; '
                                   'exit 1')
    p = submit(tmp_path, "--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime",
               "01:00:00", "--queue", "nope", env=env)
    assert p.returncode == 2, output(p)
    assert "sbatch refused the job (exit status 1): sbatch: error: invalid partition " \
           "specified: nope" in p.stderr
    assert "submitted to" not in p.stdout


def test_sbatch_missing_from_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    # only what the CLI itself needs: R for the space file, no batch system (slurm-wlm is
    # installed here for test_slurm.py, in /usr/bin with R)
    for exe in ("R", "Rscript"):
        (empty / exe).symlink_to(shutil.which(exe))
    env = {"PATH": str(empty)}
    p = submit(tmp_path, "--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime",
               "01:00:00", env=env)
    assert p.returncode == 2, output(p)
    assert "sbatch is not on PATH (site file" in p.stderr and "Nothing was submitted" in p.stderr


def bad_site(tmp_path: Path) -> str:
    f = tmp_path / "mysite.toml"
    f.write_text('description = "no launcher"\nsubmit = ["sbatch", "{script}"]\n'
                 "job_id = '(\\d+)'\nscript = '''\n#!/bin/bash\nexec {command}\n'''\n")
    return str(f)


@pytest.mark.parametrize("args,says", [
    (["--site", "cobalt"], r"SITE='cobalt': there is no site file .*cobalt.toml \(the sites are: "
                           r"local, lsf, pbs, slurm\)"),
    (["--site", "BAD_SITE"], r"site file .*mysite.toml has no launcher: a site file needs "
                             r"submit, script, launcher, job_id"),
    (["--site", "slurm", "--ppn", "4", "--walltime", "01:00:00"], r"SITE=slurm needs NODES"),
    (["--site", "slurm", "--nodes", "0", "--ppn", "4", "--walltime", "01:00:00"],
     r"NODES='0': the number of nodes must be a positive integer"),
    (["--site", "slurm", "--nodes", "two", "--ppn", "4", "--walltime", "01:00:00"],
     r"NODES='two': the number of nodes must be a positive integer"),
    (["--site", "pbs", "--nodes", "2", "--ppn", "-4", "--walltime", "01:00:00"],
     r"PPN='-4': the number of MPI processes per node must be a positive integer"),
    (["--site", "slurm", "--nodes", "2", "--ppn", "4", "--walltime", "90"],
     r"WALLTIME='90': give the job's time limit as HH:MM:SS"),
    (["--site", "lsf", "--nodes", "2", "--ppn", "4", "--walltime", "1:75:00"],
     r"WALLTIME='1:75:00': give the job's time limit as HH:MM:SS"),
    (["--site", "slurm", "--nodes", "2", "--ppn", "4", "--walltime", "01:00:00", "--queue",
      "debug; rm -rf ~"], r"QUEUE='debug; rm -rf ~': a queue name is letters"),
    (["--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime", "01:00:00", "--dryrun",
      "maybe"], r"DRYRUN='maybe': use DRYRUN=1"),
    (["--nodes", "2"], r"NODES given without SITE"),
])
def test_bad_input_exits_2_naming_the_field_and_submits_nothing(tmp_path, args, says):
    env = fake(tmp_path, "sbatch", 'echo "Submitted batch job 1"')
    args = [bad_site(tmp_path) if a == "BAD_SITE" else a for a in args]
    p = submit(tmp_path, *args, env=env)
    assert p.returncode == 2, output(p)
    err = " ".join(p.stderr.split())
    assert re.search(says, err), err
    assert err.count("emews: error:") == 1 and "Traceback" not in p.stderr
    assert not submitted(tmp_path) and run_dirs(tmp_path / "runs") == []


def test_resume_resubmits_the_same_experiment(tmp_path):
    """RESUME=ID with SITE writes a script that continues experiment ID (its stored config,
    resume set) with NODES*PPN ranks; an interrupted experiment as a job's time limit leaves it."""
    p = submit(tmp_path, "--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime",
               "00:10:00", "--exp", "camp", "--dryrun", "1")
    assert p.returncode == 0, output(p)
    first, _ = script_of(p)
    eng = create_engine(f"sqlite:///{tmp_path / 'runs' / 'emews.db'}")
    with eng.begin() as c:
        c.execute(text("INSERT INTO experiments (name, pilot, algorithm, status, started_at, "
                       "settings, config, run_dir) VALUES ('camp', 'bench', 'random', "
                       "'interrupted', CURRENT_TIMESTAMP, :s, :c, :d)"),
                  {"s": json.dumps({"max.budget": 4}),
                   "c": (first.parent / "config.json").read_text(), "d": str(first.parent)})
    eng.dispose()
    env = fake(tmp_path, "sbatch", 'echo "Submitted batch job 77"')
    p = run_workflow(tmp_path / "runs", "--resume", "1", "--site", "slurm", "--nodes", "2",
                     "--ppn", "3", "--walltime", "02:00:00", env=env, timeout=120)
    assert p.returncode == 0, output(p)
    path, script = script_of(p)
    assert path.parent != first.parent and "resuming experiment 1 'camp'" in p.stdout
    c = json.loads((path.parent / "config.json").read_text())
    assert (c["resume"], c["exp"], c["run_dir"]) == (1, "camp", str(path.parent))
    assert "#SBATCH --job-name=camp-resume1" in script and " -n 6 " in script
    assert "submitted to slurm: job 77" in p.stdout and "RESUME=1" in p.stdout


def test_make_passes_the_batch_variables_through(tmp_path):
    env = dict(os.environ, EMEWS_RUNS=str(tmp_path / "runs"))
    p = subprocess.run(["make", "-s", "workflow", "SITE=pbs", "NODES=2", "PPN=2",
                        "WALLTIME=00:30:00", "QUEUE=short", "ACCOUNT=abc", "DRYRUN=1",
                        "BUDGET=4"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, output(p)
    _, script = script_of(p)
    for line in ["#PBS -l nodes=2:ppn=2", "#PBS -l walltime=00:30:00", "#PBS -q short",
                 "#PBS -A abc"]:
        assert line in script.splitlines(), (line, script)


def test_local_runs_a_bench_workflow_in_the_background_to_completion(tmp_path):
    runs = tmp_path / "runs"
    t0 = time.time()
    p = submit(tmp_path, "--site", "local", "--procs", "2", "--exp", "bg")
    assert p.returncode == 0, output(p)
    path, _ = script_of(p)
    m = re.search(r"submitted to local: job (\d+)", p.stdout)
    assert m, p.stdout
    pid = int(m.group(1))
    assert time.time() - t0 < 60   # returned without waiting for the run
    deadline = time.time() + 150
    while time.time() < deadline:   # gone, or a zombie nobody reaps (init of a container)
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.5)
    else:
        os.kill(pid, 15)
        pytest.fail(f"the background job ran past 150 s: {(path.parent / 'job.out').read_text()}")
    log = (path.parent / "job.out").read_text()
    rows = query(runs, "SELECT status, run_dir FROM experiments WHERE name = 'bg'")
    assert [r["status"] for r in rows] == ["completed"], log
    assert rows[0]["run_dir"] == str(path.parent)
    n = query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"]
    assert n == 4, log
    assert "[emews] experiment status: completed" in log


def wait_gone(pid: int, limit: float) -> bool:
    deadline = time.time() + limit
    while time.time() < deadline:   # gone, or a zombie nobody reaps
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.3)
    return False


def test_a_job_stopped_at_its_time_limit_is_resubmitted_with_resume(tmp_path):
    """SIGTERM to the job (what a batch system sends at the time limit) reaches `emews launch`
    through the script's exec: the experiment is recorded interrupted; the same submission
    with --resume finishes it as the same experiment."""
    from helpers import json_space
    runs = tmp_path / "runs"
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "sleep", "type": "discrete", "values": [0.7]}])
    p = run_workflow(runs, "--site", "local", "--procs", "2", "--budget", "12", "--algo",
                     "py_random", "--space", str(space), "--exp", "lim", timeout=120)
    assert p.returncode == 0, output(p)
    pid = int(re.search(r"submitted to local: job (\d+)", p.stdout).group(1))
    deadline = time.time() + 120
    while time.time() < deadline and not query(runs, "SELECT 1 FROM trials WHERE status = "
                                                     "'completed'"):
        time.sleep(0.3)
    os.kill(pid, 15)
    assert wait_gone(pid, 60)
    x = query(runs, "SELECT id, status FROM experiments")
    assert x == [{"id": 1, "status": "interrupted"}], x
    done = query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"]
    assert 1 <= done < 12
    p = run_workflow(runs, "--resume", "1", "--site", "local", "--procs", "3", timeout=120)
    assert p.returncode == 0, output(p)
    assert wait_gone(int(re.search(r"job (\d+)", p.stdout).group(1)), 150)
    assert query(runs, "SELECT id, status FROM experiments") == [{"id": 1, "status": "completed"}]
    assert query(runs, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'")[0]["n"] == 12
    assert [r["procs"] for r in query(runs, "SELECT procs FROM segments ORDER BY number")] == [2, 3]


def test_the_site_file_in_docs_is_the_shipped_one():
    doc = (ROOT / "docs" / "sites.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    shipped = "".join(line for line in (ROOT / "workflows/sites/slurm.toml").read_text()
                      .splitlines(keepends=True) if not line.startswith("# "))   # its comments
    assert block == shipped


def test_lsf_submission_gives_the_script_on_stdin(tmp_path):
    env = fake(tmp_path, "bsub", 'cat > "$(dirname "$0")/../rec/stdin"; '
                                 'echo "Job <4711> is submitted to queue <normal>."')
    p = submit(tmp_path, "--site", "lsf", "--nodes", "1", "--ppn", "2", "--walltime",
               "00:30:00", env=env)
    assert p.returncode == 0, output(p)
    path, script = script_of(p)
    assert (tmp_path / "rec" / "stdin").read_text() == script
    assert (tmp_path / "rec" / "args").read_text().strip() == ""   # no arguments
    assert "submitted to lsf: job 4711" in p.stdout and "`bkill 4711`" in p.stdout
