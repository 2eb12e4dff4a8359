"""Idle is idle: the CPU that waiting ranks burn, and how fast a trial starts after a wait.

    .venv/bin/python benchmarks/idle.py [--procs 129] [--idle 30] [--trials 5] [--modes new,old]

A real farm of PROCS ranks (1 driver, PROCS-1 resident workers, the bench pilot) whose EQ/Py
optimizer sends nothing until the benchmark has measured the ranks' CPU time (/proc utime+stime)
over IDLE seconds. Then the optimizer submits TRIALS single no-op trials, one at a time, each
after 2 s of quiet (every rank back in its longest sleep), and the benchmark reads each trial's
start latency, started_at - submitted_at, from the store. Modes, run in turn in one invocation:
``new`` (idle ranks sleep up to 30 ms, those on the driver's host up to 0.5 s, woken by the
driver's signal when it sends) and ``old`` (EMEWS_IDLE_WAIT_S=0.002: never more than 2 ms, no
signals, the back-off before issue 9).

Target: PROCS=129, the workers together < 5% of one core; every trial starts within 50 ms.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")

OPTIMIZER = '''"""Waits for the benchmark's go file, then submits single no-op trials after quiet spells."""
import os
import time

import eqpy


def run():
    go = os.environ["IDLE_BENCH_GO"]
    while not os.path.exists(go):
        time.sleep(0.2)
    for _ in range(int(os.environ["IDLE_BENCH_TRIALS"])):
        time.sleep(2.0)
        eqpy.submit([{"function": "noop"}])
        eqpy.results(min=1)
    eqpy.done({})
'''


def cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / TICK


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process under ``root``."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = {}, [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            try:
                out[k] = (Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ")
                          .decode(errors="replace"))
            except OSError:
                continue
            todo.append(k)
    return out


def one(mode: str, procs: int, idle: float, trials: int, runs: Path) -> dict:
    algo = runs / "idle_optimizer.py"
    algo.write_text(OPTIMIZER)
    space = runs / "noop_space.json"
    space.write_text(json.dumps({"params": [{"id": "function", "type": "discrete", "values": ["noop"]}]}))
    go = runs / f"go-{mode}"
    env = dict(os.environ, IDLE_BENCH_GO=str(go), IDLE_BENCH_TRIALS=str(trials))
    env.pop("EMEWS_IDLE_WAIT_S", None)
    if mode == "old":
        env["EMEWS_IDLE_WAIT_S"] = "0.002"
    exp = f"idle-{mode}"
    p = subprocess.Popen([str(BIN / "emews"), "workflow", "--pilot", "bench", "--algo", str(algo),
                          "--procs", str(procs), "--budget", str(trials), "--space", str(space),
                          "--runs", str(runs), "--exp", exp],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in p.stdout:  # the driver says once that every worker has imported the pilot
        lines.append(line)
        if "imported pilot" in line:
            break
    else:
        sys.exit(f"{mode}: the farm did not start:\n{''.join(lines)[-3000:]}")
    pids = set()
    for wl in runs.rglob("workers.log"):
        if exp in str(wl):
            pids |= {int(m) for m in re.findall(r"\(pid (\d+) ", wl.read_text())}
    if not pids:
        pids = {int(m) for m in re.findall(r"\(pid (\d+) ", "".join(
            wl.read_text() for wl in runs.rglob("workers.log")))}
    tree = descendants(p.pid)
    workers = {q for q in tree if q in pids}
    children = {q for q, c in tree.items() if "emews_py.farm.child" in c}
    driver = {q for q, c in tree.items() if "emews_py.farm" in c and q not in workers
              and q not in children}
    assert len(workers) == procs - 1, (len(workers), procs)
    time.sleep(3.0)  # past IDLE_AFTER_S: every rank in its idle sleep
    groups = {"workers": workers, "driver": driver, "children": children}
    before = {g: sum(cpu(q) for q in s) for g, s in groups.items()}
    t0 = time.perf_counter()
    time.sleep(idle)
    span = time.perf_counter() - t0
    used = {g: sum(cpu(q) for q in s) - before[g] for g, s in groups.items()}
    go.touch()
    rest = p.stdout.read()
    if p.wait() != 0:
        sys.exit(f"{mode}: the run failed:\n{(''.join(lines) + rest)[-3000:]}")
    eng = create_engine(f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        lat = [r[0] * 86400 for r in c.execute(text(
            "SELECT julianday(t.started_at) - julianday(t.submitted_at) FROM trials t "
            "JOIN experiments e ON e.id = t.experiment_id WHERE e.name = :n ORDER BY t.id"),
            {"n": exp})]
    eng.dispose()
    return {"mode": mode, "span": span, "used": used, "latency_ms": [x * 1000 for x in lat]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=129)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--modes", default="new,old")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in a.modes.split(","):
            runs = Path(tmp) / mode
            runs.mkdir()
            r = one(mode, a.procs, a.idle, a.trials, runs)
            u, s = r["used"], r["span"]
            lat = r["latency_ms"]
            print(f"{mode:>3}: {a.procs - 1} idle workers {100 * u['workers'] / s:5.1f}% of a core, "
                  f"driver {100 * u['driver'] / s:4.1f}%, children {100 * u['children'] / s:4.1f}% "
                  f"(over {s:.0f} s); trial start latency ms: "
                  f"{' '.join(f'{x:.1f}' for x in lat)} (max {max(lat) if lat else float('nan'):.1f})",
                  flush=True)


if __name__ == "__main__":
    main()
