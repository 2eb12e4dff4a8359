"""The metadata store: experiments, trials, callback events and saved models, in plain SQL tables.

Any SQLAlchemy URL works; SQLite is the embedded default and PostgreSQL the store for clusters.
Rank 0 is the only writer: it buffers changes and writes them in batched transactions
(``executemany``), which is what keeps >10,000 recorded trials/s possible on SQLite.
The schema is public (users write SQL against it) and documented in docs/store.md.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from typing import Any, Iterable

from sqlalchemy import (JSON, Column, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        bindparam, create_engine, event, insert, select, text, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

TRIAL_STATUSES = ("queued", "running", "completed", "failed", "timeout", "cancelled")


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"
    id = Column(Integer, primary_key=True)
    name = Column(String(200), nullable=False)
    pilot = Column(String(100), nullable=False)
    algorithm = Column(String(200), nullable=False)
    space = Column(Text)              # the space file as the user wrote it
    space_json = Column(JSON(none_as_null=True))         # the same space as JSON (eq/R/space.R export)
    settings = Column(JSON(none_as_null=True))           # algorithm settings as sent in the "Params" handshake
    status = Column(String(20), nullable=False, default="running")  # running, completed, failed
    run_dir = Column(Text)
    mode = Column(String(20))         # resident or app
    workers = Column(Integer)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    final_message = Column(Text)      # the optimizer's message after DONE/FINAL
    error = Column(Text)              # why the experiment failed, with the optimizer's traceback


class Trial(Base):
    __tablename__ = "trials"
    id = Column(Integer, primary_key=True)
    experiment_id = Column(Integer, ForeignKey("experiments.id"), nullable=False)
    params = Column(JSON, nullable=False)
    status = Column(String(20), nullable=False, default="queued")
    objective = Column(Float)
    metrics = Column(JSON(none_as_null=True))            # extra metrics the pilot returned (accuracy, F1, ...)
    worker = Column(Integer)          # MPI rank that ran it
    host = Column(String(255))
    submitted_at = Column(DateTime)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    error = Column(Text)              # traceback or time-limit message
    __table_args__ = (Index("ix_trials_experiment", "experiment_id", "status"),)


class Event(Base):
    __tablename__ = "events"
    id = Column(Integer, primary_key=True)
    trial_id = Column(Integer, ForeignKey("trials.id"), nullable=False)
    kind = Column(String(50), nullable=False)  # train_begin, epoch_end, train_end, ...
    epoch = Column(Integer)
    metrics = Column(JSON(none_as_null=True))
    at = Column(DateTime)
    __table_args__ = (Index("ix_events_trial", "trial_id"),)


class Model(Base):
    __tablename__ = "models"
    id = Column(Integer, primary_key=True)
    trial_id = Column(Integer, ForeignKey("trials.id"), nullable=False)
    path = Column(Text, nullable=False)
    metric = Column(Float)
    saved_at = Column(DateTime)


experiments, trials, events, models = (Experiment.__table__, Trial.__table__, Event.__table__,
                                       Model.__table__)


def ts(t: float | None) -> dt.datetime | None:
    """Epoch seconds to a naive UTC datetime (how every timestamp is stored)."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).replace(tzinfo=None)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def json_dumps(v: Any) -> str:
    """JSON columns hold strict JSON: NaN and +-inf (a diverged loss) are stored as null.
    PostgreSQL rejects the NaN token outright, and SQLite's json_extract may too."""
    try:
        return json.dumps(v, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(v), allow_nan=False)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": 30}, json_serializer=json_dumps)

        @event.listens_for(eng, "connect")
        def _pragmas(conn, _):  # WAL lets readers (users' SQL) run while rank 0 writes
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            conn.isolation_level = None  # transactions are begun below, not by pysqlite

        @event.listens_for(eng, "begin")
        def _begin(conn):  # take the write lock up front (see Writer.add_trials)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return eng
    return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps)


def init_db(url: str) -> Engine:
    """Create the tables if missing. Experiments started together against a fresh database race
    to create them: on PostgreSQL an advisory lock serializes that, elsewhere we retry."""
    eng = make_engine(url)
    for attempt in range(5):
        try:
            with eng.begin() as c:
                if eng.dialect.name == "postgresql":
                    c.execute(text("SELECT pg_advisory_xact_lock(720931)"))  # any fixed key
                Base.metadata.create_all(c)
            return eng
        except DBAPIError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    return eng


_SQLITE_UPDATE = ("UPDATE trials SET status = ?, objective = ?, metrics = ?, worker = ?, host = ?, "
                  "started_at = ?, finished_at = ?, error = ? WHERE id = ?")


def _sqlite_ts(t: float | None) -> str | None:
    return None if t is None else ts(t).isoformat(" ", "microseconds")


def _json_or_null(v: Any) -> str | None:
    return None if v is None else json_dumps(v)


