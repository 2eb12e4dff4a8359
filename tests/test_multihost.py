"""A search across more than one host: `emews workflow --hosts` (HOSTS=...).

The two-host test runs the farm across two "hosts" made of network namespaces
(tests/netns_hosts.py): hydra launches through `nsrsh` as it would through ssh, MPI crosses the
veth (UCX_TLS=tcp,self: otherwise UCX sees one kernel and uses shared memory), the store is a
PostgreSQL server listening on the first host's address, and every client of it, the test's own
queries included, runs inside a namespace. The other tests need no namespaces.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emews_py.config import RunConfig
from helpers import EMEWS, ROOT, output, query, run_workflow
from netns_hosts import Hosts, NetnsPostgres, unavailable

PY = sys.executable
QUERY = """
import json, sys
from sqlalchemy import create_engine, text
eng = create_engine(sys.argv[1])
with eng.connect() as c:
    print(json.dumps([[dict(r._mapping) for r in c.execute(text(q))] for q in sys.argv[2:]],
                     default=str))
"""


SLOW_SPACE = """\
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeDiscreteParam("sleep", values = c(0.4))
)
"""


@pytest.fixture(scope="module")
def two_hosts():
    why = unavailable()
    if why:
        pytest.skip(f"two namespace hosts cannot be made here: {why}")
    hosts = Hosts().up()
    pg = None
    try:
        pg = NetnsPostgres(hosts, hosts.a).start()
        yield hosts, pg
    finally:
        if pg is not None:
            pg.stop()
        hosts.down()   # also kills whatever a failed run left in the namespaces


def sql(hosts: Hosts, host: str, url: str, *queries: str) -> list[list[dict]]:
    """Rows of each query, asked from inside ``host`` (the store's address exists only there)."""
    p = hosts.run(host, [PY, "-c", QUERY, url, *queries], cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_workflow_across_two_hosts_with_the_store_on_postgres(two_hosts, tmp_path):
    hosts, pg = two_hosts
    a, b = hosts.a, hosts.b
    runs = tmp_path / "runs"
    # trials of 0.2 s: they go one at a time (not in one chunk), so every worker gets some
    space = tmp_path / "space.R"
    space.write_text(SLOW_SPACE.replace("0.4", "0.2"))
    env = dict(os.environ, UCX_TLS="tcp,self",
               # hydra's remote shell: nsrsh instead of ssh (a real cluster needs neither)
               HYDRA_LAUNCHER="ssh", HYDRA_LAUNCHER_EXEC=str(hosts.nsrsh))
    env.pop("EMEWS_LAUNCHER", None)
    # The CLI, mpiexec, the driver and the optimizer run in host a; `timeout` kills the whole
    # process group if the launch hangs (a failed multi-host start can ignore SIGTERM).
    cmd = ["timeout", "-s", "KILL", "100", EMEWS, "workflow", "--runs", runs, "--db", pg.url,
           "--exp", "across", "--pilot", "bench", "--algo", "random", "--budget", "12",
           "--space", space, "--hosts", f"{a}:2,{b}:2"]
    p = hosts.run(a, cmd, env=env, cwd=ROOT, timeout=130)
    out = output(p)
    assert p.returncode == 0, out[-4000:]
    # PROCS is the hosts' sum: one driver and three workers, rank 0 on the first host
    launch = next(ln for ln in out.splitlines() if "emews_py.farm" in ln)
    assert f"-hosts {a}:2,{b}:2 -n 4 " in launch
    assert "3 workers on 2 hosts imported pilot 'bench'" in out
    assert "experiment status: completed" in out

    # The store as a user on the other host sees it
    mine = "(SELECT id FROM experiments WHERE name = 'across')"
    exps, trials, segs = sql(
        hosts, b, pg.url, "SELECT id, status, run_dir FROM experiments WHERE name = 'across'",
        f"SELECT host, status, worker FROM trials WHERE experiment_id IN {mine}",
        f"SELECT host, procs FROM segments WHERE experiment_id IN {mine}")
    assert [e["status"] for e in exps] == ["completed"]
    assert len(trials) == 12 and {t["status"] for t in trials} == {"completed"}
    assert {t["host"] for t in trials} == {a, b}
    # ranks 0-1 on a, 2-3 on b
    assert {t["worker"] for t in trials if t["host"] == b} <= {2, 3}
    assert {t["worker"] for t in trials if t["host"] == a} == {1}
    assert [(s["host"], s["procs"]) for s in segs] == [(a, 4)]
    # The EQ socket stayed on the driver's host: a local ipc:// endpoint, never a network one
    cfg = json.loads((Path(exps[0]["run_dir"]) / "config.json").read_text())
    assert cfg["endpoint"].startswith("ipc://")
    log = (Path(exps[0]["run_dir"]) / "workers.log").read_text()
    assert f"on {a})" in log and f"on {b})" in log


def test_only_workers_on_the_drivers_host_are_woken_by_signal(two_hosts):
    """A pid means a process only on its own host: the driver signals a worker only when the
    worker's node (hostname, kernel, PID namespace) is its own."""
    hosts, _ = two_hosts
    ask = ("import json, os, sys; from emews_py.farm.transport import node_id, signalable; "
           "other = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None; "
           "print(json.dumps({'node': node_id(), 'pid': os.getpid(), "
           "'wakes_other': other and signalable(other)}))")
    there = json.loads(hosts.run(hosts.b, [PY, "-c", ask], cwd=ROOT).stdout)
    here = json.loads(hosts.run(hosts.a, [PY, "-c", ask, json.dumps(there)], cwd=ROOT).stdout)
    assert here["node"] != there["node"] and here["wakes_other"] is False
    from emews_py.farm.transport import node_id, signalable
    assert signalable({"pid": os.getpid(), "node": node_id()})
    # same hostname on another machine (another kernel): not signalled either
    host, boot, pidns = node_id().split("/")
    assert not signalable({"pid": os.getpid(), "node": f"{host}/not-{boot}/{pidns}"})
    assert not signalable({"pid": os.getpid(), "host": socket.gethostname()})


def test_hosts_from_a_host_file_set_procs_and_reach_mpiexec(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text(f"# one host here, three ranks\n{socket.gethostname()}:3\n")
    env = {"UCX_TLS": "tcp,self"}
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "py_random", "--budget", "6",
                     "--hosts", str(hostfile), env=env, timeout=120)
    assert p.returncode == 0, output(p)[-3000:]
    launch = next(ln for ln in output(p).splitlines() if "emews_py.farm" in ln)
    assert f" -f {hostfile} -n 3 " in launch
    rows = query(tmp_path, "SELECT status, worker FROM trials")
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed"}
    assert {r["worker"] for r in rows} <= {1, 2}


@pytest.mark.parametrize("hosts, extra, env, says", [
    ("n1:0,n2:2", [], {}, "'n1:0' is not a host name"),
    ("n1 n2", [], {}, "'n1 n2' is not a host name"),
    ("n1:two", [], {}, "'n1:two' is not a host name"),
    ("./no-such-hostfile", [], {}, "the host file cannot be read"),
    ("n1:2,n2:2", ["--site", "local"], {}, "the batch system chooses the nodes"),
    ("n1:2,n2:2", [], {"EMEWS_LAUNCHER": "srun -n {procs}"}, "EMEWS_LAUNCHER is set"),
])
def test_bad_hosts_are_refused_before_anything_starts(tmp_path, hosts, extra, env, says):
    p = run_workflow(tmp_path, "--hosts", hosts, *extra, env=env, timeout=60)
    assert p.returncode == 2, output(p)
    assert "HOSTS" in p.stderr and says in p.stderr
    assert not any(tmp_path.glob("*-bench-*")), "no run directory for refused input"


def test_empty_host_file_is_refused(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# nothing yet\n\n")
    p = run_workflow(tmp_path, "--hosts", str(hostfile), timeout=60)
    assert p.returncode == 2 and "names no host" in p.stderr, output(p)


def test_a_rank_that_cannot_read_the_run_directory_ends_the_job(tmp_path):
    """What a host without the shared run directory sees: the job ends at once, naming the rank
    and host and saying that every host must see the run directory."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = run_dir / "config.json"
    RunConfig(exp="unseen", pilot="bench", algo="py_random",
              algo_file=str(ROOT / "py_algorithms" / "py_random.py"),
              db=f"sqlite:///{tmp_path / 'emews.db'}", run_dir=str(run_dir),
              endpoint=f"ipc://{tmp_path}/eq.sock", settings={"max.budget": 2}).write(cfg)
    missing = tmp_path / "elsewhere" / "config.json"
    mpiexec = Path(sys.executable).parent / "mpiexec"
    p = subprocess.run(["timeout", "-s", "KILL", "60", str(mpiexec),
                        "-n", "1", PY, "-m", "emews_py.farm", str(cfg), ":",
                        "-n", "1", PY, "-m", "emews_py.farm", str(missing)],
                       capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert p.returncode not in (0, 137), output(p)
    assert f"rank 1 on host {socket.gethostname()}" in p.stderr
    assert str(missing) in p.stderr and "every host must see the run directory" in p.stderr


def test_sigterm_to_the_cli_on_another_host_than_the_driver_stops_cleanly(two_hosts, tmp_path):
    """`make workflow` started on host b with the driver (rank 0, the first host) on a: the
    driver's pid means nothing on b, so the stop reaches it through the shared run directory,
    and the run ends recorded `interrupted`, as on one host."""
    hosts, pg = two_hosts
    a, b = hosts.a, hosts.b
    space = tmp_path / "space.R"
    space.write_text(SLOW_SPACE)
    env = dict(os.environ, UCX_TLS="tcp,self", HYDRA_LAUNCHER="ssh",
               HYDRA_LAUNCHER_EXEC=str(hosts.nsrsh), EMEWS_PROGRESS="plain",
               EMEWS_PROGRESS_EVERY="0.5")
    env.pop("EMEWS_LAUNCHER", None)
    runs = tmp_path / "runs"
    cmd = ["timeout", "-s", "KILL", "100", EMEWS, "workflow", "--runs", runs, "--db", pg.url,
           "--exp", "stopped", "--pilot", "bench", "--algo", "random", "--budget", "60",
           "--space", space, "--hosts", f"{a}:2,{b}:2"]
    proc = subprocess.Popen(hosts.argv(b, cmd), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # `ip netns exec`, unshare and sh exec in turn: proc is `timeout`, the CLI its child
        deadline = time.time() + 20
        cli = None
        while cli is None and time.time() < deadline:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            cli = int(kids[0]) if kids else None
            time.sleep(0.1)
        assert cli is not None, "the CLI did not start"
        # the plain progress line says how many completed, without a query (each one is a
        # Python start inside a namespace: seconds on a loaded machine)
        seen = []
        for line in proc.stdout:
            seen.append(line)
            m = re.search(r"progress: (\d+)/60 completed", line)
            if m and int(m.group(1)) >= 4:
                break
        assert proc.poll() is None, "".join(seen)
        t0 = time.time()
        os.kill(cli, signal.SIGTERM)   # the CLI alone, as `kill PID` or make would
        out, _ = proc.communicate(timeout=40)
        out = "".join(seen) + out
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, 137), out
    assert took < 15, (took, out)
    assert "SIGTERM: stopping the run" in out and out.count("Resume with") == 1, out
    mine = "(SELECT id FROM experiments WHERE name = 'stopped')"
    exps, segs, st = sql(
        hosts, b, pg.url, "SELECT status, run_dir FROM experiments WHERE name = 'stopped'",
        f"SELECT host, status FROM segments WHERE experiment_id IN {mine}",
        f"SELECT DISTINCT status FROM trials WHERE experiment_id IN {mine}")
    assert [e["status"] for e in exps] == ["interrupted"], out
    assert [(s["host"], s["status"]) for s in segs] == [(a, "interrupted")]
    assert {r["status"] for r in st} <= {"completed", "interrupted"}
    assert int(re.search(r"interrupted by SIGTERM: (\d+) trial", out).group(1)) < 60, out
    run_dir = Path(exps[0]["run_dir"])
    assert (run_dir / "stop-request").exists()   # the route it took: not a pid signal
    left = [p for h in (a, b) for p in hosts.pids(h)
            if b"emews_py" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert not left, left


def test_make_passes_hosts(tmp_path):
    p = subprocess.run(["make", "-s", "workflow", "HOSTS=n1:0", f"EMEWS_RUNS={tmp_path}"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode != 0 and "HOSTS='n1:0'" in p.stderr, output(p)
    assert not any(tmp_path.glob("*-bench-*"))
