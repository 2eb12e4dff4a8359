"""emews_py.space.Space.transform: the space's R trafos through one resident R process
(eq/R/space.R serve), as Python optimizers (optuna, py_random) use it for every new point."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from emews_py.space import Space, SpaceError, load_space
from helpers import ROOT

EXAMPLE = ROOT / "workflows" / "candle_example_space.R"
POINT = {"batch_size": 7, "learning_rate": -3, "dropout": 0.5, "epochs": 4, "activation": "elu",
         "optimizer": "sgd", "dense": 128, "batch_normalization": True}


def one_shot(space_file, points) -> list[dict]:
    """What `Rscript eq/R/space.R transform` (a fresh R per call) prints for these points."""
    out = subprocess.run(["Rscript", "--vanilla", str(ROOT / "eq" / "R" / "space.R"), "transform",
                          str(space_file), json.dumps(points)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped) is not alive either
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:   # it ended between the two looks
        return False


def test_resident_r_transforms_as_the_one_shot_cli_and_stays_up():
    space = Space(load_space(EXAMPLE))
    pts = [POINT, {**POINT, "batch_size": 10, "learning_rate": -1.5}]
    got = space.transform(pts)
    assert got == one_shot(EXAMPLE, pts)
    assert got[0]["batch_size"] == 128 and got[0]["learning_rate"] == pytest.approx(1e-3)
    pid = space._trafo.proc.pid
    for _ in range(20):   # every later point goes to the same R
        assert space.transform([POINT])[0]["batch_size"] == 128
    assert space._trafo.proc.pid == pid
    space.close()
    assert not alive(pid)


def test_a_bad_point_is_refused_with_rs_paragraph_and_the_r_process_serves_on():
    space = Space(load_space(EXAMPLE))
    space.transform([POINT])
    pid = space._trafo.proc.pid
    with pytest.raises(SpaceError, match="'nope' is not one of the values of discrete "
                                         "parameter 'activation'"):
        space.transform([{**POINT, "activation": "nope"}])
    assert space.transform([POINT])[0]["dense"] == 128
    assert space._trafo.proc.pid == pid
    space.close()


def test_a_killed_r_is_reported_naming_the_space_and_the_next_call_starts_another():
    space = Space(load_space(EXAMPLE))
    space.transform([POINT])
    old = space._trafo.proc.pid
    os.kill(old, signal.SIGKILL)
    space._trafo.proc.wait()
    with pytest.raises(SpaceError, match=r"R process applying the trafo of search space "
                                         r".*candle_example_space\.R had ended \(exit status -9\)"):
        space.transform([POINT])
    assert space.transform([POINT])[0]["batch_size"] == 128
    assert space._trafo.proc.pid != old
    space.close()


def test_a_trafo_that_prints_or_hangs(tmp_path):
    f = tmp_path / "space.R"
    f.write_text('param.set <- makeParamSet(\n'
                 '  makeNumericParam("lr", lower = -4, upper = -1,\n'
                 '    trafo = function(x) { print("chatty"); if (x > -1.5) Sys.sleep(60); 10^x }))\n')
    space = Space(load_space(f))
    assert space.transform([{"lr": -2}]) == [{"lr": pytest.approx(0.01)}]   # stdout stays JSON
    space._trafo.timeout = 2
    pid = space._trafo.proc.pid
    t0 = time.monotonic()
    with pytest.raises(SpaceError, match=r"did not answer within 2 s .*space\.R"):
        space.transform([{"lr": -1.2}])
    assert time.monotonic() - t0 < 30
    assert not alive(pid)
    space._trafo.timeout = 120   # the next call starts a new R: slow on a loaded machine
    assert space.transform([{"lr": -3}]) == [{"lr": pytest.approx(0.001)}]
    space.close()


def test_the_r_process_ends_with_its_optimizer_even_without_close():
    code = ("import sys; from emews_py.space import Space, load_space; "
            f"s = Space(load_space({str(EXAMPLE)!r})); s.transform([{POINT!r}]); "
            "print(s._trafo.proc.pid, flush=True); import os; os._exit(0)")   # no atexit either
    pid = int(subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_the_r_process_dies_with_its_optimizer_even_inside_a_hung_trafo(tmp_path):
    # the optimizer is SIGKILLed while R runs a trafo that sleeps 60 s: R does not read stdin
    # then, so only the kernel's parent-death signal can end it
    f = tmp_path / "space.R"
    f.write_text('param.set <- makeParamSet(makeNumericParam("lr", lower = -4, upper = -1,\n'
                 '  trafo = function(x) { if (x > -1.5) Sys.sleep(60); 10^x }))\n')
    code = ("from emews_py.space import Space, load_space; "
            f"s = Space(load_space({str(f)!r})); s.transform([{{'lr': -3}}]); "
            "print(s._trafo.proc.pid, flush=True); s.transform([{'lr': -1.2}])")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline())
        time.sleep(1)                 # R is inside the sleeping trafo now
        assert alive(pid)
        p.kill()
        p.wait()
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid)
    finally:
        p.kill()
