"""What a user sees while a workflow runs: the optimizer's lines once and clean, one start-up line
for all workers, the plain progress line of a batch job's log, the live line on a terminal."""
from __future__ import annotations

import fcntl
import math
import os
import re
import select
import struct
import subprocess
import termios
import time

from helpers import EMEWS, ROOT, algorithm, output, query, run_workflow

# An R optimizer that talks the way optimizers do: cat, message, print, a line in two pieces.
TALK_R = """\
settings <- eq_settings()
cat("talk: starting\\n")
message("talk: a message")
cat("talk: one line ")
cat("in two pieces\\n")
OUT_put('{"x1": 1.0, "x2": 2.0};{"x1": 2.0, "x2": 3.0};{"x1": 3.0, "x2": 4.0}')
ys <- IN_get()
print("talk: printed")
message("talk: done")
OUT_put("DONE")
OUT_put('{"ok": true}')
"""

# Two batches of two trials of 1.5 s on 2 workers; the first batch has a failing trial, so the
# counts while the second batch runs are known: 1 completed (branin(3, 2)), 2 running, 1 failed.
STAGED_R = """\
settings <- eq_settings()
OUT_put(paste0('{"x1": 1.0, "x2": 2.0, "sleep": 1.5, "fail": true};',
               '{"x1": 3.0, "x2": 2.0, "sleep": 1.5, "fail": false}'))
ys <- IN_get()
cat("staged: first batch back\\n")
OUT_put(paste0('{"x1": 2.0, "x2": 3.0, "sleep": 1.5, "fail": false};',
               '{"x1": 9.0, "x2": 2.0, "sleep": 1.5, "fail": false}'))
ys <- IN_get()
OUT_put("DONE")
OUT_put('{"ok": true}')
"""
STAGED_SPACE = """\
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15),
  makeDiscreteParam("sleep", values = c(1.5)),
  makeLogicalParam("fail", default = FALSE)
)
"""


def staged(tmp_path) -> tuple[dict, str]:
    space = tmp_path / "staged_space.R"
    space.write_text(STAGED_SPACE)
    return algorithm(tmp_path, "staged.R", STAGED_R), str(space)


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def test_optimizer_lines_once_without_rpy2_noise_and_one_startup_line(tmp_path):
    env = algorithm(tmp_path, "talk.R", TALK_R)
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "talk", "--procs", "4",
                     "--budget", "3", env=env)
    out = output(p)
    assert p.returncode == 0, out
    opt = [line for line in out.splitlines() if line.startswith("[optimizer]")]
    for said in ("talk: starting", "talk: a message", "talk: one line in two pieces",
                 '[1] "talk: printed"', "talk: done"):
        assert opt.count(f"[optimizer] {said}") == 1, (said, opt)
    assert "R[write to console]" not in out
    assert all(line.strip() != "[optimizer]" for line in opt), opt
    # 3 workers: one start-up line, the per-worker detail in the run directory
    assert len(re.findall(r"imported pilot", out)) == 1, out
    assert re.search(r"^\[emews\] 3 workers imported pilot 'bench' in [\d.]+(–[\d.]+)? s$", out,
                     re.M), out
    run_dir = re.search(r"run directory: (\S+)", out).group(1)
    detail = open(os.path.join(run_dir, "workers.log")).read().splitlines()
    assert sorted(d.split(" (")[0] for d in detail) == ["worker 1", "worker 2", "worker 3"]
    # a run shorter than the plain period (30 s) prints no progress line
    assert "progress:" not in out


PLAIN = re.compile(r"^\[emews\] progress: (\d+)/4 completed, (\d+) running, (\d+) failed, "
                   r"best (\S+), (\d+)s elapsed, (\?|~\d+s) left$", re.M)


