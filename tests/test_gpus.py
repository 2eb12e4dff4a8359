"""GPUS_PER_NODE without a GPU: each worker rank gets a GPU by its rank among the workers on its
node (MPI_COMM_TYPE_SHARED), as CUDA_VISIBLE_DEVICES in the environment its resident
interpreter (the pilot's process) or app-mode trial starts with, recorded in trials.gpu; more
workers than GPUs share them round-robin with TensorFlow's memory growth on; batch scripts ask
for the GPUs; bad values are refused before anything starts."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import EMEWS, ROOT, json_space, output, query, run_workflow


def space(tmp_path: Path, sleep: float) -> Path:
    return json_space(tmp_path / "space.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "sleep", "type": "discrete", "values": [sleep]}])


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH",
                        "EMEWS_GPUS_PER_NODE")}
    env.update(extra)
    return env


def gpus_by_worker(runs: Path) -> dict:
    rows = query(runs, "SELECT worker, gpu, COUNT(*) AS n FROM trials WHERE status = "
                       "'completed' GROUP BY worker, gpu ORDER BY worker")
    assert len({r["worker"] for r in rows}) == len(rows), rows   # one GPU per worker
    return {r["worker"]: r["gpu"] for r in rows}


def proc_env(pid: int) -> dict:
    return dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0")
                if "=" in kv)


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_four_workers_on_a_node_with_two_gpus_share_them_by_node_rank(tmp_path):
    """PROCS=5: the driver and 4 workers on this one node, GPUS_PER_NODE=2: workers 1..4 get
    GPUs 0, 1, 0, 1; the pilots' interpreters start with that CUDA_VISIBLE_DEVICES and
    TensorFlow's memory growth on (two share each GPU)."""
    runs = tmp_path / "runs"
    cmd = [EMEWS, "workflow", "--runs", str(runs), "--procs", "5", "--budget", "16",
           "--algo", "py_random", "--space", str(space(tmp_path, 0.6)), "--gpus-per-node", "2"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        seen: dict[int, dict] = {}
        deadline = time.time() + 90
        while time.time() < deadline and len(seen) < 4:
            logs = list(runs.glob("*/workers.log"))
            text = logs[0].read_text() if logs else ""
            for rank, pid in re.findall(r"worker (\d+) \(pid (\d+) on", text):
                kids = [k for k in children(int(pid))
                        if b"emews_py.farm.child" in Path(f"/proc/{k}/cmdline").read_bytes()]
                if kids and int(rank) not in seen:
                    seen[int(rank)] = proc_env(kids[0])
            time.sleep(0.1)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out
    assert {r: e.get("CUDA_VISIBLE_DEVICES") for r, e in seen.items()} == \
        {1: "0", 2: "1", 3: "0", 4: "1"}, out
    assert all(e.get("TF_FORCE_GPU_ALLOW_GROWTH") == "true" for e in seen.values())
    assert gpus_by_worker(runs) == {1: "0", 2: "1", 3: "0", 4: "1"}
    assert "GPUS_PER_NODE=2: 4 workers on" in out and "share 2 GPUs (0, 1)" in out, out


def test_app_mode_uses_the_gpus_the_batch_system_gave(tmp_path):
    """CUDA_VISIBLE_DEVICES=5,7,9 from the batch system and GPUS_PER_NODE=2: the two workers use
    5 and 7; every app-mode trial records its worker's GPU."""
    runs = tmp_path / "runs"
    p = run_workflow(runs, "--procs", "3", "--budget", "6", "--mode", "app", "--algo",
                     "py_random", "--space", str(space(tmp_path, 0.0)), "--gpus-per-node", "2",
                     env=clean_env(CUDA_VISIBLE_DEVICES="5,7,9"), timeout=150)
    assert p.returncode == 0, output(p)
    assert gpus_by_worker(runs) == {1: "5", 2: "7"}
    assert "share" not in p.stdout   # one worker per GPU
    assert query(runs, "SELECT COUNT(*) AS n FROM trials WHERE gpu IS NULL")[0]["n"] == 0


def test_without_gpus_the_column_stays_empty(tmp_path):
    runs = tmp_path / "runs"
    p = run_workflow(runs, "--procs", "2", "--budget", "3", "--algo", "py_random",
                     "--space", str(space(tmp_path, 0.0)), env=clean_env(), timeout=120)
    assert p.returncode == 0, output(p)
    assert [r["gpu"] for r in query(runs, "SELECT gpu FROM trials")] == [None] * 3


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_gpus_per_node_is_refused_before_anything_starts(tmp_path, value):
    for site in ([], ["--site", "slurm", "--nodes", "1", "--ppn", "2", "--walltime",
                      "00:10:00", "--dryrun", "1"]):
        p = run_workflow(tmp_path / "runs", "--budget", "2", "--gpus-per-node", value, *site,
                         timeout=60)
        assert p.returncode == 2, output(p)
        err = " ".join(p.stderr.split())
        assert f"GPUS_PER_NODE={value!r}" in err and "positive integer" in err, err
        assert err.count("emews: error:") == 1 and "Traceback" not in p.stderr
        assert not (tmp_path / "runs").exists() or not any(
            d.is_dir() for d in (tmp_path / "runs").iterdir())


def script_of(p: subprocess.CompletedProcess) -> str:
    m = re.search(r"batch script for \S+ \(.*\): (\S+)", p.stdout)
    assert m, output(p)
    return Path(m.group(1)).read_text()


def test_batch_scripts_ask_for_the_gpus_and_pass_them_to_the_job(tmp_path):
    env = dict(os.environ, EMEWS_RUNS=str(tmp_path / "runs"))
    sp = space(tmp_path, 0.0)   # JSON: no R start-up per script
    p = subprocess.run(["make", "-s", "workflow", "SITE=slurm", "NODES=2", "PPN=4",
                        "WALLTIME=00:30:00", "GPUS_PER_NODE=4", "DRYRUN=1", "BUDGET=4",
                        f"SPACE={sp}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, output(p)
    script = script_of(p)
    assert "#SBATCH --gpus-per-node=4" in script.splitlines(), script
    assert " launch --gpus-per-node 4 " in script.splitlines()[-1], script
    # not given: no directive, no option
    p = run_workflow(tmp_path / "runs", "--budget", "4", "--site", "lsf", "--nodes", "1",
                     "--ppn", "2", "--walltime", "00:10:00", "--dryrun", "1", "--space",
                     str(sp), timeout=60)
    assert p.returncode == 0, output(p)
    script = script_of(p)
    assert "-gpu" not in script and "--gpus-per-node" not in script, script
    # a site whose nodes have GPUs says so once, in its file; GPUS_PER_NODE overrides it
    site = tmp_path / "gpusite.toml"
    site.write_text((ROOT / "workflows/sites/slurm.toml").read_text() + "gpus_per_node = 8\n")
    for given, want in (([], "8"), (["--gpus-per-node", "2"], "2")):
        p = run_workflow(tmp_path / "runs", "--budget", "4", "--site", str(site), "--nodes",
                         "1", "--ppn", "2", "--walltime", "00:10:00", "--dryrun", "1", "--space",
                         str(sp), *given, timeout=60)
        assert p.returncode == 0, output(p)
        script = script_of(p)
        assert f"#SBATCH --gpus-per-node={want}" in script.splitlines(), script
        assert f" launch --gpus-per-node {want} " in script, script