class Writer:
    """Rank 0's single writer. Trials are inserted when the optimizer sends them (to get their ids);
    every later change is buffered and written by ``flush()`` in one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._updates: dict[int, dict] = {}
        self._events: list[dict] = []
        self._models: list[dict] = []
        self._upd = (update(trials).where(trials.c.id == bindparam("b_id"))
                     .values({c: bindparam(c) for c in
                              ("status", "objective", "metrics", "worker", "host", "started_at",
                               "finished_at", "error")}))

    def create_experiment(self, **fields: Any) -> int:
        fields.setdefault("started_at", utcnow())
        fields.setdefault("status", "running")
        with self.engine.begin() as c:
            return c.execute(insert(experiments).values(**fields).returning(experiments.c.id)).scalar_one()

    def update_experiment(self, exp_id: int, **fields: Any) -> None:
        with self.engine.begin() as c:
            c.execute(update(experiments).where(experiments.c.id == exp_id).values(**fields))

    def add_trials(self, exp_id: int, params_list: list[dict], submitted: float) -> list[int]:
        """Insert queued trials in one statement and return their ids (in order); the ids come
        from the database, so experiments sharing one database never collide."""
        sub = ts(submitted)
        rows = [{"experiment_id": exp_id, "params": p, "status": "queued", "submitted_at": sub}
                for p in params_list]
        with self.engine.begin() as c:
            if self.engine.dialect.name == "sqlite":
                # SQLite answers an ordered RETURNING one row at a time (10x slower); holding the
                # write lock (BEGIN IMMEDIATE) we can number the rows ourselves instead.
                first = c.execute(text("SELECT COALESCE(MAX(id), 0) FROM trials")).scalar_one() + 1
                for i, r in enumerate(rows):
                    r["id"] = first + i
                c.execute(insert(trials), rows)
                return [r["id"] for r in rows]
            res = c.execute(insert(trials).returning(trials.c.id, sort_by_parameter_order=True), rows)
            return [r[0] for r in res]

    def trial_changed(self, trial: dict) -> None:
        """Buffer the current state of a trial (dict with the columns of ``_upd``)."""
        self._updates[trial["id"]] = trial

    def add_events(self, evs: Iterable[dict]) -> None:
        for e in evs:
            self._events.append({"trial_id": e["trial_id"], "kind": e["kind"], "epoch": e.get("epoch"),
                                 "metrics": e.get("metrics"), "at": ts(e.get("at"))})

    def add_model(self, trial_id: int, path: str, metric: float | None) -> None:
        self._models.append({"trial_id": trial_id, "path": path, "metric": metric, "saved_at": utcnow()})

    def delete_model(self, path: str) -> None:
        self.flush()
        with self.engine.begin() as c:
            c.execute(models.delete().where(models.c.path == path))

    @property
    def dirty(self) -> bool:
        return bool(self._updates or self._events or self._models)

    def flush(self) -> None:
        if not self.dirty:
            return
        with self.engine.begin() as c:
            if self._updates and self.engine.dialect.name == "sqlite":
                # The hot path at >10,000 trials/s: SQLAlchemy's per-row parameter processing
                # cost more than SQLite itself, so rows go to the driver's executemany as tuples,
                # in the formats SQLAlchemy itself stores (ISO timestamps, strict JSON).
                c.exec_driver_sql(_SQLITE_UPDATE, [
                    (t["status"], t.get("objective"), _json_or_null(t.get("metrics")),
                     t.get("worker"), t.get("host"), _sqlite_ts(t.get("started_at")),
                     _sqlite_ts(t.get("finished_at")), t.get("error"), t["id"])
                    for t in self._updates.values()])
            elif self._updates:
                c.execute(self._upd, [
                    {"b_id": t["id"], "status": t["status"], "objective": t.get("objective"),
                     "metrics": t.get("metrics"), "worker": t.get("worker"), "host": t.get("host"),
                     "started_at": ts(t.get("started_at")), "finished_at": ts(t.get("finished_at")),
                     "error": t.get("error")} for t in self._updates.values()])
            if self._events:
                c.execute(insert(events), self._events)
            if self._models:
                c.execute(insert(models), self._models)
        self._updates.clear()
        self._events.clear()
        self._models.clear()


def summary(engine: Engine, exp_id: int) -> dict:
    """Counts by status and the best completed trial of an experiment."""
    with engine.connect() as c:
        counts = dict(c.execute(text(
            "SELECT status, COUNT(*) FROM trials WHERE experiment_id = :e GROUP BY status"),
            {"e": exp_id}).all())
        best = c.execute(select(trials.c.id, trials.c.objective, trials.c.params)
                         .where(trials.c.experiment_id == exp_id, trials.c.status == "completed",
                                trials.c.objective.is_not(None))
                         .order_by(trials.c.objective).limit(1)).first()
        exp = c.execute(select(experiments).where(experiments.c.id == exp_id)).mappings().first()
    return {"counts": counts, "best": dict(best._mapping) if best else None,
            "experiment": dict(exp) if exp else None}
