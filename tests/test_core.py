"""The core runtime end to end: real R (rpy2), real ZeroMQ, real mpiexec, a real SQLite store."""
from __future__ import annotations

import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from helpers import EMEWS, ROOT, json_space, output, query, run_workflow
from pilots.bench import branin

EMEWS_R = textwrap.dedent("""\
    # An EQ/R algorithm exactly as EMEWS users write them: only OUT_put() and IN_get().
    OUT_put("Params")
    params <- eval(parse(text = paste0("list(", IN_get(), ")")))
    set.seed(params$seed)
    best <- Inf
    for (i in 1:3) {
      x1 <- runif(4, -5, 10); x2 <- runif(4, 0, 15)
      OUT_put(paste0(sprintf('{"x1": %.17g, "x2": %.17g}', x1, x2), collapse = ";"))
      y <- as.numeric(strsplit(IN_get(), ";")[[1]])
      stopifnot(length(y) == 4)
      best <- min(best, y)
    }
    OUT_put("DONE")
    OUT_put(sprintf("best=%.10f budget=%d", best, params$max.budget))
    """)

EMEWS_PY = textwrap.dedent("""\
    # An EQ/Py algorithm as EMEWS users write them.
    import json
    import random

    import eqpy


    def run():
        eqpy.OUT_put("Params")
        settings = json.loads(eqpy.IN_get())
        rng = random.Random(settings["seed"])
        sent, got = [], []
        for _ in range(2):
            pts = [{"x1": rng.uniform(-5, 10), "x2": rng.uniform(0, 15)} for _ in range(3)]
            eqpy.OUT_put(";".join(json.dumps(p) for p in pts))
            got += [float(v) for v in eqpy.IN_get().split(";")]
            sent += pts
        eqpy.OUT_put("FINAL")
        eqpy.OUT_put(json.dumps({"sent": sent, "got": got}))
    """)


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def test_random_search_in_r_and_python_records_every_trial(tmp_path):
    for algo in ("random", "py_random"):
        p = run_workflow(tmp_path, "--pilot", "bench", "--algo", algo, "--procs", "4",
                         "--budget", "12", "--exp", f"rs-{algo}")
        out = output(p)
        assert p.returncode == 0, out
        assert "run directory:" in out and "database: sqlite:///" in out
        assert "trials by status: completed 12" in out and "best trial: id" in out
        exp = query(tmp_path, "SELECT * FROM experiments WHERE name = :n", n=f"rs-{algo}")[0]
        assert exp["status"] == "completed" and exp["finished_at"] >= exp["started_at"]
        rows = query(tmp_path, "SELECT * FROM trials WHERE experiment_id = :e", e=exp["id"])
        assert len(rows) == 12
        for r in rows:
            assert r["status"] == "completed" and r["worker"] in (1, 2, 3) and r["host"]
            assert r["submitted_at"] <= r["started_at"] <= r["finished_at"]
            x = __import__("json").loads(r["params"])
            assert -5 <= x["x1"] <= 10 and 0 <= x["x2"] <= 15
            assert r["objective"] == pytest.approx(branin(x["x1"], x["x2"]), rel=1e-9)
        assert "best" in exp["final_message"]


def test_emews_style_r_script_runs_unmodified(tmp_path):
    algos = tmp_path / "algos"
    write(algos, "emews_r_test.R", EMEWS_R)
    p = run_workflow(tmp_path, "--algo", "emews_r_test", "--procs", "3", "--budget", "12",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)})
    assert p.returncode == 0, output(p)
    exp = query(tmp_path, "SELECT * FROM experiments")[0]
    assert exp["status"] == "completed" and exp["algorithm"] == "emews_r_test"
    m = re.fullmatch(r"best=([\d.]+) budget=12", exp["final_message"])
    assert m, exp["final_message"]
    best = query(tmp_path, "SELECT MIN(objective) AS m, COUNT(*) AS n FROM trials "
                           "WHERE status = 'completed'")[0]
    assert best["n"] == 12
    assert float(m.group(1)) == pytest.approx(best["m"], abs=1e-8)


