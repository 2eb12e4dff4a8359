"""Early stopping (STOPPER, docs/stopping.md): the rules on hand-made curves, a real farm run of the
bench pilot's simulated trainings (resident and app mode), and the bad-input cases."""
from __future__ import annotations

import json
import math

import pytest

from emews_py.farm import stoppers
from emews_py.farm.stoppers import StopperError, parse

from helpers import algorithm, json_space, output, query, run_workflow


def feed(stopper, curves: dict[int, list], order="round") -> dict[int, int]:
    """Feed curves {trial: [value per epoch]}; returns {trial: epoch at which it was stopped}.
    ``order="round"``: epoch by epoch across trials (trials in parallel); "serial": one trial's
    whole curve after the other (each finished before the next starts); a stopped trial reports
    no further epochs."""
    stopped: dict[int, int] = {}
    if order == "serial":
        for t, vs in curves.items():
            for e, v in enumerate(vs):
                if stopper.observe(t, e, v):
                    stopped[t] = e
                    break
        return stopped
    for e in range(max(len(v) for v in curves.values())):
        for t, vs in curves.items():
            if t not in stopped and e < len(vs) and stopper.observe(t, e, vs[e]):
                stopped[t] = e
    return stopped


# ---- settings ---------------------------------------------------------------------------------
def test_parse_defaults_and_settings():
    assert parse("") is None and parse("none") is None and parse("off") is None
    a = parse("asha")
    assert (a["rule"], a["eta"], a["grace"], a["min_peers"], a["mode"]) == ("asha", 3.0, 1, 1, "min")
    m = parse("median:grace=2,min_peers=4,metric=val_acc,mode=max")
    assert (m["rule"], m["grace"], m["min_peers"], m["metric"], m["mode"]) == \
        ("median", 2, 4, "val_acc", "max")
    assert parse('{"rule": "asha", "eta": 2.5, "grace": 0}')["eta"] == 2.5


@pytest.mark.parametrize("text, words", [
    ("hyperband", ["unknown stopper 'hyperband'", "STOPPER=asha", "STOPPER=median"]),
    ("asha:eta=1", ["eta = 1", "greater than 1"]),
    ("asha:eta=0.5", ["eta = 0.5", "greater than 1"]),
    ("asha:eta=fast", ["eta = 'fast'"]),
    ("median:grace=-1", ["grace = -1", ">= 0"]),
    ("asha:grace=1.5", ["grace = 1.5", "whole number"]),
    ("median:min_peers=0", ["min_peers = 0"]),
    ("median:eta=3", ["eta is not a setting of the median stopper"]),
    ("asha:eta", ["'eta' is not a setting: write name=value"]),
    ("asha:mode=up", ["mode = 'up'"]),
    ('{"rule": "asha", "eta": 1}', ["eta = 1"]),
    ("{asha", ["not valid"]),
])
def test_parse_refuses_bad_settings(text, words):
    with pytest.raises(StopperError) as e:
        parse(text)
    for w in words:
        assert w in str(e.value)
    assert "STOPPER=" in str(e.value)


# ---- ASHA -------------------------------------------------------------------------------------
def test_asha_rungs():
    s = stoppers.make(parse("asha:eta=3,grace=1"))
    assert [n for n in range(1, 30) if s.is_rung(n)] == [1, 3, 9, 27]
    s = stoppers.make(parse("asha:eta=2,grace=2"))
    assert [n for n in range(1, 40) if s.is_rung(n)] == [2, 4, 8, 16, 32]
    s = stoppers.make(parse("asha:eta=3,grace=0"))   # grace 0: the first rung after 1 epoch
    assert [n for n in range(1, 10) if s.is_rung(n)] == [1, 3, 9]


