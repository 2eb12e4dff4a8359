"""The store going away mid-run, at the level of rank 0's Writer (issue 8, item 5), with real
faults: a real PostgreSQL server stopped (``pg_ctl stop -m fast``) and started again, a real
connection cut right after it sent COMMIT, and a real SQLite write lock held by a second
connection. What a user would check is read back with plain SQL: nothing lost, nothing twice.
"""
from __future__ import annotations

import json
import math
import socket
import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError

from emews_py import store
from emews_py.store import StoreAway
from emews_py.trials import Result, Trial, TrialStatus
from pg_server import PostgresServer, PostgresUnavailable

T0 = 1_800_000_000.0


# ---- fixtures and helpers -------------------------------------------------------------------
class Restartable:
    """A PostgreSQL server of this module's own (the session's is shared), stopped and started."""

    def __init__(self, server: PostgresServer):
        self.s = server

    def stop(self) -> None:
        self.s.halt("fast")

    def start(self) -> None:
        self.s.restart()


@pytest.fixture(scope="module")
def pg():
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as e:
        pytest.fail(f"cannot start a PostgreSQL server for the store tests: {e}", pytrace=False)
    try:
        yield Restartable(server)
    finally:
        server.stop()


_n_db = 0


@pytest.fixture(params=["psycopg2", "psycopg"])
def pg_url(request, pg) -> str:
    """A fresh database on the module's server, through psycopg2 or psycopg 3 (what SQLAlchemy
    2.1 uses for a plain postgresql:// URL)."""
    global _n_db
    _n_db += 1
    url = pg.s.create_database(f"faults_{_n_db}")
    return url.replace("+psycopg2:", f"+{request.param}:")


def sql(url: str, q: str, **params) -> list[dict]:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(q), params)]
    finally:
        eng.dispose()


def connects(engine) -> list:
    """A list that grows by one per DBAPI connection attempt of ``engine`` (failed ones too)."""
    seen: list = []
    event.listen(engine, "do_connect", lambda *a: seen.append(time.monotonic()))
    return seen


def until_flushed(w: store.Writer, within: float = 20.0) -> float:
    """Call flush() as the driver's loop does until it writes; returns the seconds it took."""
    t0 = time.monotonic()
    while not w.flush():
        assert time.monotonic() - t0 < within, f"the store did not come back: {w.error}"
        time.sleep(0.05)
    return time.monotonic() - t0


def setup_experiment(w: store.Writer, n: int = 3) -> tuple[int, list[Trial]]:
    e = w.create_experiment(name="faults", pilot="bench", algorithm="random")
    points = [{"x1": float(k)} for k in range(n)]
    ids = w.add_trials(e, points, T0)
    return e, [Trial(i, p, T0) for i, p in zip(ids, points)]


def finish(t: Trial, objective: float, at: float = T0 + 2) -> None:
    t.start(1, "node01", T0 + 1)
    t.finish(Result(t.id, TrialStatus.COMPLETED, T0 + 1, at, 1, "node01", objective=objective))


