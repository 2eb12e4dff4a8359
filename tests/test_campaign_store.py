"""The store goes away mid-run, for real: a PostgreSQL server stopped and started while trials run,
an SQLite write lock held by another client for longer than SQLite's 30 s busy timeout. The run
goes on, nothing is lost, and it completes; a store that stays away past its limit stops the run
as interrupted, and the resume imports what it could not store (issue 8, item 5)."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest

from helpers import output, query, run_workflow
from pg_server import PostgresServer, PostgresUnavailable
from test_campaign import completed, slow_space, start, trials, wait_for


@pytest.fixture(scope="module")
def pg():
    try:
        server = PostgresServer(dbname="outage").start()
    except PostgresUnavailable as e:
        pytest.fail(f"cannot start a PostgreSQL server: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


ARGS = ["--pilot", "bench", "--algo", "random", "--procs", "3", "--settings",
        "seed = 7, propose.points = 4"]


def test_postgresql_restarted_mid_run_loses_nothing(tmp_path, pg):
    url = pg.url.replace("+psycopg2", "")     # a plain postgresql:// URL, as a user writes it
    runs = tmp_path / "runs"
    proc = start(runs, *ARGS, "--budget", "20", "--space", str(slow_space(tmp_path)), db=url)
    wait_for(runs, completed(runs), 4, proc, db=url)
    pg.halt("fast")            # a database restart: every connection is cut
    time.sleep(6)
    pg.restart()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "the store is unavailable" in out and "the store is back after" in out, out
    assert "Traceback" not in out
    rows = query(runs, "SELECT status, COUNT(*) AS n FROM trials GROUP BY status", db=url)
    assert rows == [{"status": "completed", "n": 20}], rows
    assert query(runs, "SELECT status FROM experiments", db=url) == [{"status": "completed"}]
    # Every trial's events and answers are there once: the transcript has no gap or repeat.
    seqs = [r["seq"] for r in query(runs, "SELECT seq FROM eq_messages ORDER BY seq", db=url)]
    assert seqs == list(range(len(seqs)))


def hold_lock(db: str, seconds: float, held: threading.Event,
              release: threading.Event | None = None) -> None:
    """Another client holds the store's write lock for ``seconds``, or until ``release``."""
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    held.set()
    (release or threading.Event()).wait(seconds)
    con.execute("ROLLBACK")
    con.close()


# Longer than SQLite's 30 s busy timeout (what a plain engine waits before it raises) and than
# the Writer's 1 s busy timeout plus its back-off up to 10 s (0.5, 1, 2, 4, 8, 10, 10 s: the
# longest delay is reached), so the lock outlasts every wait the store code has.
LOCK_S = 35


def test_sqlite_lock_held_35_s_by_another_client_delays_but_loses_nothing(tmp_path):
    """Longer than SQLite's 30 s busy timeout, which used to kill the driver."""
    runs = tmp_path / "runs"
    proc = start(runs, *ARGS, "--budget", "16", "--space", str(slow_space(tmp_path)))
    wait_for(runs, completed(runs), 4, proc)
    held = threading.Event()
    t0 = time.time()
    t = threading.Thread(target=hold_lock, args=(str(runs / "emews.db"), LOCK_S, held))
    t.start()
    held.wait(30)
    out, _ = proc.communicate(timeout=400)
    t.join()
    assert proc.returncode == 0, out
    assert time.time() - t0 >= LOCK_S     # the run outlived the lock: it waited, did not give up
    assert "the store is unavailable" in out and "the store is back after" in out, out
    rows = trials(runs)
    assert len(rows) == 16 and all(r["status"] == "completed" for r in rows), rows
    assert all(r["attempts"] == 1 for r in rows)


def test_store_away_past_its_limit_stops_the_run_and_resume_imports_the_rest(tmp_path):
    """STORE_WAIT short: the run stops as interrupted, writes what it could not store to
    unsaved.jsonl, and the resume imports it: no completed trial runs again."""
    runs = tmp_path / "runs"
    proc = start(runs, *ARGS, "--budget", "16", "--space", str(slow_space(tmp_path)),
                 env={"EMEWS_STORE_WAIT": "4"})
    wait_for(runs, completed(runs), 4, proc)
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(str(runs / "emews.db"), 120, held, release))
    t.start()
    held.wait(30)
    # The lock is held until the run says it spilled (its driver gave up on the store), then
    # released, so the CLI can record the stop; not for a fixed time.
    lines, t0 = [], time.time()
    for line in proc.stdout:
        lines.append(line)
        if "unsaved.jsonl" in line or time.time() - t0 > 120:
            break
    release.set()
    out = "".join(lines) + proc.stdout.read()   # not communicate(): it skips what is buffered
    proc.wait(60)
    t.join()
    assert proc.returncode != 0, out
    assert "unsaved.jsonl" in out and "Resume with" in out, out
    spills = list(runs.glob("*/unsaved.jsonl"))
    assert len(spills) == 1
    p = run_workflow(runs, "--resume", "1", timeout=300)
    assert p.returncode == 0, output(p)
    assert "imported" in p.stdout
    rows = trials(runs)
    assert len(rows) == 16 and all(r["status"] == "completed" for r in rows), rows
    assert not list(runs.glob("*/unsaved.jsonl"))
