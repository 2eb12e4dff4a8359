"""emews report: the HTML file opened in real headless Chromium (DevTools protocol), each chart
compared with what the store holds; bad input; a real run of the farm."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import EMEWS, ROOT, output, query, run_workflow
from sqlalchemy import insert

from emews_py.cli import sql_engine
from emews_py.report import plotly_js, render
from emews_py.report.browser import Browser
from emews_py.store import events, experiments, init_db, segments, trials, utcnow

T0 = dt.datetime(2026, 11, 29, 10, 0, 0)
SPACE = {"params": [
    {"id": "lr", "type": "numeric", "lower": -4, "upper": -1, "trafo": True},
    {"id": "units", "type": "integer", "lower": 8, "upper": 64},
    {"id": "act", "type": "discrete", "values": ["relu", "tanh", "elu"]}]}


@pytest.fixture(scope="module")
def browser():
    with Browser(timeout=90) as b:
        yield b


def at(s: float | None):
    return None if s is None else T0 + dt.timedelta(seconds=s)


def make_store(where: Path | str, rows: list[dict], epochs: dict[int, int] | None = None,
               status: str = "completed", heartbeat=None) -> tuple[str, int]:
    """A real store (an SQLite file, or a URL) with one more experiment holding exactly ``rows``
    (status, objective, worker, start, end, params, error; ``id`` only names a row here, the
    store numbers trials); ``epochs``: row id -> number of epoch_end events. Returns (URL, the
    experiment's id)."""
    url = where if isinstance(where, str) else f"sqlite:///{where}"
    eng = init_db(url)
    with eng.begin() as c:
        exp = c.execute(insert(experiments).values(
            name="known", pilot="bench", algorithm="random", space_json=SPACE,
            settings={"max.budget": 8, "seed": 7}, status=status, mode="resident", workers=2,
            run_dir="/runs/known", started_at=T0,
            finished_at=None if status == "running" else at(40),
            heartbeat_at=heartbeat)).inserted_primary_key[0]
        c.execute(insert(segments).values(experiment_id=exp, number=1, host="node7", pid=4242,
                                          procs=3, workers=2, started_at=T0, status=status,
                                          heartbeat_at=heartbeat,
                                          ended_at=None if status == "running" else at(40)))
        ids = {}
        for r in rows:
            ids[r["id"]] = c.execute(insert(trials).values(
                experiment_id=exp, params=r.get("params", {}), status=r["status"],
                objective=r.get("objective"), worker=r.get("worker"), host="node7",
                submitted_at=T0, started_at=at(r.get("start")), finished_at=at(r.get("end")),
                error=r.get("error"), attempts=1 if r.get("start") is not None else 0)
            ).inserted_primary_key[0]
        for rid, n in (epochs or {}).items():
            for e in range(n):
                c.execute(insert(events).values(
                    trial_id=ids[rid], kind="epoch_end", epoch=e, at=at(e),
                    metrics={"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)}))
    eng.dispose()
    return url, exp


def report(url: str, exp: int, out: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([EMEWS, "report", str(exp), "-o", str(out), "--db", url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, **kw)


def png_size(p: Path) -> tuple[int, int]:
    head = p.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def check_page(browser, html: Path, png: Path) -> dict:
    """Open the report; it must render without console errors or exceptions, and every chart
    must have drawn what it was meant to. Returns the charts' summary."""
    r = browser.open(html, png)
    assert r["rendered"] == "yes", r
    assert r["console"] == [] and r["exceptions"] == [] and r["report"]["errors"] == [], r
    # nothing fetched: the page and inline data only
    assert [u for u in r["requests"] if not u.startswith(("file:", "data:", "about:"))] == []
    w, h = png_size(png)
    assert w == 1280 and h > 1500 and png.stat().st_size > 30_000
    charts = r["report"]["charts"]
    for cid, c in charts.items():
        if c["drawn"].get("empty"):
            continue
        for k, v in c["expect"].items():
            assert c["drawn"][k] == v, (cid, c)
    return charts


MIXED = [  # 4 completed, 1 failed, 1 running, 1 queued; workers 1 and 2
    {"id": 1, "status": "completed", "objective": 0.9, "worker": 1, "start": 0, "end": 10,
     "params": {"lr": 0.001, "units": 16, "act": "relu"}},
    {"id": 2, "status": "completed", "objective": 0.5, "worker": 2, "start": 0, "end": 12,
     "params": {"lr": 0.01, "units": 32, "act": "tanh"}},
    {"id": 3, "status": "failed", "worker": 1, "start": 10, "end": 11,
     "params": {"lr": 0.1, "units": 64, "act": "relu"},
     "error": "Traceback ...\nValueError: the loss diverged <at epoch 3>"},
    {"id": 4, "status": "completed", "objective": 0.7, "worker": 2, "start": 12, "end": 20,
     "params": {"lr": 0.0002, "units": 8, "act": "tanh"}},
    {"id": 5, "status": "completed", "objective": 0.3, "worker": 1, "start": 11, "end": 25,
     "params": {"lr": 0.003, "units": 48, "act": "relu"}},
    {"id": 6, "status": "running", "worker": 2, "start": 20,
     "params": {"lr": 0.02, "units": 24, "act": "tanh"}},
    {"id": 7, "status": "queued", "params": {"lr": 0.05, "units": 12, "act": "relu"}},
]


def test_report_of_a_known_experiment_still_running(tmp_path, browser):
    url, exp = make_store(tmp_path / "s.db", MIXED, epochs={5: 6, 2: 4, 1: 3},
                          status="running", heartbeat=utcnow())
    out = tmp_path / "known.html"
    p = report(url, exp, out)
    assert p.returncode == 0, output(p)
    assert str(out) in p.stdout
    text = out.read_text()
    # self-contained: no script or stylesheet from elsewhere (besides plotly.js's own code)
    page = text.replace(plotly_js(), "")
    assert "<script src" not in page and "<link" not in page and "http" not in page
    assert "still running" in text and "the loss diverged &lt;at epoch 3&gt;" in text
    assert "node7" in text and "max.budget" in text and "units" in text
    charts = check_page(browser, out, tmp_path / "known.png")
    # what the user sees, counted from the trials above
    assert charts["best_by_trial"]["drawn"]["points"] == 4      # completed with an objective
    assert charts["best_by_time"]["drawn"]["points"] == 4
    assert charts["timeline"]["drawn"]["bars"] == 6             # every started trial, running too
    assert charts["curves"]["drawn"]["lines"] == 6              # loss + val_loss of 3 trials
    for pid in ("lr", "units", "act"):
        assert charts[f"param_{pid}"]["drawn"]["points"] == 4
    assert charts["parallel"]["drawn"]["dimensions"] == 4       # 3 parameters + objective
    assert charts["parallel"]["drawn"]["lines"] == 4
    assert "utilization" in text


def test_failed_trials_only_say_so_where_the_charts_would_be(tmp_path, browser):
    rows = [{"id": i, "status": "failed", "worker": 1 + i % 2, "start": 2 * i, "end": 2 * i + 1,
             "params": {"lr": 0.01, "units": 8, "act": "elu"}, "error": f"boom {i}"}
            for i in range(1, 4)]
    url, exp = make_store(tmp_path / "f.db", rows)
    out = tmp_path / "failed.html"
    p = report(url, exp, out)
    assert p.returncode == 0, output(p)
    charts = check_page(browser, out, tmp_path / "failed.png")
    for cid in ("best_by_trial", "best_by_time", "curves", "parallel", "param_lr", "param_act"):
        assert charts[cid]["drawn"] == {"empty": True}, cid
    assert charts["timeline"]["drawn"]["bars"] == 3
    text = out.read_text()
    assert "No completed trial with an objective yet (3 failed)" in text
    assert "No epoch_end events in this experiment" in text
    assert all(f"boom {i}" in text for i in (1, 2, 3))


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    url, _ = make_store(tmp_path / "s.db", MIXED)
    eng = init_db(url)
    with eng.begin() as c:   # a second experiment without any trial
        c.execute(insert(experiments).values(name="empty", pilot="bench", algorithm="random",
                                             status="running", started_at=T0))
    eng.dispose()
    cases = {
        "unknown": (report(url, 99, tmp_path / "r.html"), "no experiment 99"),
        "empty": (report(url, 2, tmp_path / "r.html"), "experiment 2 (empty) has no trials"),
        "missing dir": (report(url, 1, tmp_path / "nope" / "r.html"),
                        f"the directory {tmp_path / 'nope'} does not exist"),
        "no store": (report(f"sqlite:///{tmp_path}/none.db", 1, tmp_path / "r.html"),
                     "does not exist"),
    }
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        cases["read-only dir"] = (report(url, 1, ro / "r.html"),
                                  f"the directory {ro} is not writable")
    for name, (p, says) in cases.items():
        assert p.returncode == 2, (name, output(p))
        assert p.stdout == "" and says in p.stderr, (name, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (name, p.stderr)
    assert not (tmp_path / "r.html").exists() and not list(ro.iterdir())


@contextlib.contextmanager
def read_only(d: Path):
    """``d`` read-only even for root: mode 555, and immutable (chattr +i) when root."""
    d.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(d)], check=True)
    try:
        assert not os.access(d, os.W_OK)
        yield d
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(d)], check=True)
        d.chmod(0o755)


def test_report_from_postgresql(tmp_path, postgres_url):
    """The same page from a PostgreSQL store (JSON and timestamps as psycopg returns them)."""
    rows = [r for r in MIXED if r["status"] != "running"]   # a running one ends at "now"
    url, exp = make_store(postgres_url, rows, epochs={5: 6})
    sq_url, sq_exp = make_store(tmp_path / "s.db", rows, epochs={5: 6})
    pg, sq = tmp_path / "pg.html", tmp_path / "sq.html"
    for u, e, out in ((url, exp, pg), (sq_url, sq_exp, sq)):   # in-process: the CLI is tested above
        eng = sql_engine(u, write=False)
        out.write_text(render(eng, e))
        eng.dispose()

    def charts(f: Path) -> str:   # the chart data, trial ids made relative
        import json
        import re
        page = f.read_text()
        data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)'
                                    r'</script>', page, re.S).group(1))
        return json.dumps([{k: v for k, v in c.items() if k != "data"} | {
            "n": [len(t.get("x") or t.get("dimensions") or []) for t in c["data"]]}
            for c in data], sort_keys=True)
    assert charts(pg) == charts(sq)
    assert "the loss diverged" in pg.read_text()


