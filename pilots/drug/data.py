"""Data for the drug pilot: CANDLE NT3's CSV layout, and real tumor/normal expression to fill it.

NT3 layout (what CANDLE's NT3 benchmark reads, ``nt_train2.csv`` / ``nt_test2.csv``; this loader
reads the user's real files too): comma-separated, no header, one sample per row, the class label
(an integer from 0) in column 0 and the expression features after it. The number of features is
read from the file (NT3's own files have 60,483).

Default data sets (Debian packages of Bioconductor experiment data, exported with Rscript):

* ``bladderbatch`` (``r-bioc-bladderbatch``, ExpressionSet ``bladderEset``): 57 bladder samples
  by 22,283 Affymetrix HG-U133A probes (RMA, log2), Dyrskjot et al., Cancer Research 2004.
  Label 1 = cancer (``pData(bladderEset)$cancer == "Cancer"``, 40 samples), 0 = not cancer
  ("Normal", 8, and "Biopsy", 9).
* ``all`` (``r-bioc-all``, ExpressionSet ``ALL``): 128 acute lymphoblastic leukemia samples by
  12,625 HG-U95Av2 probes, Chiaretti et al., Blood 2004. Label 0 = B-cell (``ALL$BT`` B, B1..B4,
  95 samples), 1 = T-cell (T, T1..T4, 33). This is not tumor vs normal but a larger real
  two-class expression set.

Each is split once, stratified, 80 % / 20 % (seed 2016), into ``{set}_train.csv`` and
``{set}_test.csv`` in the data cache.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from emews_py.pilotkit.cache import prepare_once
from emews_py.pilotkit.context import PilotError

DATA_VERSION = 1
SEED = 2016
TEST_FRACTION = 0.2

DATA_SETS = {
    "bladderbatch": {
        "debian": "r-bioc-bladderbatch",
        "classes": ["not cancer (Normal, Biopsy)", "cancer"],
        "source": "Bioconductor bladderbatch (Debian r-bioc-bladderbatch), bladderEset: "
                  "Dyrskjot et al. 2004, HG-U133A, RMA log2",
    },
    "all": {
        "debian": "r-bioc-all",
        "classes": ["B-cell ALL", "T-cell ALL"],
        "source": "Bioconductor ALL (Debian r-bioc-all), ALL: Chiaretti et al. 2004, HG-U95Av2, "
                  "RMA log2",
    },
}

EXPORT_R = Path(__file__).with_name("export_expression.R")
BUILD_COUNT = 0  # how many times this process built a default data set (tests check reuse)


def file_names(data_set: str) -> tuple[str, str]:
    return f"{data_set}_train.csv", f"{data_set}_test.csv"


def build_default(data_set: str, dest: Path) -> None:
    """Export ``data_set`` from its Bioconductor package with Rscript and split it into ``dest``."""
    from emews_py.rbridge import RError, rscript
    spec = DATA_SETS[data_set]
    dest.mkdir(parents=True, exist_ok=True)
    full, probes, samples = dest / "full.csv", dest / "probes.txt", dest / "samples.txt"
    try:
        rscript(EXPORT_R, data_set, str(full), str(probes), str(samples), timeout=600)
    except RError as e:
        raise PilotError(f"pilot drug: exporting data set '{data_set}' with {EXPORT_R} failed (is "
                         f"the Debian package {spec['debian']} installed, with r-bioc-biobase? "
                         f"`make setup` installs them; or set data_dir to CANDLE NT3 files):\n"
                         f"{str(e)[-800:]}") from None
    a = load_nt3_file(full)
    y, x = a[:, 0].astype(int), a[:, 1:]
    from sklearn.model_selection import train_test_split
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y,
                                      random_state=SEED)
    f_tr, f_te = file_names(data_set)
    for name, idx in ((f_tr, idx_tr), (f_te, idx_te)):
        np.savetxt(dest / name, np.column_stack([y[idx], x[idx]]), delimiter=",",
                   fmt=["%d"] + ["%.5g"] * x.shape[1])
    sample_names = samples.read_text().split()
    (dest / "samples_test.txt").write_text("\n".join(sample_names[i] for i in idx_te) + "\n")
    full.unlink()
    samples.unlink()
    info = {"version": DATA_VERSION, "data_set": data_set, "source": spec["source"],
            "samples": int(len(y)), "features": int(x.shape[1]), "train": int(len(idx_tr)),
            "test": int(len(idx_te)), "classes": spec["classes"],
            "counts": np.bincount(y).tolist(), "seed": SEED,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (dest / "info.json").write_text(json.dumps(info, indent=2))


def _is_ready(dest: Path) -> bool:
    try:
        return json.loads((dest / "info.json").read_text()).get("version") == DATA_VERSION
    except (OSError, ValueError):
        return False


def default_data_dir(data_set: str, cache_root: Path) -> Path:
    """The NT3-layout directory of a default data set, built on first use (once per machine)."""
    global BUILD_COUNT
    if data_set not in DATA_SETS:
        raise PilotError(f"pilot drug: unknown data_set {data_set!r}; the default data sets are "
                         f"{', '.join(DATA_SETS)} (or set data_dir to CANDLE NT3 files).")
    dest = cache_root / f"{data_set}_nt3"
    if prepare_once(dest, lambda tmp: build_default(data_set, tmp), _is_ready):
        BUILD_COUNT += 1
    return dest


def load_nt3_file(path: Path) -> np.ndarray:
    """One NT3 CSV as a float32 array (label in column 0); a clear error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise PilotError(f"pilot drug: data file {path} is missing. NT3 data is a CSV without header, "
                         f"label in column 0; check data_dir/train_data/test_data, or delete "
                         f"{path.parent} if it is the default data cache, to rebuild it.")
    import pandas as pd
    try:
        a = pd.read_csv(path, header=None, dtype=np.float32, engine="c").to_numpy()
    except Exception as e:
        raise PilotError(f"pilot drug: data file {path} is corrupt: cannot read it as comma-separated "
                         f"numbers without header ({type(e).__name__}: {str(e)[:200]}).") from None
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise PilotError(f"pilot drug: data file {path} is corrupt: expected rows of label,feature,... "
                         f"with at least one feature, got shape {a.shape}.")
    if np.isnan(a).any():
        raise PilotError(f"pilot drug: data file {path} is corrupt: it has missing values "
                         f"(rows of unequal length, or empty fields).")
    y = a[:, 0]
    if (y < 0).any() or (y != np.round(y)).any():
        raise PilotError(f"pilot drug: data file {path} is corrupt: column 0 must hold integer class "
                         f"labels >= 0.")
    return a


def load_nt3(train: Path, test: Path) -> dict:
    """NT3 train/test files -> x_train, y_train, x_test, y_test; the feature count is the file's."""
    a, b = load_nt3_file(train), load_nt3_file(test)
    if a.shape[1] != b.shape[1]:
        raise PilotError(f"pilot drug: data files {train} ({a.shape[1] - 1} features) and {test} "
                         f"({b.shape[1] - 1} features) disagree; both need the same columns.")
    return {"x_train": a[:, 1:], "y_train": a[:, 0].astype(np.int64),
            "x_test": b[:, 1:], "y_test": b[:, 0].astype(np.int64)}
