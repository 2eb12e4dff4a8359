"""Rank 0's single writer: it buffers changes and writes them in batched transactions
(``executemany``), which is what keeps >10,000 recorded trials/s possible on SQLite.

It is also where the store's absence is handled (docs/store.md, "When the database goes away"):
an error that means "the database is away for now" (a server restarting, a lock held by another
client) keeps everything buffered and makes ``flush()`` return False; it is retried with back-off
(0.5 s doubling to 10 s) and written, in order and in one transaction, when the store is back.
Any other error (a value too long for its column, an integrity error) raises as before. What is
still buffered when the driver gives up can be written to a JSON-lines file (``spill``) and
applied to the store later (``import_spill``)."""
from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable

from sqlalchemy import bindparam, func, insert, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from emews_py.store.queries import end_experiment
from emews_py.store.schema import (eq_messages, events, experiments, json_dumps, models, segments,
                                   trials, ts, utcnow)
from emews_py.trials import ExperimentStatus, Trial, TrialStatus

_COLUMNS = ("status", "objective", "metrics", "worker", "host", "started_at", "finished_at", "error",
            "gpu", "stopped_epoch")
# trials.attempts (schema 0003) keeps the stored count when a Trial has none (None: a spill file
# written before attempts were counted); gpu and stopped_epoch are 0004's.
_SQLITE_UPDATE = ("UPDATE trials SET status = ?, objective = ?, metrics = ?, worker = ?, host = ?, "
                  "started_at = ?, finished_at = ?, error = ?, gpu = ?, stopped_epoch = ?, "
                  "attempts = COALESCE(?, attempts) WHERE id = ?")
_SQLITE_INSERT = ("INSERT INTO trials (id, experiment_id, params, status, submitted_at) "
                  "VALUES (?, ?, ?, ?, ?)")

BACKOFF_FIRST_S = 0.5   # the first retry after a failure; doubling ...
BACKOFF_MAX_S = 10.0    # ... up to this: a down server costs at most one attempt per 10 s

# PostgreSQL SQLSTATE classes that mean "not now" rather than "never": 08 connection exception,
# 53 insufficient resources (disk full, too many connections), 57 operator intervention (admin
# shutdown, crash shutdown, cannot connect now, statement cancelled), 40 transaction rollback
# (serialization failure, deadlock), 55P03 lock not available.
_PG_TRANSIENT = ("08", "53", "57", "40", "55P03")
# SQLite primary result codes that mean the same: BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_TRANSIENT_CODES = {5, 6, 10, 13, 14, 15}
_SQLITE_TRANSIENT_TEXT = ("database is locked", "database table is locked", "busy", "disk i/o",
                          "unable to open", "disk is full")


class StoreAway(RuntimeError):
    """The store cannot be written for now (a database restarting, a lock held by another client).
    Nothing was lost: what was to be written is still buffered; call again later."""


def is_transient(e: BaseException) -> bool:
    """Whether ``e`` means the store is away for now (retry later) rather than that the write is
    wrong (raise): see _PG_TRANSIENT and _SQLITE_TRANSIENT_CODES."""
    if isinstance(e, (DisconnectionError, PoolTimeout)):
        return True
    if not isinstance(e, DBAPIError):
        return False
    if e.connection_invalidated:
        return True
    orig = e.orig
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, psycopg 3
    if code:
        return str(code).startswith(_PG_TRANSIENT)
    if not isinstance(e, (OperationalError, InterfaceError)):
        return False
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in _SQLITE_TRANSIENT_CODES
    if type(orig).__module__.startswith("sqlite3"):
        return any(s in str(orig).lower() for s in _SQLITE_TRANSIENT_TEXT)
    return True  # a server driver's OperationalError with no SQLSTATE: refused, closed, timed out


def _why(e: BaseException) -> str:
    """One line: the driver's message (``orig``) without SQLAlchemy's SQL and parameters."""
    orig = getattr(e, "orig", None) or e
    return f"{type(orig).__name__}: " + " ".join(str(orig).split())[:300]


