"""The search as pandas DataFrames, for notebooks: ``emews_py.trials`` and ``emews_py.events``.

    import emews_py
    df = emews_py.trials("sqlite:///runs/emews.db", "bench-random")   # or an id: 3
    df.sort_values("objective").head(10)[["objective", "param_x1", "param_x2"]]
    ev = emews_py.events("sqlite:///runs/emews.db", 3)
    ev[ev.kind == "epoch_end"].pivot(index="epoch", columns="trial_id", values="metric_val_loss")

The store is opened read-only, as ``emews sql`` opens it, so a notebook can read a running
experiment without any risk to it. ``emews trials ID --format csv|json`` prints the same table.

Columns (docs/store.md, "The search as DataFrames"):

- ``trials``: ``trial_id``, ``experiment_id``, ``status`` (text), ``objective``, one
  ``param_<name>`` column per hyperparameter (the values the pilot received, trafo applied; in the
  order of the search space; missing where a ``requires`` left it inactive), one
  ``metric_<name>`` column per extra metric the pilot returned, ``worker``, ``host``,
  ``attempts``, ``submitted_at``, ``started_at``, ``finished_at`` (UTC, tz-aware datetimes),
  ``seconds`` (finished - started) and ``error``; in trial id order.
- ``events``: ``event_id``, ``trial_id``, ``kind`` (``epoch_end``, ...), ``epoch``, ``at`` (UTC
  datetime) and one ``metric_<name>`` column per Keras log value; in event id order.

The prefixes keep a hyperparameter or metric named like a fixed column (``status``, ``epoch``)
apart from it. ``df.attrs["experiment"]`` holds the experiment's id and name.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["DataError", "trials", "events", "records", "resolve_experiment"]

PARAM, METRIC = "param_", "metric_"
TIME_COLUMNS = ("submitted_at", "started_at", "finished_at")


class DataError(ValueError):
    """An experiment or store that cannot be read, with the reason and the fix in one line."""


def default_db() -> str:
    """The store a plain ``make workflow`` here writes: $EMEWS_RUNS/emews.db, else runs/emews.db."""
    return f"sqlite:///{Path(os.environ.get('EMEWS_RUNS', 'runs')).resolve() / 'emews.db'}"


def _engine(db: str | None):
    from emews_py.cli import UsageError, sql_engine
    try:
        return sql_engine(db or default_db(), write=False)
    except UsageError as e:
        raise DataError(str(e)) from None


def resolve_experiment(conn, experiment: int | str, where: str) -> tuple[int, str]:
    """(id, name) of ``experiment``: an int (or digits) is an id; other text is a name. A name
    that several experiments share means the latest of them (the highest id): rerunning a
    workflow with the same EXP and reading it by name gives the newest run. Text of digits that
    is also a name is taken as the name."""
    from sqlalchemy import select

    from emews_py.store import experiments
    e = experiments.c
    if isinstance(experiment, str) and not experiment.strip():
        raise DataError("the experiment is empty; give its id or its name (`emews status` "
                        "lists them)")
    row = None
    if isinstance(experiment, str):
        row = conn.execute(select(e.id, e.name).where(e.name == experiment)
                           .order_by(e.id.desc()).limit(1)).first()
    if row is None and (isinstance(experiment, int) or str(experiment).strip().isdigit()):
        row = conn.execute(select(e.id, e.name).where(e.id == int(experiment))).first()
    if row is None:
        raise DataError(f"the store {where} has no experiment {experiment!r} (neither an id nor "
                        f"a name there); `emews status --db URL` lists its experiments")
    return int(row[0]), row[1]


def _open(db: str | None, experiment):
    """(engine, id, name, space param ids) for a read; DataError for a missing store/experiment."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from emews_py.store import experiments
    from emews_py.store.engine import shown_url
    if isinstance(experiment, bool) or not isinstance(experiment, (int, str)):
        raise DataError(f"experiment must be an id (int) or a name (str), not "
                        f"{type(experiment).__name__} {experiment!r}")
    url = db or default_db()
    where = shown_url(url)
    eng = _engine(url)
    try:
        with eng.connect() as c:
            exp_id, name = resolve_experiment(c, experiment, where)
            space = c.execute(select(experiments.c.space_json)
                              .where(experiments.c.id == exp_id)).scalar()
    except SQLAlchemyError as e:
        eng.dispose()
        raise DataError(f"the store {where} cannot be read: "
                        f"{' '.join(str(getattr(e, 'orig', None) or e).split())}") from None
    except DataError:
        eng.dispose()
        raise
    order = [p["id"] for p in (space or {}).get("params", []) if isinstance(p, dict) and "id" in p]
    return eng, exp_id, name, order


