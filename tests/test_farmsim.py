"""The farm simulator (emews_py/farmsim.py) against closed forms, its CLI and bad input, and the
bench pilot's drawn durations on the real farm."""
from __future__ import annotations

import json
import math
import statistics
import subprocess

import pytest

from emews_py import farmsim as fs
from helpers import EMEWS, ROOT, query, run_workflow
from pilots.bench import duration


def submit_all(n):
    yield fs.Submit(n)


@pytest.mark.parametrize("n,w,d", [(10, 4, 2.0), (64, 8, 1.5), (7, 16, 3.0), (1, 1, 4.0)])
def test_constant_durations_no_overheads(n, w, d):
    o = fs.simulate(fs.Farm(w), submit_all(n), [d] * n)
    waves = math.ceil(n / w)
    assert o.makespan == pytest.approx(waves * d)
    assert o.utilization == pytest.approx(n * d / (w * waves * d))
    assert o.trials == n and o.busy == pytest.approx(n * d)
    if n % w == 0:
        assert o.utilization == pytest.approx(1.0)
    # while work remained (up to the last start) every worker was busy
    assert o.utilization_ss == pytest.approx(1.0) or waves == 1


def test_stream_with_free_optimizer_keeps_every_worker_busy():
    # zero proposal cost, constant durations: stream refills each worker as it frees
    o = fs.simulate(fs.Farm(8), fs.mbo_stream(80, 0, 0, fs.Cost(), fs.Cost(), workers=8), [2.0] * 80)
    assert o.utilization == pytest.approx(1.0) and o.makespan == pytest.approx(20.0)


def test_stream_look_ahead_hides_the_proposal_time():
    # 1 s per proposal round, 10 s trials: without look-ahead each freed worker waits for a round
    cost, d = fs.Cost(a=1.0), fs.lognormal(10, 0.5, seed=1)

    def run(ahead):
        return fs.simulate(fs.Farm(16), fs.mbo_stream(480, 8, 4, cost, cost, ahead, 16), d)
    ideal = fs.list_schedule([d(i) for i in range(480)], 16)
    none, auto, fixed = run(0), run("auto"), run(4)
    assert none.utilization_ss < auto.utilization_ss and none.utilization_ss < fixed.utilization_ss
    assert auto.utilization_ss > 0.95 * ideal.utilization_ss > none.utilization_ss
    assert none.trials == auto.trials == 480


def test_lookahead_rules_and_the_2w_cap():
    # 'auto' (scale.R since 0015b7c): twice the busiest of the last 5 rounds, at most 2 W; the
    # earlier rules kept for reproducing the runs recorded with them; numbers are capped at 2 W
    assert fs.lookahead("auto", 16, [3, 40, 5]) == 32
    assert fs.lookahead("auto", 16, [3, 7, 5]) == 14
    assert fs.lookahead("auto-2x-W", 16, [3, 40, 5]) == 16
    assert fs.lookahead("auto-1x-W", 16, [3, 10, 5]) == 10
    assert fs.lookahead("auto-3x-4W", 16, [10]) == 30
    assert fs.lookahead(50, 16, [1]) == 32 and fs.lookahead(5, 16, [1]) == 5
    # 1 s trials and 1 s proposals: every worker finishes once during each proposal, so what was
    # queued when a round was decided (2 W) must cover it: the W cap leaves workers idle
    def run(ahead):
        return fs.simulate(fs.Farm(16), fs.mbo_stream(640, 16, 0, fs.Cost(a=1.0), fs.Cost(a=1.0),
                                                      ahead, 16), [1.0] * 640)
    now, capped_w, none = run("auto"), run("auto-2x-W"), run(0)
    assert now.utilization > 0.9 and capped_w.utilization < 0.75 and none.utilization < 0.55
    assert now.trials == capped_w.trials == none.trials == 640
    assert fs.parse_ahead("auto-1x-W") == "auto-1x-W" and fs.parse_ahead("7") == 7


def test_batch_makespan_is_the_sum_of_each_batch_max():
    d = [1, 2, 3, 4, 5, 1, 1, 1, 2, 2]
    o = fs.simulate(fs.Farm(4), fs.mbo_batch(10, 0, 4, fs.Cost()), d)
    assert o.makespan == pytest.approx(4 + 5 + 2)
    # a proposal cost c per batch adds c between batches (the first one precedes the first start)
    o = fs.simulate(fs.Farm(4), fs.random_batches(10, 4, fs.Cost(a=0.5)), d)
    assert o.makespan == pytest.approx(4 + 5 + 2 + 2 * 0.5)
    assert o.optimizer_busy == pytest.approx(3 * 0.5)
    # the design is a batch of its own
    o = fs.simulate(fs.Farm(4), fs.mbo_batch(10, 2, 4, fs.Cost()), d)
    assert o.makespan == pytest.approx(2 + 5 + 2)   # [1,2] [3,4,5,1] [1,1,2,2]