@functools.lru_cache(maxsize=1024)
def _sqlite_second(s: int) -> str:
    return ts(s).isoformat(" ", "seconds")


def _sqlite_ts(t: float | None) -> str | None:
    """``ts(t).isoformat(" ", "microseconds")``, the text SQLAlchemy stores, at a third of the cost
    (the hot path formats two timestamps per trial): trials finishing within one second share the
    formatted second; microseconds are rounded exactly as datetime.fromtimestamp rounds them."""
    if t is None:
        return None
    frac, whole = math.modf(t)
    s, us = int(whole), round(frac * 1e6)
    if us >= 1_000_000:
        s, us = s + 1, us - 1_000_000
    elif us < 0:
        s, us = s - 1, us + 1_000_000
    return f"{_sqlite_second(s)}.{us:06d}"


def _json_or_null(v: Any) -> str | None:
    return None if v is None else json_dumps(v)


def _state(t: Trial) -> tuple:
    """(id, status, objective, metrics, worker, host, started_at, finished_at, error, gpu,
    stopped_epoch, attempts) of a trial; times in epoch seconds."""
    return (t.id, t.status.value, t.objective, t.metrics, t.worker, t.host, t.started_at,
            t.finished_at, t.error, t.gpu, t.stopped_epoch, t.attempts)


def _plain(fields: dict) -> dict:
    """Enum members (ExperimentStatus.COMPLETED) as their text, which every driver binds."""
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in fields.items()}