def test_emews_style_python_algorithm_runs_unmodified(tmp_path):
    algos = tmp_path / "algos"
    write(algos, "emews_py_test.py", EMEWS_PY)
    p = run_workflow(tmp_path, "--algo", "emews_py_test", "--procs", "3",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)})
    assert p.returncode == 0, output(p)
    final = __import__("json").loads(query(tmp_path, "SELECT final_message FROM experiments")[0]
                                     ["final_message"])
    assert len(final["got"]) == 6
    for x, y in zip(final["sent"], final["got"]):
        assert y == pytest.approx(branin(x["x1"], x["x2"]), rel=1e-12)


@pytest.mark.parametrize("lang", ["R", "py"])
def test_optimizer_error_ends_run_with_traceback(tmp_path, lang):
    algos = tmp_path / "algos"
    if lang == "R":
        write(algos, "bad.R", 'propose <- function(n) stop("surrogate exploded at n=", n)\n'
                              'OUT_put("Params"); s <- IN_get()\n'
                              'OUT_put(\'{"x1": 1, "x2": 2}\'); IN_get()\n'
                              'propose(7)\n')
        marker = "surrogate exploded at n=7"
    else:
        write(algos, "bad.py", "import eqpy\n\ndef propose():\n    raise ValueError('no more ideas')\n\n"
                               "def run():\n    eqpy.OUT_put('{\"x1\": 1, \"x2\": 2}')\n"
                               "    eqpy.IN_get()\n    propose()\n")
        marker = "ValueError: no more ideas"
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "bad", "--procs", "3",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=60)
    assert p.returncode != 0
    assert time.time() - t0 < 45
    out = output(p)
    assert marker in out and "ERROR: experiment" in out
    assert "propose" in out  # the traceback names the function that failed
    exp = query(tmp_path, "SELECT * FROM experiments")[0]
    assert exp["status"] == "failed" and marker in exp["error"] and "propose" in exp["error"]
    # the trial it ran before failing is recorded
    assert query(tmp_path, "SELECT status FROM trials") == [{"status": "completed"}]


def test_killed_optimizer_ends_run_without_hang(tmp_path):
    algos = tmp_path / "algos"
    write(algos, "dies.py", "import os, signal\nimport eqpy\n\ndef run():\n"
                            "    eqpy.OUT_put('{\"x1\": 1, \"x2\": 2};{\"x1\": 3, \"x2\": 4}')\n"
                            "    eqpy.IN_get()\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "dies", "--procs", "3",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=60)
    assert p.returncode != 0 and time.time() - t0 < 45
    assert "killed by signal SIGKILL" in output(p)
    exp = query(tmp_path, "SELECT * FROM experiments")[0]
    assert exp["status"] == "failed" and "SIGKILL" in exp["error"]
    assert [r["status"] for r in query(tmp_path, "SELECT status FROM trials")] == ["completed"] * 2


def test_r_segfault_from_deep_recursion_is_an_error_not_a_hang(tmp_path):
    algos = tmp_path / "algos"
    # Deep recursion under rpy2 kills the process instead of raising: the farm must notice.
    write(algos, "deep.R", 'options(expressions = 500000)\nf <- function(n) f(n + 1) + 1\n'
                           'OUT_put("Params"); s <- IN_get()\nf(1)\n')
    p = run_workflow(tmp_path, "--algo", "deep", "--procs", "2",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=90)
    assert p.returncode != 0, output(p)
    exp = query(tmp_path, "SELECT * FROM experiments")[0]
    assert exp["status"] == "failed" and exp["error"]


def test_failing_pilot_marks_trial_failed_and_run_goes_on(tmp_path):
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "fail", "type": "logical"}])
    algos = tmp_path / "algos"
    write(algos, "mixfail.py", "import json\nimport eqpy\n\ndef run():\n"
                               "    eqpy.OUT_put(json.dumps({'x1': 1.0, 'fail': True}) + ';' + "
                               "json.dumps({'x1': 2.0, 'fail': False}))\n"
                               "    got = eqpy.IN_get()\n"
                               "    eqpy.OUT_put('DONE'); eqpy.OUT_put(got)\n")
    p = run_workflow(tmp_path, "--algo", "mixfail", "--procs", "3", "--space", str(space),
                     env={"EMEWS_ALGORITHM_PATH": str(algos)})
    assert p.returncode == 0, output(p)
    rows = query(tmp_path, "SELECT status, error, objective FROM trials ORDER BY id")
    assert rows[0]["status"] == "failed" and "asked to fail" in rows[0]["error"]
    assert "Traceback" in rows[0]["error"] and rows[0]["objective"] is None
    assert rows[1]["status"] == "completed"
    final = query(tmp_path, "SELECT final_message FROM experiments")[0]["final_message"]
    assert final.split(";")[0] == "nan"  # imputed value, default NaN