# ---- PostgreSQL --------------------------------------------------------------------------------
def test_postgres_stopped_between_writes_loses_nothing_and_writes_nothing_twice(pg, pg_url):
    url = pg_url
    eng = store.init_db(url, writer=True)
    w = store.Writer(eng)
    e, ts_ = setup_experiment(w, 4)
    seg = w.start_segment(e, 1, "/runs/x", "node00", 4242, 4, 3)
    finish(ts_[0], 0.5)
    w.trial_changed(ts_[0])
    w.add_events([{"trial_id": ts_[0].id, "kind": "epoch_end", "epoch": 0, "at": T0 + 1.5,
                   "metrics": {"loss": 1.0}}])
    assert w.flush() and w.available

    # A restart between two flushes: the pooled connection is dead, the next flush reconnects.
    pg.stop()
    pg.start()
    finish(ts_[1], 0.25)
    w.trial_changed(ts_[1])
    assert w.flush() is True and w.take_notices() == []

    tries = connects(eng)
    pg.stop()
    try:
        finish(ts_[2], math.inf)           # a diverged loss, kept as such
        w.trial_changed(ts_[2])
        ts_[3].start(2, "node02", T0 + 3)
        w.trial_changed(ts_[3])
        w.add_events([{"trial_id": ts_[2].id, "kind": "epoch_end", "epoch": k, "at": T0 + 2,
                       "metrics": {"loss": 1.0 / (k + 1)}} for k in range(3)])
        w.add_model(ts_[1].id, "/runs/x/m1.keras", 0.25)
        w.record_eq(e, 0, "in", '{"points": [1]}')
        w.record_eq(e, 1, "out", '{"ids": [1]}')
        t = time.monotonic()
        assert w.flush() is False                     # refused at once: the server is down
        assert time.monotonic() - t < 2.0
        assert not w.available and w.away_for() >= 0 and "unavailable" in w.take_notices()[0]
        assert w.error and "Operational" in w.error
        n = len(tries)
        t = time.monotonic()
        for _ in range(100):                          # the back-off: no attempt, no waiting
            assert w.flush() is False
        assert time.monotonic() - t < 0.5 and len(tries) == n
        with pytest.raises(StoreAway):
            w.add_trials(e, [{"x1": 9.0}], T0 + 4)
        assert w.heartbeat(e, seg) is False           # a heartbeat is just not written
        assert w.dirty
        time.sleep(0.6)                               # past the first back-off: tried again
        assert w.flush() is False and len(tries) > n
        assert w.away_for(time.time() + 100) > 100
    finally:
        pg.start()
    took = until_flushed(w)
    assert took < 5, "back-off delays grow from 0.5 s; here at most ~2 s had passed"
    notes = w.take_notices()
    assert len(notes) == 1 and notes[0].startswith("the store is back after ")
    assert w.available and w.away_for() == 0 and not w.dirty

    rows = {r["id"]: r for r in sql(url, "SELECT * FROM trials ORDER BY id")}
    assert [(rows[t.id]["status"], rows[t.id]["objective"]) for t in ts_] == \
        [("completed", 0.5), ("completed", 0.25), ("completed", math.inf), ("running", None)]
    ev = sql(url, "SELECT trial_id, epoch FROM events ORDER BY id")
    assert ev == [{"trial_id": ts_[0].id, "epoch": 0}] + \
        [{"trial_id": ts_[2].id, "epoch": k} for k in range(3)]
    assert [m["path"] for m in sql(url, "SELECT path FROM models")] == ["/runs/x/m1.keras"]
    assert [(r["seq"], r["direction"]) for r in sql(url, "SELECT * FROM eq_messages ORDER BY id")] \
        == [(0, "in"), (1, "out")]
    hb = sql(url, "SELECT e.heartbeat_at AS e, s.heartbeat_at AS s FROM experiments e "
                  "JOIN segments s ON s.experiment_id = e.id")
    assert hb[0]["e"] is not None and hb[0]["e"] == hb[0]["s"]  # the held heartbeat, written
    ids = w.add_trials(e, [{"x1": 9.0}], T0 + 5)                  # the held message, now
    assert sql(url, "SELECT params FROM trials WHERE id = :i", i=ids[0])[0]["params"] == {"x1": 9.0}
    eng.dispose()


class CutAfterCommit:
    """A TCP proxy to PostgreSQL that, when armed, forwards the client's COMMIT to the server and
    then closes both connections before the answer comes back: the commit happened, the client
    only sees the connection drop (what a network cut or a server crash at that moment does)."""

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"   # the simple-query message libpq sends

    def __init__(self, port: int):
        self.up = port
        self.armed = False      # cut the next COMMIT
        self.cutting = False    # between that COMMIT and the cut
        self.cuts = 0
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.up))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if not to_server and self.cutting:
                    self.cutting = False     # the server committed and answered: the answer
                    return                   # is dropped, both connections closed (finally)
                if to_server and self.armed and self.COMMIT in data:
                    self.armed, self.cutting = False, True
                    self.cuts += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):     # shutdown first: close() alone leaves the other
                try:                     # thread's recv() holding the socket open
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.lsock.close()