def _expand(records: list, prefix: str, order: list[str] = ()):
    """A DataFrame of the dicts in ``records`` (None: an empty row), columns prefixed, known names
    first in ``order`` then the rest in first-seen order."""
    import pandas as pd
    seen: dict[str, None] = dict.fromkeys(order)
    for r in records:
        if isinstance(r, dict):
            seen.update(dict.fromkeys(r))
    cols = list(seen)
    frame = pd.DataFrame.from_records([r if isinstance(r, dict) else {} for r in records],
                                      columns=cols)
    # Only the names some record has: a space parameter no trial ever got stays out
    present = [c for c in cols if c not in order or any(isinstance(r, dict) and c in r
                                                        for r in records)]
    return frame[present].add_prefix(prefix)


def _utc(frame, cols):
    import pandas as pd
    for col in cols:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def trials(db: str | None, experiment: int | str):
    """The trials of ``experiment`` (id or name; a shared name: the latest) in store ``db`` (a
    SQLAlchemy URL; None: the default store) as a pandas DataFrame, one row per trial (see the
    module docstring for the columns). Raises DataError for an unknown store or experiment."""
    import pandas as pd
    from sqlalchemy import select

    from emews_py.store import trials as T
    eng, exp_id, name, order = _open(db, experiment)
    t = T.c
    try:
        with eng.connect() as c:
            rows = c.execute(select(t.id, t.experiment_id, t.status, t.objective, t.params,
                                    t.metrics, t.worker, t.host, t.attempts, t.submitted_at,
                                    t.started_at, t.finished_at, t.error)
                             .where(t.experiment_id == exp_id).order_by(t.id)).mappings().all()
    finally:
        eng.dispose()
    base = pd.DataFrame.from_records(
        [{"trial_id": r["id"], "experiment_id": r["experiment_id"], "status": r["status"],
          "objective": r["objective"]} for r in rows],
        columns=["trial_id", "experiment_id", "status", "objective"])
    base["objective"] = base["objective"].astype("float64")
    tail = pd.DataFrame.from_records(
        [{k: r[k] for k in ("worker", "host", "attempts", *TIME_COLUMNS, "error")} for r in rows],
        columns=["worker", "host", "attempts", *TIME_COLUMNS, "error"])
    _utc(tail, TIME_COLUMNS)
    secs = (tail["finished_at"] - tail["started_at"]).dt.total_seconds()
    tail.insert(tail.columns.get_loc("error"), "seconds", secs)
    for col in ("worker", "attempts"):   # integers with gaps (a queued trial has no worker)
        tail[col] = tail[col].astype("Int64")
    df = pd.concat([base, _expand([r["params"] for r in rows], PARAM, order),
                    _expand([r["metrics"] for r in rows], METRIC), tail], axis=1)
    df.attrs["experiment"] = {"id": exp_id, "name": name}
    return df


def events(db: str | None, experiment: int | str):
    """The Keras callback events of ``experiment``'s trials (id or name, as for ``trials``) as a
    pandas DataFrame, one row per event: ``event_id``, ``trial_id``, ``kind``, ``epoch``, ``at``
    and the logged values as ``metric_<name>`` columns. An experiment without events (the bench
    pilot has none) gives an empty DataFrame with the fixed columns."""
    import pandas as pd
    from sqlalchemy import select

    from emews_py.store import events as E
    from emews_py.store import trials as T
    eng, exp_id, name, _ = _open(db, experiment)
    ev = E.c
    try:
        with eng.connect() as c:
            rows = c.execute(select(ev.id, ev.trial_id, ev.kind, ev.epoch, ev.at, ev.metrics)
                             .join(T, T.c.id == ev.trial_id)
                             .where(T.c.experiment_id == exp_id)
                             .order_by(ev.id)).mappings().all()
    finally:
        eng.dispose()
    base = pd.DataFrame.from_records(
        [{"event_id": r["id"], "trial_id": r["trial_id"], "kind": r["kind"], "epoch": r["epoch"],
          "at": r["at"]} for r in rows], columns=["event_id", "trial_id", "kind", "epoch", "at"])
    base["epoch"] = base["epoch"].astype("Int64")   # train_begin/train_end have none
    _utc(base, ["at"])
    df = pd.concat([base, _expand([r["metrics"] for r in rows], METRIC)], axis=1)
    df.attrs["experiment"] = {"id": exp_id, "name": name}
    return df


def records(df) -> list[dict]:
    """The rows of a ``trials``/``events`` DataFrame as plain JSON-ready dicts (what
    ``emews trials --format json`` prints): missing values and NaN as None, times as ISO 8601
    UTC text ending in Z, +-inf as "Infinity"/"-Infinity", floats at full precision (pandas'
    to_json keeps 15 digits)."""
    import pandas as pd

    def plain(v):
        if v is None or v is pd.NaT or v is pd.NA:
            return None
        if isinstance(v, pd.Timestamp):
            return v.tz_convert("UTC").tz_localize(None).isoformat() + "Z"
        if hasattr(v, "item"):      # numpy scalars
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            # JSON has no infinity: a diverged loss is "Infinity", as in the EQ protocol
            return None if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
        return v
    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
