"""A store as release 0.1.0 made it, written by that release's own code.

``store_v0_1_0.py`` is ``emews_py/store.py`` of release 0.1.0, unchanged
(``git show 13e74a5:emews_py/store.py``). ``fill(url)`` uses its ``init_db`` and ``Writer`` the way
0.1.0's driver did. tests/test_store.py upgrades such stores: the committed file
``emews-0.1.0.db`` (made once by running this file) and, on PostgreSQL, one made on the spot.

    .venv/bin/python tests/data/release_0_1_0.py    # rewrites tests/data/emews-0.1.0.db
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DB_FILE = HERE / "emews-0.1.0.db"
T0 = 1_790_000_000.0  # fixed times, so the file is the same each time it is made


def release_store():
    spec = importlib.util.spec_from_file_location("emews_store_v0_1_0", HERE / "store_v0_1_0.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fill(url: str) -> None:
    st = release_store()
    eng = st.init_db(url)
    w = st.Writer(eng)
    e1 = w.create_experiment(name="treat-mlrMBO", pilot="treat", algorithm="mlrMBO",
                             space='makeParamSet(makeNumericParam("lr", lower = 0.001, upper = 0.1))',
                             space_json={"source": "space.R", "params": [
                                 {"id": "lr", "type": "numeric", "lower": 0.001, "upper": 0.1}]},
                             settings={"max.budget": 6, "workers": 2, "seed": 7, "impute": math.nan},
                             run_dir="/runs/treat-mlrMBO-1", mode="resident", workers=2,
                             started_at=st.ts(T0))
    ids = w.add_trials(e1, [{"lr": 0.01 * (i + 1), "activation": ["relu", "tanh"][i % 2]}
                            for i in range(6)], submitted=T0 + 1)
    done = [("completed", 0.5, None), ("completed", 0.25, None), ("failed", None, "Traceback ...\n"
            "ValueError: bad lr"), ("timeout", 0.9, "trial time limit 60 s passed"),
            ("cancelled", None, "the optimizer finished before this trial was needed")]
    for k, (tid, (status, obj, err)) in enumerate(zip(ids, done)):
        w.trial_changed({"id": tid, "status": status, "objective": obj, "worker": 1 + k % 2,
                         "host": "node01", "started_at": T0 + 2 + k, "finished_at": T0 + 3 + k,
                         "metrics": None if obj is None else {"val_loss": obj, "acc": math.nan},
                         "error": err})
    w.add_events([{"trial_id": ids[0], "kind": "train_begin", "metrics": {"lr": 0.01}, "at": T0 + 2},
                  {"trial_id": ids[0], "kind": "epoch_end", "epoch": 0,
                   "metrics": {"loss": 1.5, "val_loss": math.inf}, "at": T0 + 2.5},
                  {"trial_id": ids[0], "kind": "epoch_end", "epoch": 1,
                   "metrics": {"loss": 0.7, "val_loss": 0.5}, "at": T0 + 2.8},
                  {"trial_id": ids[0], "kind": "train_end", "metrics": {"epochs_run": 2}, "at": T0 + 3}])
    w.add_model(ids[0], "/runs/treat-mlrMBO-1/models/trial_1.keras", 0.5)
    w.add_model(ids[1], "/runs/treat-mlrMBO-1/models/trial_2.keras", 0.25)
    w.flush()
    w.update_experiment(e1, status="completed", finished_at=st.ts(T0 + 20),
                        final_message='{"best.y": 0.25}')
    # A second experiment, killed from outside: still "running", one trial running, one queued.
    e2 = w.create_experiment(name="bench-random", pilot="bench", algorithm="random",
                             space="{}", settings={"max.budget": 2}, mode="app", workers=1,
                             started_at=st.ts(T0 + 30))
    a, _ = w.add_trials(e2, [{"x1": 1.0, "x2": 2.0}, {"x1": -3.0, "x2": 14.5}], submitted=T0 + 31)
    w.trial_changed({"id": a, "status": "running", "worker": 1, "host": "node02",
                     "started_at": T0 + 32})
    w.flush()
    eng.dispose()


if __name__ == "__main__":
    if DB_FILE.exists():
        DB_FILE.unlink()
    fill(f"sqlite:///{DB_FILE}")
    import sqlite3
    con = sqlite3.connect(DB_FILE)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    con.execute("VACUUM")
    con.close()
    print(f"wrote {DB_FILE} ({DB_FILE.stat().st_size} bytes; tables {tables})", file=sys.stderr)
