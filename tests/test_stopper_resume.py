"""A resumed job's early stopper starts from the learning curves the earlier jobs recorded
(replay.epoch_history): without them the first trainings of every job would have no peers and
could not be stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from emews_py.farm import replay, stoppers
from emews_py.store import init_db
from emews_py.store.schema import events, experiments, trials

from helpers import EMEWS, ROOT, algorithm, json_space, output, query, run_workflow

GOOD = {"x1": 3.14159, "x2": 2.275, "epochs": 6, "sleep": 3.6}    # branin ~ 0.398
BAD = {"x1": -5.0, "x2": 0.0, "epochs": 6, "sleep": 3.6}          # branin ~ 308
OPT = """
import json
import os
import time

import eqpy

GOOD = {good}
BAD = {bad}
MARK = {mark!r}


def run():
    eqpy.OUT_put(";".join(json.dumps(p) for p in [GOOD, GOOD]))
    eqpy.IN_get()
    if not os.path.exists(MARK):   # the first job: the test stops it here
        open(MARK, "w").close()
        time.sleep(120)
    eqpy.OUT_put(json.dumps({{"eq": "batch", "points": [BAD]}}))
    results = json.loads(eqpy.IN_get())["results"]
    eqpy.OUT_put("DONE")
    eqpy.OUT_put(json.dumps(results))
"""


def test_a_resumed_stopper_judges_against_the_earlier_jobs_curves(tmp_path):
    """Job 1 trains two good models and is stopped (SIGTERM); job 2 (RESUME) trains a bad one.
    With ASHA (eta 2, min_peers 1) the first training at a rung always continues, so the bad one
    is stopped only if job 2 knows job 1's curves."""
    mark = tmp_path / "first-job-done"
    env = algorithm(tmp_path, "seq.py", OPT.format(good=GOOD, bad=BAD, mark=str(mark)))
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "epochs", "type": "discrete", "values": [6]},
        {"id": "sleep", "type": "discrete", "values": [3.6]}])
    args = ["--algo", "seq", "--procs", "3", "--space", str(space), "--stopper", "asha:eta=2"]
    proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(tmp_path), *args], cwd=ROOT,
                            env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while not mark.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < 120, "the two good trainings did not finish"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "Resume with" in out, out
    assert [r["status"] for r in query(tmp_path, "SELECT status FROM trials")] == ["completed"] * 2

    p = run_workflow(tmp_path, "--resume", "1", env=env, timeout=120)
    assert p.returncode == 0, output(p)
    assert "peers: the learning curves of 2 finished trial(s) of the earlier jobs" in p.stdout
    rows = query(tmp_path, "SELECT id, status, stopped_epoch, params FROM trials ORDER BY id")
    assert [r["status"] for r in rows] == ["completed", "completed", "stopped"], rows
    assert rows[2]["stopped_epoch"] <= 2   # rung 1 decides; the callback sees it an epoch later


def test_epoch_history_takes_finished_trials_fold_0_in_stored_order(tmp_path):
    """What the driver seeds the stopper with, read back from a real SQLite store."""
    db = tmp_path / "e.db"
    eng = init_db(f"sqlite:///{db}")
    with eng.begin() as c:
        exp = c.execute(experiments.insert().values(name="x", pilot="bench", algorithm="a",
                                                    status="running")).inserted_primary_key[0]
        other = c.execute(experiments.insert().values(name="y", pilot="bench", algorithm="a",
                                                      status="running")).inserted_primary_key[0]
        ids = {}
        for name, status, e in [("done", "completed", exp), ("cut", "stopped", exp),
                                ("rerun", "running", exp), ("elsewhere", "completed", other)]:
            ids[name] = c.execute(trials.insert().values(
                experiment_id=e, params={}, status=status)).inserted_primary_key[0]
        rows = [("cut", 0, {"val_loss": 9.0}), ("done", 0, {"val_loss": 2.0}),
                ("done", 0, {"val_loss": 7.0, "fold": 1}), ("rerun", 0, {"val_loss": 1.0}),
                ("elsewhere", 0, {"val_loss": 1.0}), ("done", 1, {"loss": 3.0}),
                ("done", 1, {"val_loss": 1.5}), ("cut", 1, {"val_loss": None})]
        for name, epoch, m in rows:
            c.execute(events.insert().values(trial_id=ids[name], kind="epoch_end", epoch=epoch,
                                             metrics=m))
        c.execute(events.insert().values(trial_id=ids["done"], kind="train_end",
                                         metrics={"val_loss": 0.1}))
    got = replay.epoch_history(eng, exp, "val_loss")
    assert got == [(ids["cut"], 0, 9.0), (ids["done"], 0, 2.0), (ids["done"], 1, 1.5),
                   (ids["cut"], 1, None)]
    # seeded with them, ASHA (eta 2) stops a first newcomer that is worse at rung 1
    s = stoppers.make(stoppers.parse("asha:eta=2,metric=val_loss"))
    for tid, e, v in got:
        s.observe(tid, e, v)
    assert s.observe(999, 0, 8.0) is True
    fresh = stoppers.make(stoppers.parse("asha:eta=2,metric=val_loss"))
    assert fresh.observe(999, 0, 8.0) is False