def test_driver_and_handout_costs_on_one_worker():
    # each trial after the first waits for its result (driver_s) and its hand-out (driver_s + gap)
    n, d, drv, gap = 5, 1.0, 0.01, 0.1
    o = fs.simulate(fs.Farm(1, driver_s=drv, gap_s=gap), submit_all(n), [d] * n)
    assert o.makespan == pytest.approx(n * d + (n - 1) * (2 * drv + gap))
    assert o.driver_busy == pytest.approx(2 * n * drv)


def test_driver_is_the_bottleneck_for_instant_trials():
    # 1,000 zero-length trials on 10 workers: rank 0 does 2 x 1 ms per trial, one after another
    # (the makespan ends at the last finish, before rank 0 has read the last 10 results)
    o = fs.simulate(fs.Farm(10, driver_s=0.001), submit_all(1000), [0.0] * 1000)
    assert o.makespan == pytest.approx(2.0 - 0.001 - 10 * 0.001)
    assert o.driver_busy == pytest.approx(2.0)


def test_result_latency_delays_the_next_batch_only():
    o = fs.simulate(fs.Farm(2, result_s=0.3), fs.random_batches(4, 2, fs.Cost()), [1.0] * 4)
    assert o.makespan == pytest.approx(2 * 1.0 + 0.3)


def test_stream_beats_batch_with_skewed_durations_and_costs():
    dist = fs.lognormal(5, 1, seed=3)
    cost = fs.Cost(a=0.5, b=0.01)
    s = fs.simulate(fs.Farm(32), fs.mbo_stream(640, 8, 4, cost, fs.Cost(), workers=32), dist)
    b = fs.simulate(fs.Farm(32), fs.mbo_batch(640, 8, 32, cost), dist)
    ideal = fs.list_schedule([dist(i) for i in range(640)], 32)
    assert b.utilization < s.utilization <= ideal.utilization + 1e-9
    assert s.trials == b.trials == 640


def test_cost_fit_recovers_known_coefficients():
    true = fs.Cost(0.4, 0.02, 0.001, 0.0)
    samples = [(n, q, true(n, q)) for n in (10, 100, 500, 1000) for q in (1, 8, 64)]
    got = fs.fit_cost(samples)
    for k in "abcd":
        assert getattr(got, k) == pytest.approx(getattr(true, k), abs=1e-9)
    capped = fs.Cost(0, 0, 0.01, 0, n_cap=100)
    assert capped(5000, 1) == pytest.approx(1.0)


def test_switched_cost_fits_each_surrogate_apart():
    """mlrMBO's GP rounds (n < gp.max.n) grow with n q, the forest's do not: each side is fitted
    on its own samples, and samples on one side only give one plain fit."""
    gp, forest = fs.Cost(0.1, 0.0, 0.0, 0.005), fs.Cost(2.0, 0.04, 0.001, 0.0, n_cap=800)
    samples = [(n, q, gp(n, q)) for n in (16, 64, 128, 192) for q in (8, 64)]
    samples += [(n, q, forest(n, q)) for n in (256, 512, 800) for q in (8, 64, 128)]
    got = fs.fit_switched(samples, 200, n_cap=800)
    assert isinstance(got, fs.SwitchedCost)
    for n, q in ((150, 100), (199, 1), (200, 32), (5000, 256)):
        want = (gp if n < 200 else forest)(n, q)
        assert got(n, q) == pytest.approx(want, rel=1e-6)
    assert got.scaled(2.0)(150, 100) == pytest.approx(2 * gp(150, 100))
    one_side = fs.fit_switched([x for x in samples if x[0] < 200], 200)
    assert isinstance(one_side, fs.Cost) and one_side(100, 8) == pytest.approx(gp(100, 8))


def test_believer_cost_sums_one_conditioned_gp_per_point():
    """Batch mode's fantasies: the j-th point of a round costs f(n + j), so a round of q points
    at n costs more than q f(n), and the fit recovers f from rounds of mixed n and q."""
    f = lambda m: 0.01 + 0.002 * m + 3e-5 * m * m
    true = fs.BelieverCost(0.01, 0.002, 3e-5)
    for n, q in ((16, 16), (64, 64), (128, 128), (0, 1)):
        assert true(n, q) == pytest.approx(sum(f(n + j) for j in range(q)))
    samples = [(n, q, true(n, q)) for n in (16, 48, 96, 144, 192) for q in (16, 64, 128)]
    got = fs.fit_believer(samples)
    assert got(100, 100) == pytest.approx(true(100, 100), rel=1e-6)
    sw = fs.fit_switched(samples + [(n, 64, 5.0) for n in (256, 512)], 200, believer=True)
    assert isinstance(sw.below, fs.BelieverCost) and sw(150, 32) == pytest.approx(true(150, 32), rel=1e-6)
    assert sw(300, 64) == pytest.approx(5.0)