def test_postgres_commit_whose_answer_is_lost_is_not_written_twice(pg, pg_url):
    url = pg_url
    store.init_db(url).dispose()
    proxy = CutAfterCommit(pg.s.port)
    try:
        eng = store.init_db(url.replace(f":{pg.s.port}/", f":{proxy.port}/"), writer=True)
        w = store.Writer(eng)
        e, ts_ = setup_experiment(w, 2)
        finish(ts_[0], 0.5)
        w.trial_changed(ts_[0])
        w.add_events([{"trial_id": ts_[0].id, "kind": "train_end", "at": T0 + 2}])
        w.record_eq(e, 0, "in", "first")
        proxy.armed = True
        assert w.flush() is False and proxy.cuts == 1       # it committed; we could not know
        w.add_events([{"trial_id": ts_[1].id, "kind": "train_begin", "at": T0 + 3}])
        until_flushed(w)
        assert [r["kind"] for r in sql(url, "SELECT kind FROM events ORDER BY id")] == \
            ["train_end", "train_begin"]
        assert [r["payload"] for r in sql(url, "SELECT payload FROM eq_messages")] == ["first"]

        # add_trials: the trials were inserted, their ids returned before the COMMIT was lost;
        # the driver holds the message and calls again: the same ids, no second copy.
        w.record_eq(e, 1, "in", "second")
        proxy.armed = True
        points = [{"x1": 7.0}, {"x1": 8.0}]
        with pytest.raises(StoreAway):
            w.add_trials(e, points, T0 + 4)
        assert proxy.cuts == 2
        time.sleep(0.6)
        ids = w.add_trials(e, points, T0 + 4)
        got = sql(url, "SELECT id, params FROM trials WHERE id > :i ORDER BY id", i=ts_[1].id)
        assert [(r["id"], r["params"]) for r in got] == list(zip(ids, points))
        assert [r["payload"] for r in sql(url, "SELECT payload FROM eq_messages ORDER BY seq")] == \
            ["first", "second"]
        eng.dispose()
    finally:
        proxy.close()


def test_postgres_permanent_errors_still_raise(pg_url):
    url = pg_url
    w = store.Writer(store.init_db(url, writer=True))
    e, _ = setup_experiment(w, 1)
    with pytest.raises(Exception, match="too long"):
        w.update_experiment(e, name="x" * 201)       # experiments.name is VARCHAR(200)
    assert w.available
    w.engine.dispose()


# ---- SQLite ------------------------------------------------------------------------------------
def test_sqlite_lock_held_by_another_client_delays_writes_without_stalling(tmp_path):
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    w = store.Writer(store.init_db(url, writer=True))
    e, ts_ = setup_experiment(w, 2)
    other = sqlite3.connect(tmp_path / "emews.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")                     # another client takes the write lock
    try:
        finish(ts_[0], 0.5)
        w.trial_changed(ts_[0])
        w.add_events([{"trial_id": ts_[0].id, "kind": "train_end", "at": T0 + 2}])
        w.record_eq(e, 0, "in", "p1")
        t = time.monotonic()
        assert w.flush() is False                        # after the short busy timeout, not 30 s
        assert time.monotonic() - t < store.engine.WRITER_BUSY_TIMEOUT + 1.0
        assert "database is locked" in w.take_notices()[0]
        t = time.monotonic()
        assert w.flush() is False and time.monotonic() - t < 0.3    # back-off: no waiting
        with pytest.raises(StoreAway):
            w.add_trials(e, [{"x1": 5.0}], T0 + 3)
        time.sleep(0.6)
        t = time.monotonic()
        with pytest.raises(StoreAway):                   # tried (the back-off passed): still locked
            w.add_trials(e, [{"x1": 5.0}], T0 + 3)
        assert time.monotonic() - t >= store.engine.WRITER_BUSY_TIMEOUT * 0.9
        time.sleep(1.5)                                  # a few seconds past the busy timeout
        # A reader is not blocked meanwhile (WAL), and sees nothing of the held changes.
        assert other.execute("SELECT status FROM trials WHERE id = ?", (ts_[0].id,)).fetchone() \
            == ("queued",)
    finally:
        other.execute("COMMIT")
        other.close()
    until_flushed(w)
    assert w.take_notices()[0].startswith("the store is back after ")
    ids = w.add_trials(e, [{"x1": 5.0}], T0 + 3)
    assert ids == [ts_[1].id + 1]
    rows = sql(url, "SELECT id, status, objective FROM trials ORDER BY id")
    assert [(r["id"], r["status"]) for r in rows] == \
        [(ts_[0].id, "completed"), (ts_[1].id, "queued"), (ids[0], "queued")]
    assert len(sql(url, "SELECT * FROM events")) == 1
    assert [r["payload"] for r in sql(url, "SELECT payload FROM eq_messages")] == ["p1"]
    w.engine.dispose()