def test_impute_setting(tmp_path):
    space = json_space(tmp_path / "s.json", [{"id": "fail", "type": "logical"}])
    algos = tmp_path / "algos"
    write(algos, "onefail.py", "import eqpy\n\ndef run():\n    eqpy.OUT_put('{\"fail\": true}')\n"
                               "    got = eqpy.IN_get()\n    eqpy.OUT_put('DONE'); eqpy.OUT_put(got)\n")
    p = run_workflow(tmp_path, "--algo", "onefail", "--procs", "2", "--space", str(space),
                     "--settings", "impute = 1e6", env={"EMEWS_ALGORITHM_PATH": str(algos)})
    assert p.returncode == 0, output(p)
    assert float(query(tmp_path, "SELECT final_message FROM experiments")[0]["final_message"]) == 1e6


@pytest.mark.parametrize("mode", ["app", "resident"])
def test_time_limit_marks_trials_timeout(tmp_path, mode):
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "sleep", "type": "discrete", "values": [30]}])
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "3", "--budget", "2",
                     "--space", str(space), "--mode", mode, "--timeout", "1.5")
    assert p.returncode == 0, output(p)
    assert time.time() - t0 < 25  # the 30 s trials were stopped at 1.5 s
    rows = query(tmp_path, "SELECT status, error, started_at, finished_at FROM trials")
    assert [r["status"] for r in rows] == ["timeout", "timeout"]
    assert all("time limit" in r["error"] for r in rows)


def test_app_mode_runs_each_trial_in_a_subprocess_with_json_params(tmp_path):
    p = run_workflow(tmp_path, "--algo", "random", "--procs", "3", "--budget", "4", "--mode", "app")
    assert p.returncode == 0, output(p)
    rows = query(tmp_path, "SELECT id, params, objective FROM trials")
    run_dir = Path(query(tmp_path, "SELECT run_dir FROM experiments")[0]["run_dir"])
    for r in rows:
        f = run_dir / "trials" / str(r["id"]) / "params.json"
        assert f.read_text() == r["params"] or __import__("json").loads(f.read_text()) == \
            __import__("json").loads(r["params"])
        x = __import__("json").loads(r["params"])
        assert r["objective"] == pytest.approx(branin(x["x1"], x["x2"]))


@pytest.mark.parametrize("args, expect", [
    (["--pilot", "nosuch"], ["unknown PILOT 'nosuch'", "pilots/nosuch/", "Available:", "bench"]),
    (["--algo", "nosuch"], ["unknown ALGO 'nosuch'", "r_algorithms/nosuch.R", "random"]),
    (["--space", "/nonexistent/space.R"], ["/nonexistent/space.R", "does not exist", "SPACE"]),
    (["--mode", "batch"], ["MODE='batch'", "MODE=resident"]),
    (["--procs", "1"], ["PROCS=1"]),
    (["--settings", "design.size = = 3"], ["SETTINGS", "not valid R argument text"]),
])
def test_bad_input_is_one_clear_error(tmp_path, args, expect):
    p = run_workflow(tmp_path, *args, timeout=60)
    assert p.returncode == 2
    err = p.stderr
    for e in expect:
        assert e in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "emews.db").exists()  # nothing started


def test_space_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken_space.R"
    bad.write_text("param.set <- makeParamSet(\n  makeNumericParam('x1', lower = 0 upper = 1)\n)\n")
    p = run_workflow(tmp_path, "--space", str(bad), timeout=60)
    assert p.returncode == 2 and str(bad) in p.stderr, p.stderr
    unknown = tmp_path / "unknown_space.R"
    unknown.write_text("param.set <- makeParamSet(makeNumericParam('learning_rate', lower = 0, upper = 1))\n")
    p = run_workflow(tmp_path, "--space", str(unknown), timeout=60)
    assert p.returncode == 2
    assert "'learning_rate'" in p.stderr and "bench_default_model.txt" in p.stderr