def test_lognormal_matches_the_bench_pilot_and_its_moments():
    draw = fs.lognormal(5.0, 1.0, seed=2)
    assert [draw(i) for i in range(5)] == [duration(5.0, 1.0, 2, i) for i in range(5)]
    xs = [draw(i) for i in range(20000)]
    assert statistics.mean(xs) == pytest.approx(5.0, rel=0.05)
    assert statistics.stdev(xs) / statistics.mean(xs) == pytest.approx(1.0, rel=0.1)
    assert fs.lognormal(3.0, 0.0)(7) == pytest.approx(3.0)


def cli(*args):
    return subprocess.run([EMEWS, "simulate-farm", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_cli_closed_form():
    p = cli("--workers", "8", "--mean", "2", "--cv", "0", "--budget", "40", "--algo", "random",
            "--random-cost", "0,0,0,0", "--driver-s", "0", "--gap-s", "0", "--result-s", "0", "--json")
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["makespan"] == pytest.approx(10.0) and o["utilization"] == pytest.approx(1.0)
    assert o["trials"] == 40 and o["trials_per_hour"] == pytest.approx(40 / 10 * 3600)
    p = cli("--workers", "16", "--mean", "60", "--algo", "batch")
    assert p.returncode == 0 and "batch: 16 workers, 160 trials" in p.stdout and "trials/h" in p.stdout


def test_cli_switched_cost_closed_form():
    """mlrMBO's surrogate switch on the command line: batch rounds of 8 after a design of 8, 2 s
    trials; proposals at n = 8, 16 cost the GP's 10 s, at n = 24, 32 the forest's 1 s."""
    base = ["--workers", "8", "--mean", "2", "--cv", "0", "--budget", "40", "--algo", "batch",
            "--design", "8", "--q", "8", "--cost", "1,0,0,0", "--driver-s", "0", "--gap-s", "0",
            "--result-s", "0", "--json"]
    runs = {"forest only": [], "switched": ["--gp-cost", "10,0,0,0", "--switch-n", "24"],
            # the believer: a per point, 8 points a round
            "believer": ["--gp-believer", "1,0,0", "--switch-n", "24"]}
    got = {}
    for name, extra in runs.items():
        p = cli(*base, *extra)
        assert p.returncode == 0, p.stderr
        got[name] = json.loads(p.stdout)
    assert got["forest only"]["makespan"] == pytest.approx(5 * 2 + 4 * 1)
    assert got["switched"]["makespan"] == pytest.approx(5 * 2 + 10 + 10 + 1 + 1)
    assert got["believer"]["makespan"] == pytest.approx(5 * 2 + 8 + 8 + 1 + 1)


@pytest.mark.parametrize("args,says", [
    (["--workers", "0"], "--workers = 0 must be a positive integer"),
    (["--workers", "4", "--random-cost", "1"], "--random-cost '1': give four numbers"),
    (["--workers", "4", "--gp-cost", "1,0,0,0", "--gp-believer", "1,0,0"],
     "--gp-cost and --gp-believer both give the cost below the switch"),
    (["--workers", "4", "--gp-believer", "1,0"], "--gp-believer '1,0': give three numbers"),
    (["--workers", "4", "--gp-cost", "1,0,0,0", "--switch-n", "0"], "--switch-n = 0.0 must be"),
    (["--workers", "4", "--budget", "-3"], "--budget = -3"),
    (["--workers", "4", "--algo", "grid"], "--algo 'grid' is not known"),
    (["--workers", "4", "--cost", "1,2"], "--cost '1,2': give four numbers"),
    (["--workers", "4", "--cost", "1,2,x,4"], "give four numbers"),
    (["--workers", "4", "--mean", "0"], "mean trial duration must be a positive"),
    (["--workers", "4", "--cv", "-1"], "coefficient of variation must be >= 0"),
    (["--workers", "4", "--gap-s", "-0.1"], "--gap-s = -0.1"),
    (["--workers", "4", "--ahead", "some"], "--ahead 'some': give 'auto'"),
    (["--workers", "4", "--ahead", "auto-2y-W"], "--ahead 'auto-2y-W': give 'auto'"),
])
def test_cli_bad_input(args, says):
    p = cli(*args)
    assert p.returncode == 2
    assert says in p.stderr and "Traceback" not in p.stderr


def test_bench_pilot_sleeps_its_drawn_duration(tmp_path):
    """The real farm: each trial lasts at least the duration drawn for its id, and not much more."""
    space = tmp_path / "s.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("x1", lower = -5, upper = 10),\n'
                     '  makeDiscreteParam("duration_mean", values = 0.3),\n'
                     '  makeDiscreteParam("duration_cv", values = 1),\n'
                     '  makeDiscreteParam("duration_seed", values = 4L))\n')
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "random", "--procs", "3",
                     "--budget", "8", "--space", str(space), "--settings", "seed = 1")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = query(tmp_path, "SELECT id, (julianday(finished_at) - julianday(started_at)) * 86400 AS s "
                           "FROM trials WHERE status = 'completed'")
    assert len(rows) == 8
    for r in rows:
        want = duration(0.3, 1.0, 4, r["id"])
        assert want - 0.01 <= r["s"] <= want + 1.0, (r, want)
    assert len({round(duration(0.3, 1.0, 4, r["id"]), 6) for r in rows}) == 8   # they vary