def test_asha_keeps_the_top_third_at_each_rung_without_waiting():
    # Trials finish one after the other: each is judged against those that reached a rung before
    # it, never waiting for a rung to fill. Rungs after 1 and 3 epochs (eta 3).
    curves = {
        1: [1.0, 0.8, 0.6, 0.5],       # first: always continues
        2: [2.0, 1.9, 1.8, 1.7],       # worse than trial 1 at rung 1 -> stopped at epoch 0
        3: [0.9, 0.7, 0.5, 0.4],       # best so far at rung 1 -> continues; rung 3 too
        4: [1.5, 1.0, 0.55, 0.5],      # rung 1: 1.5 > 1/3-quantile of [1, 2, 0.9] -> stopped
        5: [0.95, 0.9, 0.85, 0.8],     # continues at rung 1, stopped at rung 3 (below)
    }
    s = stoppers.make(parse("asha:eta=3,grace=1"))
    stopped = feed(s, curves, order="serial")
    # trial 5 at rung 1: prior [1.0, 2.0, 0.9, 1.5]: 1/3-quantile = 1.0 -> 0.95 continues; at rung
    # 3 its best 0.85 against prior [0.6, 0.5] (trials 1, 3): quantile 0.5 + 0.1/3 -> stopped
    assert stopped == {2: 0, 4: 0, 5: 2}
    assert "best 1/3" in s.reasons[2] and "after 1 epoch" in s.reasons[2]
    assert "after 3 epoch" in s.reasons[5]


def test_asha_min_peers_and_mode_max():
    # min_peers = 2: the second trial at a rung is never stopped, the third may be
    s = stoppers.make(parse("asha:eta=2,min_peers=2"))
    assert feed(s, {1: [1.0], 2: [5.0], 3: [4.0]}, order="serial") == {3: 0}
    # mode = max (an accuracy): lower is worse
    s = stoppers.make(parse("asha:eta=2,mode=max"))
    assert feed(s, {1: [0.9], 2: [0.5]}, order="serial") == {2: 0}
    assert "0.5" in s.reasons[2]


def test_nan_stops_at_once_and_a_rerun_starts_afresh():
    for rule in ("asha:eta=2,min_peers=5", "median:grace=4"):
        s = stoppers.make(parse(rule))
        assert s.observe(1, 0, None)        # a NaN loss (diverged): no peers, no grace needed
        assert "diverged" in s.reasons[1]
        assert not s.observe(1, 1, 0.1)     # stopped once: never again
        assert s.observe(2, 3, float("nan"))
    # for its peers a NaN counts as worse than any number
    s = stoppers.make(parse("median:min_peers=1"))
    s.observe(1, 0, None)
    assert not s.observe(2, 0, 1e9)
    s2 = stoppers.make(parse("median:min_peers=1"))
    assert not s2.observe(1, 0, 1.0) and not s2.observe(1, 1, 0.5)
    assert not s2.observe(1, 0, 1.0)        # trial 1 again from epoch 0 (run again): fresh curve
    assert len(s2.curves[1].values) == 1


# ---- median rule ------------------------------------------------------------------------------
def test_median_rule_against_running_averages():
    # Three trials ran to the end; trial 4 is judged at each epoch against the median of their
    # running averages up to that epoch.
    done = {1: [1.0, 0.8, 0.6, 0.4], 2: [2.0, 1.0, 0.8, 0.6], 3: [3.0, 2.0, 1.0, 0.8]}
    # running averages at epoch n=2: 0.9, 1.5, 2.5 -> median 1.5; at n=3: 0.8, 1.27, 2.0 -> 1.27
    s = stoppers.make(parse("median:grace=2,min_peers=3"))
    stopped = feed(s, {**done, 4: [1.0, 1.6, 1.3, 1.2]}, order="serial")
    # n=1: grace; n=2: best 1.0 <= 1.5 continues; n=3: best 1.0 <= 1.27 continues; n=4: running
    # averages 0.7, 1.1, 1.7 -> median 1.1: best 1.0 continues -> never stopped
    assert stopped == {}
    s = stoppers.make(parse("median:grace=2,min_peers=3"))
    stopped = feed(s, {**done, 4: [1.8, 1.6, 1.5, 1.4]}, order="serial")
    assert stopped == {4: 1}                # n = 2: best 1.6 > median 1.5
    assert "median 1.5" in s.reasons[4]


def test_median_rule_grace_and_min_peers():
    bad = [9.0, 9.0, 9.0, 9.0]
    good = [1.0, 1.0, 1.0, 1.0]
    # grace 3: not before 3 epochs
    s = stoppers.make(parse("median:grace=3,min_peers=1"))
    assert feed(s, {1: good, 2: bad}, order="serial") == {2: 2}
    # min_peers 3: with two peers nobody is stopped, with three the bad one is
    s = stoppers.make(parse("median:grace=1,min_peers=3"))
    assert feed(s, {1: good, 2: good, 3: bad}, order="serial") == {}
    s = stoppers.make(parse("median:grace=1,min_peers=3"))
    assert feed(s, {1: good, 2: good, 4: good, 3: bad}, order="serial") == {3: 0}
    # in parallel (epoch by epoch): peers at an epoch are those that reached it, running or not
    s = stoppers.make(parse("median:grace=1,min_peers=2"))
    assert feed(s, {1: good, 2: good, 3: bad}) == {3: 0}


