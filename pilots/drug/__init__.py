"""drug: tumor vs normal classification from expression profiles (like CANDLE NT3).

Default model as in NT3: 1-D convolution layers (``conv`` = filters, kernel, stride triples, each
followed by the activation and max-pooling from ``pool``), flatten, dense layers (``dense``, each
with activation and dropout), softmax output over ``classes``. ``run(params, ctx)`` returns the
validation cross-entropy as the objective, with accuracy, macro-F1 and AUC on the validation
samples as metrics. Data layout and default data sets: ``pilots/drug/data.py``, ``docs/pilots.md``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from emews_py.pilotkit.cache import data_cache_dir
from emews_py.pilotkit.context import PilotError
from emews_py.pilotkit.defaults import pilot_params
from emews_py.pilotkit.keras import (build_before_fit, callbacks_for, configure_threads, keras,
                                     log_import, make_optimizer, predict_np, start_classifier_trial)
from emews_py.pilotkit.metrics import cross_entropy, macro_f1, roc_auc
from emews_py.pilotkit.params import check_choice, parse_int_list, to_bool, to_float, to_int

from . import data as drug_data

PILOT = "drug"
configure_threads()
log_import(PILOT)

_RAW: dict = {}   # (train, test, mtimes) -> arrays as read; later trials in this process reuse them
_PREP: dict = {}  # (raw key, feature_subsample, scaling) -> preprocessed arrays


def resolve_files(p: dict) -> tuple[Path, Path]:
    d = str(p.get("data_dir") or os.environ.get("EMEWS_DRUG_DATA_DIR") or "")
    train, test = str(p["train_data"]), str(p["test_data"])
    if d or (os.path.isabs(train) and os.path.isabs(test)):
        base = Path(d).expanduser() if d else Path("/")
        if d and not base.is_dir():
            raise PilotError(f"pilot drug: data_dir {base} does not exist or is not a directory; it "
                             f"must hold the NT3 files {train} and {test}.")
        return base / train, base / test
    root = drug_data.default_data_dir(str(p["data_set"]), data_cache_dir(PILOT))
    f_tr, f_te = drug_data.file_names(str(p["data_set"]))
    return root / f_tr, root / f_te


def get_data(train: Path, test: Path, n_keep: int, scaling: str) -> dict:
    def mtime(f: Path):
        return f.stat().st_mtime if f.exists() else None
    raw_key = (str(train.resolve()), str(test.resolve()), mtime(train), mtime(test))
    if raw_key not in _RAW:
        _RAW[raw_key] = drug_data.load_nt3(train, test)
    key = (raw_key, n_keep, scaling)
    if key not in _PREP:
        _PREP[key] = preprocess(_RAW[raw_key], n_keep, scaling)
    return _PREP[key]


def preprocess(d: dict, n_keep: int, scaling: str) -> dict:
    """Top-variance feature selection and scaling, both fitted on the training samples only."""
    x_tr, x_te = d["x_train"], d["x_test"]
    n_features = x_tr.shape[1]
    if 0 < n_keep < n_features:
        keep = np.sort(np.argsort(x_tr.var(axis=0))[::-1][:n_keep])
        x_tr, x_te = x_tr[:, keep], x_te[:, keep]
    if scaling == "std":
        mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
        sd[sd == 0] = 1.0
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    elif scaling == "maxabs":  # NT3's MaxAbsScaler
        m = np.abs(x_tr).max(axis=0)
        m[m == 0] = 1.0
        x_tr, x_te = x_tr / m, x_te / m
    elif scaling != "none":
        raise PilotError(f"pilot drug: scaling must be 'std', 'maxabs' or 'none', got {scaling!r}")
    return {"x_train": x_tr.astype(np.float32), "y_train": d["y_train"],
            "x_test": x_te.astype(np.float32), "y_test": d["y_test"], "n_features_file": n_features}


def build_model(n_features: int, p: dict, conv: list[int], pool: list[int], dense: list[int],
                classes: int):
    act = p["activation"]
    dropout = to_float(p["dropout"], "dropout", 0.0, 0.99)
    model = keras.Sequential(name="drug_nt3")
    model.add(keras.Input(shape=(n_features, 1)))
    length = n_features
    for i in range(0, len(conv), 3):
        filters, kernel, stride = conv[i:i + 3]
        if filters <= 0:
            continue
        if kernel < 1 or stride < 1:
            raise PilotError(f"pilot drug: conv layer {i // 3} has kernel {kernel}, stride {stride}; "
                             f"both must be >= 1.")
        if kernel > length:
            raise PilotError(f"pilot drug: conv layer {i // 3} has kernel length {kernel} but its "
                             f"input has only {length} positions; use smaller kernels or pooling, "
                             f"or more features (feature_subsample).")
        model.add(keras.layers.Conv1D(filters, kernel, strides=stride, padding="valid"))
        model.add(keras.layers.Activation(act))
        length = (length - kernel) // stride + 1
        ps = pool[i // 3] if i // 3 < len(pool) else 1
        if ps and ps > 1 and ps <= length:
            model.add(keras.layers.MaxPooling1D(pool_size=ps))
            length //= ps
    model.add(keras.layers.Flatten())
    for n in dense:
        if n > 0:
            model.add(keras.layers.Dense(n))
            model.add(keras.layers.Activation(act))
            if dropout > 0:
                model.add(keras.layers.Dropout(dropout))
    model.add(keras.layers.Dense(classes))
    model.add(keras.layers.Activation(p["out_activation"]))
    return model


def run(params: dict, ctx) -> dict:
    p = pilot_params(__file__, params)
    t_start = time.time()
    start_classifier_trial(p, ctx, PILOT)
    conv = parse_int_list(p["conv"], "conv", allow_empty=True)
    if len(conv) % 3:
        raise PilotError(f"pilot drug: conv must hold (filters, kernel, stride) triples, got {conv}")
    pool = parse_int_list(p["pool"], "pool", allow_empty=True) if p["pool"] not in (None, "", False) \
        else []
    dense = parse_int_list(p["dense"], "dense", allow_empty=True)
    classes = to_int(p["classes"], "classes", 2)
    batch_size = to_int(p["batch_size"], "batch_size", 1)
    epochs = to_int(p["epochs"], "epochs", 1)
    seed = to_int(p["seed"], "seed")
    restore_best = to_bool(p["restore_best_weights"], "restore_best_weights")

    train_f, test_f = resolve_files(p)
    d = get_data(train_f, test_f, to_int(p["feature_subsample"], "feature_subsample", 0),
                 check_choice(p["scaling"], "scaling", ("std", "maxabs", "none"), PILOT))
    t_data = time.time() - t_start
    for part, f in (("train", train_f), ("test", test_f)):
        if d[f"y_{part}"].max() >= classes:
            raise PilotError(f"pilot drug: data file {f} has class label {int(d[f'y_{part}'].max())} "
                             f"but classes = {classes}; labels must be 0 .. classes-1.")
    x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    max_samples = to_int(p["max_samples"], "max_samples", 0)
    if 0 < max_samples < len(x_tr):
        idx = np.sort(np.random.default_rng(seed).choice(len(x_tr), max_samples, replace=False))
        x_tr, y_tr = x_tr[idx], y_tr[idx]

    sparse = str(p["loss"]).startswith("sparse")
    enc = (lambda y: y) if sparse else (lambda y: np.eye(classes, dtype=np.float32)[y])
    keras.utils.set_random_seed(seed)
    model = build_model(x_tr.shape[1], p, conv, pool, dense, classes)
    metrics = [m for m in str(p["metrics"]).replace(",", " ").split() if m]
    model.compile(optimizer=make_optimizer(p["optimizer"], p["learning_rate"], PILOT),
                  loss=str(p["loss"]), metrics=metrics)
    build_before_fit(model, x_tr[..., None], enc(y_tr))   # one trace of the training step, not two
    model.fit(x_tr[..., None], enc(y_tr), validation_data=(x_te[..., None], enc(y_te)),
              batch_size=batch_size, epochs=epochs, verbose=to_int(p["verbose"], "verbose"),
              callbacks=callbacks_for(ctx, params=p, restore_best=restore_best), shuffle=True)
    val = model.evaluate(x_te[..., None], enc(y_te), verbose=0, return_dict=True)
    prob = np.asarray(predict_np(model, x_te[..., None]))
    objective = cross_entropy(y_te, prob)
    if not np.isfinite(objective):
        raise PilotError(f"pilot drug: training diverged (validation loss {objective}); try a smaller "
                         f"learning_rate.")
    out = {"val_loss": float(val["loss"]), "val_accuracy": float((prob.argmax(1) == y_te).mean()),
           "val_macro_f1": macro_f1(y_te, prob.argmax(1), classes),
           "n_features_file": int(d["n_features_file"]), "n_features_used": int(x_tr.shape[1]),
           "n_train": int(len(x_tr)), "n_test": int(len(x_te)),
           "data_seconds": float(t_data), "seconds": time.time() - t_start}
    if classes == 2:
        out["val_auc"] = roc_auc(y_te, prob[:, 1])
    path = ctx.model_path(".keras")
    model.save(path)
    # Objective: validation cross-entropy of the final model; it equals Keras' val_loss under the
    # default loss and stays comparable across trials that train with another loss.
    return {"objective": objective, "metrics": out, "model_path": str(path)}