def test_r_script_with_syntax_error(tmp_path):
    algos = tmp_path / "algos"
    script = write(algos, "typo.R", 'OUT_put("Params")\nx <- IN_get(\nif (TRUE) {\n')
    p = run_workflow(tmp_path, "--algo", "typo", "--procs", "2",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=60)
    assert p.returncode != 0
    assert f"could not parse the optimizer script {script}" in output(p)
    assert query(tmp_path, "SELECT status FROM experiments")[0]["status"] == "failed"


@pytest.mark.parametrize("msg, expect", [
    ("{'x1': 1}", "not valid"),
    ('{"x1": 99, "x2": 1}', "'x1' = 99 is outside [-5, 10]"),
    ('{"x1": 1, "lr": 1}', "parameter 'lr' is not in the search space"),
])
def test_bad_optimizer_messages_fail_clearly(tmp_path, msg, expect):
    algos = tmp_path / "algos"
    write(algos, "badmsg.py", f"import eqpy\n\ndef run():\n    eqpy.OUT_put({msg!r})\n    eqpy.IN_get()\n")
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "badmsg", "--procs", "2",
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=60)
    assert p.returncode != 0 and time.time() - t0 < 45
    assert expect in output(p)
    exp = query(tmp_path, "SELECT status, error FROM experiments")[0]
    assert exp["status"] == "failed" and expect in exp["error"]