def test_quantile_matches_numpy():
    np = pytest.importorskip("numpy")
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.25, 1 / 3, 0.5, 0.9, 1.0):
        assert math.isclose(stoppers.quantile(xs, q), float(np.quantile(xs, q)))


# ---- the benchmark's replay (benchmarks/stopping.py --replay) ---------------------------------
def test_benchmark_replay_times_a_stop_like_the_farm():
    # One worker, three recorded trainings of 4 epochs (1 s each, 0.5 s of evaluation after the
    # last): a stop decided at an epoch's end takes effect at the next epoch end, then the
    # evaluation, and the worker takes the next training at once.
    bench = _bench()

    def trial(i, vals):
        return {"id": i, "pre": 0.0, "ends": [1.0, 2.0, 3.0, 4.0], "vals": vals, "post": 0.5,
                "full": True, "status": "completed", "objective": vals[-1]}
    rec = [trial(1, [1.0, 0.9, 0.8, 0.7]), trial(2, [5.0, 5.0, 5.0, 5.0]),
           trial(3, [0.5, 0.4, 0.3, 0.2])]
    base = bench.replay([dict(t) for t in rec], {1: 0.0}, "none", 100.0)
    assert base["curve"] == [(4.5, 0.7), (9.0, 5.0), (13.5, 0.2)] and base["stopped"] == 0
    res = bench.replay([dict(t) for t in rec], {1: 0.0}, "asha:eta=2", 100.0)
    # trial 2 is judged after its first epoch (5.5 s), stops at its second's end (6.5 s) + 0.5 s
    assert res["stops"] == {2: 2} and res["stopped"] == 1
    assert res["curve"] == [(4.5, 0.7), (7.0, 5.0), (11.5, 0.2)] and res["completed"] == 2
    assert bench.time_to(res["curve"], base["best"]) / bench.time_to(base["curve"], base["best"]) \
        == pytest.approx(11.5 / 13.5)
    assert "training #3 (id 3" in bench.why(rec, base, res, "asha")
    # the oracle bound: every training worse than the target stopped after its first epoch
    orc = bench.replay([dict(t) for t in rec], {1: 0.0}, "oracle", 100.0, target=0.2)
    assert orc["curve"] == [(2.5, 0.9), (5.0, 5.0), (9.5, 0.2)] and orc["stops"] == {1: 2, 2: 2}
    # the best epoch's val_loss instead of the last one's
    assert bench.replay([dict(t) for t in rec[:1]], {1: 0.0}, "none", 100.0,
                        objective="best-epoch")["best"] == 0.7
    # equal wall time: what ends after the window is not counted
    assert bench.replay([dict(t) for t in rec], {1: 0.0}, "none", 10.0)["best"] == 0.7