def test_plain_progress_lines_in_a_log(tmp_path):
    env, space = staged(tmp_path)
    env["EMEWS_PROGRESS_EVERY"] = "0.5"   # test knob: the period of the plain line (default 30 s)
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "staged", "--procs", "3",
                     "--budget", "4", "--space", space, env=env)
    out = output(p)
    assert p.returncode == 0, out
    lines = PLAIN.findall(out)
    assert len(lines) >= 4, out
    best1 = f"{branin(3.0, 2.0):.4g}"
    states = {(c, r, f, b) for c, r, f, b, _, _ in lines}
    assert ("0", "2", "0", "-") in states, lines               # first batch running
    assert ("1", "2", "1", best1) in states, lines             # second batch running
    for c, r, f, b, _, left in lines:
        assert int(c) <= 3 and int(r) <= 2 and int(f) <= 1
        assert (b == "-") == (c == "0")
        if int(c) + int(f) < 3:
            assert left == "?"                                 # too few trials for a rate
    elapsed = [int(e) for *_, e, _ in lines]
    assert elapsed == sorted(elapsed)
    assert query(tmp_path, "SELECT count(*) AS n FROM trials WHERE status = 'failed'")[0]["n"] == 1


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: the few controls rich's live display uses (CR, LF,
    erase line, cursor up); any other escape sequence fails the test."""
    rows, y, x = [""], 0, 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\x1b":
            # (no cursor hiding: a killed run would leave the user's cursor hidden)
            m = re.match(r"\x1b\[(\d*)([AK])", raw[i:])
            assert m, f"unexpected escape sequence {raw[i:i + 10]!r}"
            if m.group(2) == "K":
                rows[y] = ""
            else:
                y = max(0, y - int(m.group(1) or 1))
            i += len(m.group(0))
            continue
        if ch == "\r":
            x = 0
        elif ch == "\n":
            y += 1
            x = 0
            if y == len(rows):
                rows.append("")
        else:
            rows[y] = rows[y][:x].ljust(x) + ch + rows[y][x + 1:]
            x += 1
        i += 1
    return rows


def test_live_line_on_a_terminal(tmp_path):
    algo_env, space = staged(tmp_path)
    env = dict(os.environ, **algo_env)
    env.pop("EMEWS_PROGRESS", None)
    env.pop("COLUMNS", None)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(tmp_path), "--pilot", "bench",
                             "--algo", "staged", "--procs", "3", "--budget", "4",
                             "--space", space],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env)
    os.close(slave)
    chunks, deadline = [], time.time() + 180
    try:
        while time.time() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:   # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    raw = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, raw
    # the live line was drawn and redrawn in place ...
    assert raw.count("\x1b[2K") >= 4, raw
    assert re.search(r"1/4 completed, 2 running, 1 failed, best \S+, \d+s elapsed", raw), raw
    shown = screen(raw)
    text = "\n".join(shown)
    # ... and at the end it is gone: what stays is whole lines, the summary last
    assert not any("running," in line for line in shown), text
    assert "[optimizer] staged: first batch back" in shown, text
    for line in shown:
        assert line == "" or line.startswith(("[emews] ", "[optimizer] ")), (line, text)
    summary = [line for line in shown if line.startswith("[emews] ")][-6:]
    assert summary[0].startswith("[emews] run directory: ")
    assert "[emews] trials by status: completed 3, failed 1" in summary, text


def test_the_line_counts_early_stopped_trials_as_finished_not_failed():
    """STOPPER: a stopped trial is neither completed nor failed; the line says how many, and the
    estimate of what is left counts them as done."""
    from types import SimpleNamespace as T

    from emews_py.farm.progress import Progress
    from emews_py.trials import TrialStatus as S
    p = Progress(10, mode="plain", start=0.0)
    for st, obj in [(S.COMPLETED, 0.5), (S.COMPLETED, 0.3), (S.STOPPED, 0.9), (S.STOPPED, 0.8),
                    (S.FAILED, None)]:
        p.finished(T(status=st, objective=obj))
    line = p.text(100.0, running=2)
    assert line.startswith("2/10 completed, 2 stopped, 2 running, 1 failed, best 0.3, ")
    assert line.endswith("~1m40s left")   # 5 left at 5 per 100 s
    assert "stopped" not in Progress(10, mode="plain", start=0.0).text(1.0, running=0)