def test_report_of_a_real_run(tmp_path, browser):
    """bench, mixed space (numbers and a category), R random search on the real farm."""
    p = run_workflow(tmp_path, "--pilot", "bench", "--algo", "random", "--budget", "10",
                     "--procs", "3", "--space", "workflows/bench_mixed.R")
    assert p.returncode == 0, output(p)
    exp = query(tmp_path, "SELECT MAX(id) AS id FROM experiments")[0]["id"]
    n = query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE experiment_id = :e AND "
                        "status = 'completed' AND objective IS NOT NULL", e=exp)[0]["n"]
    started = query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE experiment_id = :e AND "
                              "started_at IS NOT NULL", e=exp)[0]["n"]
    assert n == 10 and started == 10
    out = tmp_path / "bench.html"
    r = report(f"sqlite:///{tmp_path / 'emews.db'}", exp, out)
    assert r.returncode == 0, output(r)
    charts = check_page(browser, out, tmp_path / "bench.png")
    assert charts["best_by_trial"]["drawn"]["points"] == n
    assert charts["timeline"]["drawn"]["bars"] == started
    assert charts["param_x1"]["drawn"]["points"] == n and charts["param_cat"]["drawn"]["points"] == n
    assert charts["parallel"]["drawn"]["dimensions"] == 6   # function, x1, x2, n, cat, objective
    assert charts["curves"]["drawn"] == {"empty": True}     # bench records no epochs
    assert "No epoch_end events" in out.read_text()