class Writer:
    """Rank 0's single writer. Trials are inserted when the optimizer sends them (to get their ids);
    every later change is buffered and written by ``flush()`` in one transaction.

    While the store is away, ``flush()`` returns False and keeps everything; ``add_trials``,
    ``create_experiment`` and ``start_segment`` raise StoreAway. ``take_notices()`` returns the
    lines for the driver to print (the store went away, the store is back after N s)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._sqlite = engine.dialect.name == "sqlite"
        self._updates: dict[int, Trial] = {}
        self._events: list[dict] = []
        self._ops: list[tuple] = []      # rare writes, in call order: (kind, ...), see _write_ops
        self._eq: list[dict] = []
        self._heartbeat: tuple | None = None   # (exp_id, segment_id, at): only the latest matters
        self._upd = (update(trials).where(trials.c.id == bindparam("b_id"))
                     .values({c: bindparam(c) for c in _COLUMNS})
                     .values(attempts=func.coalesce(bindparam("attempts"), trials.c.attempts)))
        # away from the store
        self.away_since: float | None = None   # epoch seconds of the first failed write
        self.error: str | None = None          # the latest transient error, one line
        self._delay = BACKOFF_FIRST_S
        self._next_try = 0.0                   # time.monotonic() before which nothing is tried
        self._notices: list[str] = []
        # PostgreSQL: a transaction whose COMMIT failed may have committed (the server got it,
        # the answer was lost). (txid, events, ops, eq rows written, add_trials' (exp, points,
        # ids) or None); txid_status() settles it at the next attempt.
        self._unsure: tuple | None = None
        self._settled: list[tuple] = []        # add_trials that did commit: (exp_id, points, ids)

    # ---- availability --------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False from a failed write until the next successful one."""
        return self.away_since is None

    def away_for(self, now: float | None = None) -> float:
        """Seconds since the store went away (0 while it is available); ``now`` in epoch seconds."""
        if self.away_since is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - self.away_since)

    def take_notices(self) -> list[str]:
        """The lines to print since the last call: the store went away, it is back."""
        out, self._notices = self._notices, []
        return out

    def _waiting(self) -> bool:
        return self.away_since is not None and time.monotonic() < self._next_try

    def _went_away(self, e: BaseException) -> None:
        self.error = _why(e)
        if self.away_since is None:
            self.away_since = time.time()
            self._delay = BACKOFF_FIRST_S
            self._notices.append(f"the store is unavailable ({self.error}); results are kept in "
                                 f"memory and written when it is back (retrying with back-off)")
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, BACKOFF_MAX_S)

    def _came_back(self, n: int) -> None:
        if self.away_since is not None:
            self._notices.append(f"the store is back after {time.time() - self.away_since:.0f} s; "
                                 f"{n} buffered change(s) written")
        self.away_since, self.error, self._delay = None, None, BACKOFF_FIRST_S

    # ---- one-off writes ------------------------------------------------------------------------
    def _now(self, work: Callable[[Connection], Any]) -> Any:
        """``work`` in a transaction of its own, now; a transient error raises StoreAway."""
        try:
            with self.engine.begin() as c:
                out = work(c)
        except Exception as e:
            if not is_transient(e):
                raise
            self._went_away(e)
            raise StoreAway(f"the store is unavailable: {self.error}") from e
        if self.away_since is not None and not self.dirty:
            self._came_back(0)
        return out

    def create_experiment(self, **fields: Any) -> int:
        fields.setdefault("started_at", utcnow())
        fields.setdefault("status", ExperimentStatus.RUNNING)
        return self._now(lambda c: c.execute(insert(experiments).values(**_plain(fields))
                                             .returning(experiments.c.id)).scalar_one())

    def start_segment(self, exp_id: int, number: int, run_dir: str | None, host: str | None,
                      pid: int | None, procs: int | None, workers: int | None) -> int:
        """Insert the ``segments`` row of this job (status running) and return its id."""
        now = utcnow()
        row = dict(experiment_id=exp_id, number=number, run_dir=run_dir, host=host, pid=pid,
                   procs=procs, workers=workers, started_at=now, heartbeat_at=now, status="running")
        return self._now(lambda c: c.execute(insert(segments).values(**row)
                                             .returning(segments.c.id)).scalar_one())

    def update_experiment(self, exp_id: int, **fields: Any) -> bool:
        """Buffered, then flushed: True when written now, False when it waits for the store."""
        self._ops.append(("experiment", exp_id, _plain(fields)))
        return self.flush()

    def end_segment(self, segment_id: int, status: str, error: str | None = None) -> bool:
        """This job's segment ends (completed, failed, interrupted); buffered, then flushed."""
        now = utcnow()
        status = status.value if isinstance(status, enum.Enum) else status
        self._ops.append(("segment", segment_id, {"status": status, "error": error,
                                                  "ended_at": now, "heartbeat_at": now}))
        return self.flush()

    def heartbeat(self, exp_id: int, segment_id: int | None = None) -> bool:
        """``experiments.heartbeat_at`` and ``segments.heartbeat_at`` = now, with whatever is
        buffered. While the store is away it is simply not written (only the latest is kept)."""
        self._heartbeat = (exp_id, segment_id, utcnow())
        return self.flush()

    def end_experiment(self, exp_id: int, status: ExperimentStatus, **kw: Any) -> int:
        """Write what is buffered (now, back-off or not), then ``queries.end_experiment`` (open
        trials cancelled). StoreAway if the store is away."""
        if not self.flush(force=True):
            raise StoreAway(f"the store is unavailable: {self.error}")
        try:
            return end_experiment(self.engine, exp_id, status, **kw)
        except Exception as e:
            if not is_transient(e):
                raise
            self._went_away(e)
            raise StoreAway(f"the store is unavailable: {self.error}") from e

    # ---- buffered writes -----------------------------------------------------------------------
    def add_trials(self, exp_id: int, params_list: list[dict], submitted: float) -> list[int]:
        """Insert queued trials in one statement and return their ids (in order); the ids come
        from the database, so experiments sharing one database never collide. Everything
        buffered (the EQ message that proposed them, results) is written in the same transaction.
        StoreAway while the store is away (nothing lost: call again with the same points)."""
        if not params_list:
            return []
        if (ids := self._take_settled(exp_id, params_list)) is not None:
            return ids
        if self._waiting():
            raise StoreAway(f"the store is unavailable: {self.error}")

        def insert_once(c: Connection) -> list[int]:
            # _transaction may just have learnt that an earlier try of this very call committed
            ids = self._take_settled(exp_id, params_list)
            return self._insert_trials(c, exp_id, params_list, submitted) if ids is None else ids
        ok, ids = self._transaction(insert_once, (exp_id, params_list))
        if not ok:
            raise StoreAway(f"the store is unavailable: {self.error}")
        return ids

    def _take_settled(self, exp_id: int, params_list: list[dict]) -> list[int] | None:
        """The ids of an add_trials whose COMMIT seemed to fail but had committed (PostgreSQL)."""
        for k, (e, pts, ids) in enumerate(self._settled):
            if e == exp_id and pts == params_list:
                del self._settled[k]
                return ids
        return None

    def _insert_trials(self, c: Connection, exp_id: int, params_list: list[dict],
                       submitted: float) -> list[int]:
        queued = TrialStatus.QUEUED.value
        if self._sqlite:
            # SQLite answers an ordered RETURNING one row at a time (10x slower); holding the
            # write lock (BEGIN IMMEDIATE) we can number the rows ourselves instead, and hand
            # them to the driver's executemany as tuples (the hot path, as in flush()).
            first = c.execute(text("SELECT COALESCE(MAX(id), 0) FROM trials")).scalar_one() + 1
            sub = _sqlite_ts(submitted)
            ids = list(range(first, first + len(params_list)))
            c.exec_driver_sql(_SQLITE_INSERT, [(i, exp_id, json_dumps(p), queued, sub)
                                               for i, p in zip(ids, params_list)])
            return ids
        rows = [{"experiment_id": exp_id, "params": p, "status": queued,
                 "submitted_at": ts(submitted)} for p in params_list]
        res = c.execute(insert(trials).returning(trials.c.id, sort_by_parameter_order=True), rows)
        return [r[0] for r in res]

    def trial_changed(self, trial: Trial) -> None:
        """Buffer a trial whose state changed. Its fields are read at ``flush()``, so a Trial
        changed again before then is written once, in its latest state."""
        self._updates[trial.id] = trial

    def add_events(self, evs: Iterable[dict]) -> None:
        for e in evs:
            self._events.append({"trial_id": e["trial_id"], "kind": e["kind"], "epoch": e.get("epoch"),
                                 "metrics": e.get("metrics"), "at": ts(e.get("at"))})

    def add_model(self, trial_id: int, path: str, metric: float | None) -> None:
        self._ops.append(("model", {"trial_id": trial_id, "path": path, "metric": metric,
                                    "saved_at": utcnow()}))

    def delete_model(self, path: str) -> bool:
        """Buffered after the models added before it, then flushed (True: written now)."""
        self._ops.append(("delete_model", path))
        return self.flush()

    def record_eq(self, exp_id: int, seq: int, direction: str, payload: str) -> None:
        """Buffer one ``eq_messages`` row; the next ``flush()`` or ``add_trials()`` writes it (the
        latter in the same transaction as the trials it proposed), rows in ``seq`` order."""
        if direction not in ("in", "out"):
            raise ValueError(f"record_eq: direction must be 'in' or 'out', not {direction!r}")
        self._eq.append({"experiment_id": exp_id, "seq": seq, "direction": direction,
                         "payload": payload, "at": utcnow()})

    @property
    def dirty(self) -> bool:
        """Whether anything is buffered (a pending heartbeat does not count)."""
        return bool(self._updates or self._events or self._ops or self._eq)

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered in one transaction. True when written (or nothing to write);
        False when the store is away: everything stays buffered, and until the back-off delay has
        passed further calls return False at once without touching the database (``force``:
        try anyway). Errors that are not about the store's availability raise."""
        if not self.dirty and self._heartbeat is None:
            return True
        if not force and self._waiting():
            return False
        return self._transaction(None, None)[0]

    # ---- the transaction -----------------------------------------------------------------------
    def _transaction(self, extra: Callable[[Connection], Any] | None,
                     points: tuple | None) -> tuple[bool, Any]:
        """Everything buffered, then ``extra(c)`` (add_trials), in one transaction. (True, what
        extra returned) once committed and the buffers emptied; (False, None) on a transient
        error, buffers kept. On SQLite a COMMIT that reports an error did not happen (the WAL's
        commit record is written last); on PostgreSQL it may have, so its txid is settled later."""
        txid, committing, out = None, False, None
        try:
            with self.engine.connect() as c:
                tr = c.begin()
                if self._pg:
                    txid = c.exec_driver_sql("SELECT txid_current()").scalar_one()
                    if self._unsure is not None:
                        self._settle(c)
                n_ev, n_ops, n_eq = len(self._events), len(self._ops), len(self._eq)
                n = self._write(c)
                if extra is not None:
                    out = extra(c)
                committing = True
                tr.commit()
        except Exception as e:
            if not is_transient(e):
                raise
            if committing and txid is not None:
                self._unsure = (txid, n_ev, n_ops, n_eq,
                                (*points, out) if points is not None else None)
            self._went_away(e)
            return False, None
        self._updates.clear()
        self._events.clear()
        self._ops.clear()
        self._eq.clear()
        self._heartbeat = None
        self._came_back(n)
        return True, out

    def _settle(self, c: Connection) -> None:
        """Did the transaction whose COMMIT failed commit after all? Then drop what it inserted
        from the buffers (trial updates are absolute values: writing them again is harmless)."""
        txid, n_ev, n_ops, n_eq, added = self._unsure
        st = c.execute(text("SELECT txid_status(:x)"), {"x": txid}).scalar()
        if st == "in progress":   # the server has not finished it yet: not now
            raise DisconnectionError(f"transaction {txid} of the last write is still in progress")
        self._unsure = None
        if st == "committed":
            del self._events[:n_ev], self._ops[:n_ops], self._eq[:n_eq]
            if added is not None:
                self._settled.append(added)

    def _write(self, c: Connection) -> int:
        """Write the buffers on ``c`` (in its transaction); returns how many changes."""
        states = [_state(t) for t in self._updates.values()]
        if states and self._sqlite:
            # The hot path at >10,000 trials/s: SQLAlchemy's per-row parameter processing
            # cost more than SQLite itself, so rows go to the driver's executemany as tuples,
            # in the formats SQLAlchemy itself stores (ISO timestamps, strict JSON).
            c.exec_driver_sql(_SQLITE_UPDATE, [
                (st, obj, _json_or_null(met), w, h, _sqlite_ts(t0), _sqlite_ts(t1), err, g, se, a, i)
                for i, st, obj, met, w, h, t0, t1, err, g, se, a in states])
        elif states:
            c.execute(self._upd, [
                {"b_id": s[0], "status": s[1], "objective": s[2], "metrics": s[3], "worker": s[4],
                 "host": s[5], "started_at": ts(s[6]), "finished_at": ts(s[7]), "error": s[8],
                 "gpu": s[9], "stopped_epoch": s[10], "attempts": s[11]}
                for s in states])
        if self._events:
            c.execute(insert(events), self._events)
        self._write_ops(c)
        if self._eq:
            c.execute(insert(eq_messages), sorted(self._eq, key=lambda r: r["seq"]))
        if self._heartbeat is not None:
            exp_id, seg_id, at = self._heartbeat
            c.execute(update(experiments).where(experiments.c.id == exp_id).values(heartbeat_at=at))
            if seg_id is not None:
                c.execute(update(segments).where(segments.c.id == seg_id).values(heartbeat_at=at))
        return len(states) + len(self._events) + len(self._ops) + len(self._eq)

    def _write_ops(self, c: Connection) -> None:
        """The rare writes in call order; consecutive model rows in one executemany."""
        rows: list[dict] = []
        for op in self._ops:
            if op[0] == "model":
                rows.append(op[1])
                continue
            if rows:
                c.execute(insert(models), rows)
                rows = []
            if op[0] == "delete_model":
                c.execute(models.delete().where(models.c.path == op[1]))
            elif op[0] == "experiment":
                c.execute(update(experiments).where(experiments.c.id == op[1]).values(**op[2]))
            elif op[0] == "segment":
                c.execute(update(segments).where(segments.c.id == op[1]).values(**op[2]))
        if rows:
            c.execute(insert(models), rows)

    # ---- spill ---------------------------------------------------------------------------------
    def spill(self, path: str | os.PathLike) -> int:
        """Write everything still buffered to the JSON-lines file ``path`` (appended to what an
        earlier spill left there), empty the buffers, and return how many records. A pending
        heartbeat is dropped. ``import_spill`` applies the file to the store."""
        lines = [{"trial": dict(zip(("id", "status", "objective", "metrics", "worker", "host",
                                     "started_at", "finished_at", "error", "gpu", "stopped_epoch", "attempts"),
                                    _state(t)))}
                 for t in self._updates.values()]
        lines += [{"event": e} for e in self._events]
        lines += [{"op": list(op)} for op in self._ops]
        lines += [{"eq": r} for r in self._eq]
        if self._unsure is not None:
            # Unknown whether the last transaction committed: its inserts are in the file too, so
            # the import may duplicate them. Said in the file, where a resume can report it.
            lines.insert(0, {"note": f"the COMMIT of PostgreSQL transaction {self._unsure[0]} "
                                     f"failed; it may have been applied"})
        path = Path(path)
        old = path.read_text() if path.exists() else ""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(old)
            for line in lines:
                f.write(json.dumps(_encode(line), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._updates.clear()
        self._events.clear()
        self._ops.clear()
        self._eq.clear()
        self._heartbeat = None
        return sum("note" not in line for line in lines)


# ---- the spill file: strict JSON; +-inf, NaN and datetimes tagged so they come back as they were --
def _encode(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": repr(v)}          # 'inf', '-inf', 'nan'
    if isinstance(v, dt.datetime):
        return {"$datetime": v.isoformat()}
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(d: dict) -> Any:
    if len(d) == 1:
        if "$float" in d:
            return float(d["$float"])
        if "$datetime" in d:
            return dt.datetime.fromisoformat(d["$datetime"])
    return d


def import_spill(engine: Engine, path: str | os.PathLike) -> int | None:
    """Apply a file written by ``Writer.spill`` to the store in one transaction, rename it
    ``<name>.imported``, and return how many records it held (None: there is no such file).
    Errors (the store away included) raise, and leave the file in place to import again."""
    path = Path(path)
    if not path.exists():
        return None
    w = Writer(engine)
    n = 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line, object_hook=_decode)
                (kind, v), = rec.items()
            except ValueError as e:
                raise ValueError(f"{path}, line {lineno}: not a record written by Writer.spill "
                                 f"({e}); fix or remove the line and resume again") from None
            if kind == "trial":
                v["status"] = TrialStatus(v["status"])
                for k in ("attempts", "gpu", "stopped_epoch"):   # files written before 0003/0004
                    v.setdefault(k, None)
                w._updates[v["id"]] = SimpleNamespace(**v)
            elif kind == "event":
                w._events.append(v)
            elif kind == "op":
                w._ops.append(tuple(v))
            elif kind == "eq":
                w._eq.append(v)
            elif kind == "note":
                continue
            else:
                raise ValueError(f"{path}, line {lineno}: unknown record {kind!r}")
            n += 1
    if not w.flush(force=True):
        raise StoreAway(f"{path} was not imported, the store is unavailable: {w.error}")
    path.rename(path.with_name(path.name + ".imported"))
    return n
