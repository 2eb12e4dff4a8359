"""The store's tables as this code expects them (the head of the migrations), and the formats values
are stored in.

The schema is public: users write SQL against it (docs/store.md). Change it here AND in one new
alembic revision under ``migrations/versions/`` (docs/store.md, "Schema versions and migrations");
tests/test_store.py checks that the two agree on SQLite and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase

from emews_py.trials import ExperimentStatus, TrialStatus

# The alembic revision of the schema below; init_db upgrades every database to it.
SCHEMA_VERSION = "0004"

TRIAL_STATUSES = tuple(s.value for s in TrialStatus)


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
    status = Column(String(20), nullable=False, default=ExperimentStatus.RUNNING.value)
    run_dir = Column(Text)
    mode = Column(String(20))         # resident or app
    workers = Column(Integer)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    final_message = Column(Text)      # the optimizer's message after DONE/FINAL
    error = Column(Text)              # why the experiment failed, with the optimizer's traceback
    config = Column(JSON(none_as_null=True))             # the run's RunConfig (0002: to resume campaigns)
    heartbeat_at = Column(DateTime)   # 0003: the driver's last sign of life (every few seconds)


class Trial(Base):
    __tablename__ = "trials"
    id = Column(Integer, primary_key=True)
    experiment_id = Column(Integer, ForeignKey("experiments.id"), nullable=False)
    params = Column(JSON, nullable=False)
    status = Column(String(20), nullable=False, default=TrialStatus.QUEUED.value)
    objective = Column(Float)
    metrics = Column(JSON(none_as_null=True))            # extra metrics the pilot returned (accuracy, F1, ...)
    worker = Column(Integer)          # MPI rank that ran it
    host = Column(String(255))
    submitted_at = Column(DateTime)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    error = Column(Text)              # traceback or time-limit message
    attempts = Column(Integer)        # 0003: how many times it was started (a resumed trial: 2+)
    gpu = Column(String(64))          # 0004: CUDA_VISIBLE_DEVICES of its run (GPUS_PER_NODE)
    stopped_epoch = Column(Integer)   # 0004: the epoch at which an early stopper (STOPPER) ended it
    __table_args__ = (Index("ix_trials_experiment", "experiment_id", "status"),)


class Event(Base):
    __tablename__ = "events"
    id = Column(Integer, primary_key=True)
    trial_id = Column(Integer, ForeignKey("trials.id"), nullable=False)
    kind = Column(String(50), nullable=False)  # train_begin, epoch_end, train_end, ...
    epoch = Column(Integer)
    metrics = Column(JSON(none_as_null=True))
    at = Column(DateTime)
    __table_args__ = (Index("ix_events_trial", "trial_id"),
                      Index("ix_events_trial_kind", "trial_id", "kind"))  # 0002: learning curves


class Model(Base):
    __tablename__ = "models"
    id = Column(Integer, primary_key=True)
    trial_id = Column(Integer, ForeignKey("trials.id"), nullable=False)
    path = Column(Text, nullable=False)
    metric = Column(Float)
    saved_at = Column(DateTime)


class Segment(Base):
    """0003: one row per job (segment) an experiment ran in: the first run and every resume."""
    __tablename__ = "segments"
    id = Column(Integer, primary_key=True)
    experiment_id = Column(Integer, ForeignKey("experiments.id"), nullable=False)
    number = Column(Integer, nullable=False)   # 1 for the first job, 2 for the first resume, ...
    run_dir = Column(Text)
    host = Column(String(255))        # where rank 0 ran
    pid = Column(Integer)             # rank 0's process id
    procs = Column(Integer)           # MPI ranks (PROCS)
    workers = Column(Integer)
    started_at = Column(DateTime)
    heartbeat_at = Column(DateTime)
    ended_at = Column(DateTime)
    status = Column(String(20), nullable=False)  # running, completed, failed, interrupted, killed
    error = Column(Text)
    __table_args__ = (Index("ix_segments_experiment", "experiment_id", "number"),)


class EqMessage(Base):
    """0003: the EQ transcript of an experiment, so that a resume can answer a restarted optimizer
    from it. ``in``: what the optimizer sent (payload verbatim). ``out``: the answer, as the trial
    ids it delivered and the farm's load ({"ids": [...], "load": {...}}); the text is rebuilt from
    the trials."""
    __tablename__ = "eq_messages"
    id = Column(Integer, primary_key=True)
    experiment_id = Column(Integer, ForeignKey("experiments.id"), nullable=False)
    seq = Column(Integer, nullable=False)
    direction = Column(String(3), nullable=False)   # in | out
    payload = Column(Text, nullable=False)
    at = Column(DateTime)
    __table_args__ = (Index("ix_eq_messages_experiment", "experiment_id", "seq"),)


experiments, trials, events, models = (Experiment.__table__, Trial.__table__, Event.__table__,
                                       Model.__table__)
segments, eq_messages = Segment.__table__, EqMessage.__table__


# ---- value formats -----------------------------------------------------------------------------

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