def test_eq_message_and_its_trials_are_stored_in_one_transaction(tmp_path):
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    w = store.Writer(store.init_db(url, writer=True))
    e = w.create_experiment(name="eq", pilot="bench", algorithm="random")
    w.record_eq(e, 1, "out", "answer")      # out of order on purpose: written in seq order
    w.record_eq(e, 0, "in", json.dumps({"points": [{"x1": 1.0}]}))
    other = sqlite3.connect(tmp_path / "emews.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreAway):
        w.add_trials(e, [{"x1": 1.0}], T0)
    assert other.execute("SELECT COUNT(*) FROM eq_messages").fetchone() == (0,)
    other.execute("COMMIT")
    time.sleep(0.6)
    ids = w.add_trials(e, [{"x1": 1.0}], T0)
    assert not w.dirty
    assert [(r["seq"], r["direction"]) for r in sql(url, "SELECT * FROM eq_messages ORDER BY id")] \
        == [(0, "in"), (1, "out")]
    assert [r["id"] for r in sql(url, "SELECT id FROM trials")] == ids
    other.close()
    w.engine.dispose()


def test_other_callers_keep_the_long_busy_timeout(tmp_path):
    """`emews sql` and the CLI wait for a lock as before; only the Writer's engine gives up fast."""
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    store.init_db(url).dispose()
    for eng, want in ((store.make_engine(url), store.engine.BUSY_TIMEOUT),
                      (store.make_engine(url, writer=True), store.engine.WRITER_BUSY_TIMEOUT)):
        with eng.connect() as c:
            ms = c.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert ms == want * 1000
        eng.dispose()


def test_sqlite_permanent_errors_still_raise(tmp_path):
    w = store.Writer(store.init_db(f"sqlite:///{tmp_path / 'emews.db'}", writer=True))
    setup_experiment(w, 1)
    w.add_events([{"trial_id": 999_999, "kind": "train_end"}])  # no such trial
    with pytest.raises(IntegrityError):
        w.flush()
    assert w.available
    w.engine.dispose()


def test_segments_and_heartbeats(tmp_path):
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    w = store.Writer(store.init_db(url, writer=True))
    e, _ = setup_experiment(w, 1)
    s1 = w.start_segment(e, 1, "/runs/a", "node00", 11, 4, 3)
    s2 = w.start_segment(e, 2, "/runs/b", "node01", 12, 2, 1)
    time.sleep(0.01)
    assert w.heartbeat(e, s2) is True
    assert w.end_segment(s1, "interrupted", error="SIGTERM") is True
    rows = sql(url, "SELECT * FROM segments ORDER BY number")
    assert [(r["number"], r["status"], r["error"], r["procs"], r["workers"], r["pid"])
            for r in rows] == [(1, "interrupted", "SIGTERM", 4, 3, 11), (2, "running", None, 2, 1, 12)]
    assert rows[0]["ended_at"] is not None and rows[1]["ended_at"] is None
    assert rows[1]["heartbeat_at"] > rows[1]["started_at"]
    exp = sql(url, "SELECT heartbeat_at FROM experiments")[0]
    assert exp["heartbeat_at"] == rows[1]["heartbeat_at"]
    w.engine.dispose()


# ---- spill ---------------------------------------------------------------------------------------
def test_spill_and_import_round_trip_keep_every_value(tmp_path):
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    w = store.Writer(store.init_db(url, writer=True))
    e, ts_ = setup_experiment(w, 4)
    seg = w.start_segment(e, 1, str(tmp_path), "node00", 1, 2, 1)
    w.add_model(ts_[0].id, "/runs/old.keras", 0.9)
    assert w.flush()

    other = sqlite3.connect(tmp_path / "emews.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")                 # the store stays away ...
    finish(ts_[0], math.inf)
    finish(ts_[1], -math.inf)
    ts_[2].start(1, "node01", T0 + 3)
    ts_[2].finish(Result(ts_[2].id, TrialStatus.FAILED, T0 + 3, T0 + 4.25, 1, "node01",
                         error="Traceback ...\nValueError: ü"))
    ts_[3].start(1, "node01", T0 + 5)
    ts_[3].status = TrialStatus.INTERRUPTED
    for t in ts_:
        w.trial_changed(t)
    w.add_events([{"trial_id": ts_[0].id, "kind": "epoch_end", "epoch": 3, "at": T0 + 1.5,
                   "metrics": {"loss": math.inf, "acc": 0.5}}])
    w.add_model(ts_[1].id, "/runs/new.keras", -math.inf)
    assert w.delete_model("/runs/old.keras") is False
    w.record_eq(e, 0, "in", '{"points": []}')
    w.update_experiment(e, status="interrupted", error="the store stayed away")
    w.end_segment(seg, "interrupted", error="store away")
    spill = tmp_path / "unsaved.jsonl"
    assert w.spill(spill) == 4 + 1 + 4 + 1 and not w.dirty   # ... so it goes to a file
    other.execute("COMMIT")
    other.close()

    def strict(s):
        raise ValueError(f"non-strict JSON constant {s}")
    lines = [json.loads(x, parse_constant=strict) for x in spill.read_text().splitlines()]
    assert len(lines) == 10
    assert sql(url, "SELECT status FROM trials WHERE id = :i", i=ts_[0].id)[0]["status"] == "queued"

    n = store.import_spill(store.make_engine(url), spill)
    assert n == 10 and not spill.exists() and (tmp_path / "unsaved.jsonl.imported").exists()
    assert store.import_spill(store.make_engine(url), spill) is None   # nothing left to import
    rows = sql(url, "SELECT * FROM trials ORDER BY id")
    assert [(r["status"], r["objective"], r["error"]) for r in rows] == [
        ("completed", math.inf, None), ("completed", -math.inf, None),
        ("failed", None, "Traceback ...\nValueError: ü"), ("interrupted", None, None)]
    assert rows[2]["finished_at"] == "2027-01-15 08:00:04.250000"
    assert [r["attempts"] for r in rows] == [1, 1, 1, 1]
    ev = sql(url, "SELECT * FROM events")
    assert [(x["epoch"], json.loads(x["metrics"])) for x in ev] == [(3, {"loss": None, "acc": 0.5})]
    assert ev[0]["at"] == "2027-01-15 08:00:01.500000"
    assert [(m["path"], m["metric"]) for m in sql(url, "SELECT * FROM models")] == \
        [("/runs/new.keras", -math.inf)]
    assert sql(url, "SELECT status, error FROM experiments")[0] == \
        {"status": "interrupted", "error": "the store stayed away"}
    assert sql(url, "SELECT status, error FROM segments")[0] == \
        {"status": "interrupted", "error": "store away"}
    assert [r["payload"] for r in sql(url, "SELECT payload FROM eq_messages")] == ['{"points": []}']


def test_a_spill_file_that_is_not_one_is_refused_by_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'emews.db'}"
    store.init_db(url).dispose()
    bad = tmp_path / "unsaved.jsonl"
    bad.write_text('{"trial": {"id": 1, "status": "completed"}\n')
    with pytest.raises(ValueError, match=r"unsaved.jsonl, line 1: not a record"):
        store.import_spill(store.make_engine(url), bad)
    assert bad.exists()