def _bench():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "stopping.py"
    spec = importlib.util.spec_from_file_location("stopping_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_trim_keeps_what_the_replay_reads(tmp_path):
    # benchmarks/recordings/ holds trimmed copies of the benchmark's stores: a real run of the
    # bench pilot's simulated trainings, trimmed, must replay and measure exactly as the store
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "epochs", "type": "discrete", "values": [3]},
        {"id": "sleep", "type": "discrete", "values": [0.6]}])
    p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "3", "--budget", "4", "--space",
                     str(space), "--exp", "bench-none-s1", timeout=120)
    assert p.returncode == 0, output(p)
    bench = _bench()
    src, dst = tmp_path / "emews.db", tmp_path / "trimmed.db"
    bench.trim(str(src), str(dst))
    a, b = (bench.recorded(f"sqlite:///{d}", "bench-none-s1") for d in (src, dst))
    assert a == b and len(a[0]) == 4 and all(len(t["vals"]) == 3 for t in a[0]), (a, b)
    assert bench.measure(f"sqlite:///{src}", "bench-none-s1", 600) == \
        bench.measure(f"sqlite:///{dst}", "bench-none-s1", 600)
    db = f"sqlite:///{dst}"
    assert query(tmp_path, "SELECT COUNT(*) AS n FROM eq_messages")[0]["n"] > 0   # the source's
    assert query(tmp_path, "SELECT COUNT(*) AS n FROM eq_messages", db=db)[0]["n"] == 0
    kept = query(tmp_path, "SELECT kind, metrics FROM events", db=db)
    assert {e["kind"] for e in kept} >= {"train_begin", "epoch_end"}
    assert all(set(json.loads(e["metrics"])) == ({"val_loss"} if e["kind"] == "epoch_end" else set())
               for e in kept)
    import sqlite3
    with sqlite3.connect(dst) as c:   # one file, no -wal beside it (kept in git)
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with pytest.raises(SystemExit, match="exists"):
        bench.trim(str(src), str(dst))
    # --report: the table of runs already stored, here the recording itself
    import subprocess
    import sys
    r = subprocess.run([sys.executable, bench.__file__, "--report", str(dst), "--pilots", "bench",
                        "--stoppers", "none", "--seeds", "1", "--window", "600"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("none "))
    assert row[1:3] == ["4", "0"], r.stdout        # 4 completed, 0 stopped


def test_benchmark_seed_list_reads_ranges_and_refuses_junk():
    bench = _bench()
    assert bench.seed_list("6-8, 11,19-20") == [6, 7, 8, 11, 19, 20]
    with pytest.raises(SystemExit, match=r"--seed-list '6-a'.* give e\.g\. 6-15,19-23"):
        bench.seed_list("6-a")


# ---- the real farm ----------------------------------------------------------------------------
GOOD = {"x1": 3.14159, "x2": 2.275}     # branin ~ 0.398
BAD = {"x1": -5.0, "x2": 0.0}           # branin ~ 308
FIXED = """
import json
import eqpy

GOOD = {good}
BAD = {bad}


def run():
    # two good trainings first (peers), then bad ones with a good one among them; the second
    # batch through the streaming protocol, whose results carry the status
    eqpy.OUT_put(";".join(json.dumps(p) for p in [GOOD, GOOD]))
    plain = eqpy.IN_get()
    eqpy.OUT_put(json.dumps({{"eq": "batch", "points": [BAD, GOOD, BAD]}}))
    results = json.loads(eqpy.IN_get())["results"]
    eqpy.OUT_put("DONE")
    eqpy.OUT_put(json.dumps({{"plain": plain, "results": results}}))
"""


@pytest.mark.parametrize("mode, stopper", [("resident", "asha:eta=2"),
                                           ("app", "median:grace=2,min_peers=2")])
def test_farm_stores_bad_trainings_as_stopped(tmp_path, mode, stopper):
    """The bench pilot's simulated trainings (val_loss = branin + 10/(epoch+1), 6 epochs of 0.6 s):
    the bad ones are stopped at the epoch after the rule's decision and stored `stopped` with
    their last metrics; the good ones complete."""
    epochs, decided = 6, {"asha:eta=2": 0, "median:grace=2,min_peers=2": 1}[stopper]
    extra = {"epochs": epochs, "sleep": 3.6}
    env = algorithm(tmp_path, "fixed.py", FIXED.format(good={**GOOD, **extra},
                                                        bad={**BAD, **extra}))
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "epochs", "type": "discrete", "values": [epochs]},
        {"id": "sleep", "type": "discrete", "values": [3.6]}])
    p = run_workflow(tmp_path, "--algo", "fixed", "--procs", "3", "--space", str(space),
                     "--mode", mode, "--stopper", stopper, env=env, timeout=120)
    assert p.returncode == 0, output(p)
    assert "early stopping:" in p.stdout
    rows = query(tmp_path, "SELECT id, status, objective, stopped_epoch, error, params "
                           "FROM trials ORDER BY id")
    events = query(tmp_path, "SELECT trial_id, epoch, metrics FROM events "
                             "WHERE kind = 'epoch_end' ORDER BY trial_id, epoch")
    bad = [r for r in rows if json.loads(r["params"])["x1"] == -5.0]
    good = [r for r in rows if json.loads(r["params"])["x1"] != -5.0]
    assert len(bad) == 2 and len(good) == 3
    for r in good:
        assert r["status"] == "completed" and r["stopped_epoch"] is None
        assert len([e for e in events if e["trial_id"] == r["id"]]) == epochs
    for r in bad:
        assert r["status"] == "stopped", rows
        # decided at epoch `decided`; the training sees it at the next epoch end (0.6 s later)
        assert decided + 1 <= r["stopped_epoch"] <= decided + 2, rows
        mine = [e for e in events if e["trial_id"] == r["id"]]
        assert [e["epoch"] for e in mine] == list(range(r["stopped_epoch"] + 1))
        last = json.loads(mine[-1]["metrics"])["val_loss"]
        assert math.isclose(r["objective"], last)             # its last metrics
        assert math.isclose(last, 308.129 + 10 / (r["stopped_epoch"] + 1), rel_tol=1e-4)
        assert stopper.split(":")[0] in r["error"]            # why, in trials.error
    final = json.loads(query(tmp_path, "SELECT final_message FROM experiments")[0]["final_message"])
    streamed = {r["id"]: r for r in final["results"]}
    for r in bad:   # the optimizer got the last validation loss, with status "stopped"
        assert streamed[r["id"]]["status"] == "stopped"
        assert streamed[r["id"]]["stopped_epoch"] == r["stopped_epoch"]
        assert math.isclose(streamed[r["id"]]["objective"], r["objective"])
    assert "trials by status: completed 3, stopped 2" in p.stdout


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--stopper", "hyperband"], ["unknown stopper 'hyperband'"]),
    (["--stopper", "asha:eta=1"], ["eta = 1", "greater than 1"]),
    (["--stopper", "median:grace=-2"], ["grace = -2", ">= 0"]),
    # bench reports epochs only with epochs > 0; its default is 0 and the space does not set it
    (["--stopper", "asha"], ["reports epoch_end events only when its parameter epochs",
                             "Add epochs to the search space"]),
])
def test_bad_stopper_input_exits_2_before_anything_starts(tmp_path, args, words):
    p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "2", "--budget", "2", *args,
                     timeout=60)
    assert p.returncode == 2, output(p)
    err = p.stderr
    for w in words:
        assert w in err, err
    assert "STOPPER=" in err and "Traceback" not in err
    assert not (tmp_path / "emews.db").exists() or not query(tmp_path, "SELECT id FROM experiments")