def test_bench_pilot_rejects_a_negative_duration_setting():
    from emews_py.pilotkit.context import PilotError, TrialContext
    from pilots.bench import run
    for bad, name in (({"duration_mean": -1}, "duration_mean"),
                      ({"duration_mean": 0.01, "duration_cv": -0.5}, "duration_cv")):
        with pytest.raises(PilotError, match=name):
            run(bad, TrialContext.local())


def test_simulator_look_ahead_is_the_real_optimizers(tmp_path):
    """A real mlrMBO stream run: replayed round by round, its transcript asks for exactly the
    points farmsim's 'auto' rule proposes (scale.R's mbo_stream_q and farmsim must not drift)."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from farm_model import detect_ahead, transcript
    from sqlalchemy import create_engine
    space = tmp_path / "s.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("x1", lower = -5, upper = 10),\n'
                     '  makeNumericParam("x2", lower = 0, upper = 15),\n'
                     '  makeDiscreteParam("duration_mean", values = 0.3),\n'
                     '  makeDiscreteParam("duration_cv", values = 1),\n'
                     '  makeDiscreteParam("duration_seed", values = 3L))\n')
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "mlrMBO", "--procs", "7",
                     "--budget", "60", "--space", str(space), "--settings", "mode = 'stream', seed = 1")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    eng = create_engine(f"sqlite:///{tmp_path / 'emews.db'}")
    with eng.connect() as c:
        rule, hits = detect_ahead(transcript(c, 1), 6, 60)
    eng.dispose()
    matched, rounds = hits["auto"]
    assert rounds >= 5 and matched == rounds and rule == "auto", hits
    assert hits[0][0] < rounds      # the replay tells the rules apart: no look-ahead misses


def test_holdout_calibration_leaves_the_run_out():
    """farm_model --holdout: a run is simulated with costs fitted on the other runs only, so its
    own rounds (here 100x dearer than the others') cannot make its validation pass."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from farm_model import holdout_cal
    A, B, C = ("s", 1), ("s", 2), ("s", 3)
    stream = [(n, q, 1.0 + 0.01 * q, None, True, k) for k in (A, B) for n, q in
              ((20, 4), (40, 32), (80, 16), (160, 8), (160, 32))]
    stream += [(n, q, 2.0, None, True, k) for k in (A, B) for n, q in ((300, 8), (600, 64))]  # forest
    stream += [(n, q, 100.0, None, True, C) for n, q in ((20, 4), (40, 8))]
    stream += [(n, q, 1.0, None, False, B) for n, q in ((30, 4), (50, 8))]  # older code: left out
    rnd = [(0, 8, 0.1, None, True, k) for k in (A, B, C)]
    per = {k: dict(algo="stream", gaps=[g], lags=[g / 10]) for k, g in ((A, 0.01), (B, 0.02), (C, 9.0))}
    cal = dict(samples={"stream": stream, "random": rnd}, cost={}, random_cost=None,
               gap_s=3.0, result_s=0.3)
    got = holdout_cal(C, per[C], per, cal)
    gp, forest = got["cost"]["stream"].below, got["cost"]["stream"].above
    assert gp.a == pytest.approx(1.0, abs=1e-6) and gp.b == pytest.approx(0.01, abs=1e-6)
    assert forest(400, 32) == pytest.approx(2.0, abs=1e-6)
    assert forest.n_cap == 600          # the others' largest n
    assert got["gap_s"] == pytest.approx(0.015) and got["result_s"] == pytest.approx(0.0015)
    with_c = holdout_cal(A, per[A], per, cal)
    assert with_c["cost"]["stream"].below.a > 5       # run C's rounds do count for the others
    alone = {A: per[A]}
    assert holdout_cal(A, per[A], alone, dict(cal, samples={
        "stream": [x for x in stream if x[5] == A], "random": rnd})) is None