def test_space_parameter_unknown_to_pilot_is_refused_before_any_trial(tmp_path):
    space = json_space(tmp_path / "s.json", [{"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
                                             {"id": "x9", "type": "numeric", "lower": 0, "upper": 1}])
    p = run_workflow(tmp_path, "--algo", "random", "--procs", "2", "--space", str(space))
    assert p.returncode == 2
    assert "'x9'" in p.stderr and "bench_default_model.txt" in p.stderr and str(space) in p.stderr
    assert not (tmp_path / "emews.db").exists()


def _cpu_seconds(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_ranks_do_not_spin(tmp_path):
    """MPICH busy-polls in blocking receives; our workers must sleep instead, and an idle one
    longer and longer (issue 9: the old 2 ms back-off cost ~5% of a core for 2 idle ranks here)."""
    space = json_space(tmp_path / "s.json", [{"id": "sleep", "type": "discrete", "values": [8]}])
    cmd = [EMEWS, "workflow", "--runs", str(tmp_path), "--algo", "py_random", "--procs", "4",
           "--budget", "1", "--space", str(space)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    for line in proc.stdout:  # one line once every worker has said hello
        lines.append(line)
        if "imported pilot" in line:
            break
    pids = [int(p) for f in tmp_path.rglob("workers.log")
            for p in re.findall(r"worker \d+ \(pid (\d+)", f.read_text())]
    assert len(pids) == 3, "".join(lines)
    time.sleep(1.5)  # past transport.IDLE_AFTER_S: the idle ranks are in their long sleeps
    before = {p: _cpu_seconds(p) for p in pids}
    time.sleep(4.0)
    used = {p: _cpu_seconds(p) - before[p] for p in pids}
    proc.stdout.read()
    assert proc.wait(60) == 0
    # 1 trial sleeping, 2 workers idle: all three together under 2.5% of a core
    assert sum(used.values()) < 0.025 * 4.0, used


STREAM_PY = textwrap.dedent("""\
    import json
    import eqpy


    def run():
        s = eqpy.settings()
        assert s["workers"] == 2 and s["space"]["params"]
        log = []
        ids = eqpy.submit([{"x1": 1.0, "sleep": 0.0}, {"x1": 2.0, "sleep": 1.5}])
        log.append({"ids": ids})
        r = eqpy.results(min=1)        # the fast trial comes back while the slow one runs
        log.append({"first": [x["id"] for x in r["results"]], "pending": r["pending"],
                    "free": r["free"]})
        ids2 = eqpy.submit([{"x1": 3.0, "sleep": 0.0}] * r["free"])
        rest = []
        while len(rest) < 1 + len(ids2):
            rest += eqpy.results(min=1)["results"]
        log.append({"rest": sorted(x["id"] for x in rest)})
        b = eqpy.batch([{"x1": 4.0, "sleep": 0.0}, {"x1": 5.0, "sleep": 0.0}])
        log.append({"batch": [[x["id"], x["status"], x["objective"]] for x in b]})
        log.append({"status": eqpy.status()})
        eqpy.done(log)
    """)


def test_streaming_extension_results_carry_ids(tmp_path):
    space = json_space(tmp_path / "s.json", [
        {"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
        {"id": "sleep", "type": "numeric", "lower": 0, "upper": 5}])
    algos = tmp_path / "algos"
    write(algos, "stream_test.py", STREAM_PY)
    p = run_workflow(tmp_path, "--algo", "stream_test", "--procs", "3", "--space", str(space),
                     env={"EMEWS_ALGORITHM_PATH": str(algos)})
    assert p.returncode == 0, output(p)
    log = __import__("json").loads(query(tmp_path, "SELECT final_message FROM experiments")[0]
                                   ["final_message"])
    fast, slow = log[0]["ids"]
    assert log[1] == {"first": [fast], "pending": 1, "free": 1}
    ids2 = [r["id"] for r in query(tmp_path, "SELECT id FROM trials WHERE params LIKE '%3.0%'")]
    assert log[2]["rest"] == sorted([slow] + ids2)
    rows = {r["id"]: r for r in query(tmp_path, "SELECT id, objective, status FROM trials")}
    for tid, status, obj in log[3]["batch"]:
        assert status == "completed" and rows[tid]["objective"] == pytest.approx(obj)
    assert log[4]["status"]["completed"] == len(rows) == 5


def test_crashed_trial_costs_only_that_trial(tmp_path):
    """A pilot that kills the process running it (a segfaulting library would): the trial is
    failed with the signal in the store, its worker goes on with a fresh interpreter."""
    space = json_space(tmp_path / "s.json", [{"id": "crash", "type": "logical"}])
    algos = tmp_path / "algos"
    write(algos, "crash.py", "import eqpy\n\ndef run():\n"
                             "    eqpy.OUT_put('{\"crash\": true};{\"crash\": false}')\n"
                             "    r = eqpy.IN_get()\n    eqpy.OUT_put('DONE')\n    eqpy.OUT_put(r)\n")
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "crash", "--procs", "2", "--space", str(space),
                     env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=60)
    assert p.returncode == 0 and time.time() - t0 < 45, output(p)
    assert query(tmp_path, "SELECT status FROM experiments")[0]["status"] == "completed"
    rows = query(tmp_path, "SELECT status, error FROM trials ORDER BY id")
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert "killed by signal SIGKILL" in rows[0]["error"]


def test_trial_stuck_past_time_limit_is_killed_and_run_goes_on(tmp_path):
    """A resident trial that ignores TIMEOUT (native code) must not hang the run."""
    space = json_space(tmp_path / "s.json", [{"id": "x1", "type": "numeric", "lower": -5, "upper": 10},
                                             {"id": "hang", "type": "numeric", "lower": 0, "upper": 600}])
    algos = tmp_path / "algos"
    write(algos, "hang.py", "import eqpy\n\ndef run():\n"
                            "    r = eqpy.batch([{'x1': 1.0, 'hang': 600}, {'x1': 2.0, 'hang': 0},"
                            " {'x1': 3.0, 'hang': 0}, {'x1': 4.0, 'hang': 0}])\n"
                            "    eqpy.done([x['status'] for x in r])\n")
    t0 = time.time()
    p = run_workflow(tmp_path, "--algo", "hang", "--procs", "3", "--space", str(space),
                     "--timeout", "1", env={"EMEWS_ALGORITHM_PATH": str(algos)}, timeout=120)
    assert p.returncode == 0, output(p)
    assert time.time() - t0 < 60  # 1 s limit + 10 s grace, not the 600 s hang
    rows = query(tmp_path, "SELECT status, error FROM trials ORDER BY id")
    assert [r["status"] for r in rows] == ["timeout", "completed", "completed", "completed"]
    assert "was killed" in rows[0]["error"]  # its interpreter; the worker went on
    exp = query(tmp_path, "SELECT status, final_message FROM experiments")[0]
    assert exp["status"] == "completed"
    assert __import__("json").loads(exp["final_message"]) == ["timeout"] + ["completed"] * 3