def test_pilot_without_epoch_events_is_refused(tmp_path):
    from emews_py import cli
    pilots = tmp_path / "nopochs"
    pilots.mkdir()
    (pilots / "__init__.py").write_text("def run(params, ctx):\n    return 1.0\n")
    with pytest.raises(cli.UsageError) as e:
        cli.stopper_of("median", "nopochs", pilots, {}, {"params": []})
    msg = str(e.value)
    assert "pilot 'nopochs' reports no epoch_end events" in msg and "EPOCH_METRIC" in msg
    # the Keras pilots report Keras' val_loss through the pilot kit's callbacks
    for name in ("drug", "treat", "ras"):
        assert cli.pilot_epoch_metric(cli.find_pilot(name)) == ("val_loss", None)
    assert cli.pilot_epoch_metric(cli.find_pilot("bench")) == ("val_loss", "epochs")


# ---- what the optimizer receives, and the Keras callback ---------------------------------------
def test_optimizers_receive_a_stopped_trials_objective_with_its_status():
    from emews_py.farm.protocol import Protocol, plain_value
    from emews_py.trials import Trial, TrialStatus
    t = Trial(7, {"x1": 1.0}, 0.0, TrialStatus.STOPPED, objective=1.25, metrics={"val_loss": 1.25},
              stopped_epoch=2)
    r = Protocol.result(t)
    assert (r["status"], r["objective"], r["stopped_epoch"]) == ("stopped", 1.25, 2)
    assert plain_value(t, math.nan) == 1.25
    failed = Trial(8, {}, 0.0, TrialStatus.FAILED)
    assert Protocol.result(failed)["objective"] is None and math.isnan(plain_value(failed, math.nan))
    assert "stopped_epoch" not in Protocol.result(failed)


def test_keras_callback_ends_training_at_the_epoch_end_after_a_stop_request():
    """The pilot kit's callbacks (what drug, treat and ras train with): a stop requested during
    epoch 1 ends the training at the end of epoch 1, which is recorded as the stopped epoch."""
    pytest.importorskip("keras")
    import numpy as np

    from emews_py.pilot import TrialContext, run_trial
    from emews_py.pilotkit.keras import callbacks_for, keras
    from emews_py.trials import TrialStatus

    class Pilot:
        @staticmethod
        def run(params, ctx):
            x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
            model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse")
            h = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=8, verbose=0,
                          batch_size=32, callbacks=callbacks_for(ctx))
            return {"objective": h.history["val_loss"][-1], "metrics": {"epochs": len(h.history["loss"])}}

    events = []

    def sink(ev):   # the driver's decision arrives while epoch 1 runs (after epoch 0's event)
        events.append(ev)

    ctx = TrialContext(1, ".", None, sink,
                       halted=lambda: sum(e["kind"] == "epoch_end" for e in events) >= 2)
    status, res, error = run_trial(Pilot, {}, ctx, None)
    assert status is TrialStatus.STOPPED and error is None
    assert ctx.stopped_epoch == 1 and res["metrics"]["epochs"] == 2
    ends = [e for e in events if e["kind"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [0, 1]
    assert math.isclose(res["objective"], ends[-1]["metrics"]["val_loss"], rel_tol=1e-5)
    assert [e for e in events if e["kind"] == "train_end"][0]["metrics"]["stopped_epoch"] == 1


def test_a_stopped_trial_with_restore_best_returns_its_best_epochs_model():
    """restore_best (the pilots' restore_best_weights): a training that gets worse every epoch
    (a learning rate past divergence) and is stopped at epoch 1 ends with epoch 0's weights, so
    the pilot's evaluation after fit, its objective, is epoch 0's val_loss: the stopped trial's
    best value so far, the value the stoppers judged it by."""
    pytest.importorskip("keras")
    import numpy as np

    from emews_py.pilot import TrialContext, run_trial
    from emews_py.pilotkit.keras import callbacks_for, keras
    from emews_py.trials import TrialStatus

    class Pilot:
        @staticmethod
        def run(params, ctx):
            x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=3.0), loss="mse")
            model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=8, verbose=0,
                      batch_size=32, callbacks=callbacks_for(ctx, restore_best=True))
            return {"objective": float(model.evaluate(x, x[:, :1], verbose=0))}

    events = []
    ctx = TrialContext(1, ".", None, events.append,
                       halted=lambda: sum(e["kind"] == "epoch_end" for e in events) >= 2)
    status, res, error = run_trial(Pilot, {}, ctx, None)
    assert status is TrialStatus.STOPPED and ctx.stopped_epoch == 1
    vals = [e["metrics"]["val_loss"] for e in events if e["kind"] == "epoch_end"]
    assert len(vals) == 2 and vals[1] > 2 * vals[0]          # it got worse
    assert math.isclose(res["objective"], vals[0], rel_tol=1e-5)
    end = [e for e in events if e["kind"] == "train_end"][0]["metrics"]
    assert end["restored_epoch"] == 0 and end["stopped_epoch"] == 1


def test_a_stopped_trial_is_not_trained_again_after_a_resume(tmp_path):
    """SIGTERM once a trial was stopped; the resume replays the transcript and reruns only the
    trials that had not finished: the stopped one stays stopped, started once."""
    import os
    import signal
    import subprocess
    import time

    from helpers import EMEWS, ROOT
    extra = {"epochs": 6, "sleep": 3.6}
    env = algorithm(tmp_path, "fixed.py", FIXED.format(good={**GOOD, **extra},
                                                        bad={**BAD, **extra}))
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "x2", "type": "numeric", "lower": 0, "upper": 15},
        {"id": "epochs", "type": "discrete", "values": [6]},
        {"id": "sleep", "type": "discrete", "values": [3.6]}])
    args = ["--algo", "fixed", "--procs", "3", "--space", str(space), "--stopper", "asha:eta=2"]
    proc = subprocess.Popen([EMEWS, "workflow", "--runs", str(tmp_path), *args], cwd=ROOT,
                            env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while True:
        try:
            if query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE status = 'stopped'")[0]["n"]:
                break
        except Exception:  # noqa: BLE001 - the store may not exist yet
            pass
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < 120
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "Resume with" in out, out
    before = {r["id"]: r for r in query(tmp_path, "SELECT id, status, stopped_epoch FROM trials")}
    stopped = [i for i, r in before.items() if r["status"] == "stopped"]
    assert stopped
    p = run_workflow(tmp_path, "--resume", "1", env=env, timeout=120)
    assert p.returncode == 0, output(p)
    rows = {r["id"]: r for r in query(tmp_path, "SELECT id, status, attempts, stopped_epoch "
                                                "FROM trials")}
    for i in stopped:
        assert rows[i]["status"] == "stopped" and rows[i]["attempts"] == 1
        assert rows[i]["stopped_epoch"] == before[i]["stopped_epoch"]
    assert {r["status"] for r in rows.values()} <= {"completed", "stopped"}, rows
    assert query(tmp_path, "SELECT status FROM experiments") == [{"status": "completed"}]
