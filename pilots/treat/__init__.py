"""treat: a multi-task DNN that classifies the same documents for several tasks (like CANDLE P3B1).

One (or more) shared dense layer(s), then for each task its own dense layer(s) and a softmax
output. ``run(params, ctx)`` trains it for ``n_fold`` folds and returns the mean validation loss
as the objective, with per-task accuracy and macro-F1 on the validation documents as metrics.
Data layout and the default data set: ``pilots/treat/data.py`` and ``docs/pilots.md``.
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
from emews_py.pilotkit.metrics import cross_entropy, macro_f1
from emews_py.pilotkit.params import parse_int_list, to_bool, to_float, to_int

from . import data as treat_data

PILOT = "treat"
configure_threads()
log_import(PILOT)

_FOLDS: dict = {}  # (data_dir, fold, mtime) -> loaded fold; later trials in this process reuse it


def resolve_data_dir(p: dict) -> Path:
    d = str(p.get("data_dir") or os.environ.get("EMEWS_TREAT_DATA_DIR") or "")
    if d:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise PilotError(f"pilot treat: data_dir {path} does not exist or is not a directory; "
                             f"it must hold CANDLE P3B1 files task{{t}}_{{fold}}_{{train|test}}_"
                             f"{{feature|label}}.csv.")
        return path
    return treat_data.default_data_dir(data_cache_dir(PILOT))


def get_fold(data_dir: Path, fold: int) -> list[dict]:
    f0 = data_dir / f"task0_{fold}_train_feature.csv"
    key = (str(data_dir.resolve()), fold, f0.stat().st_mtime if f0.exists() else None)
    if key not in _FOLDS:
        _FOLDS[key] = treat_data.load_fold(data_dir, fold)
    return _FOLDS[key]


def _ind_spec(value, n_tasks: int) -> list[list[int]]:
    """P3B1's ind_nnet_spec: a list per task; a single spec applies to every task."""
    if isinstance(value, str):
        parts = [s for s in value.split(":")]
        specs = [parse_int_list(s, "ind_nnet_spec") for s in parts]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        specs = [parse_int_list(v, "ind_nnet_spec") for v in value]
    else:
        specs = [parse_int_list(value, "ind_nnet_spec")]
    if len(specs) == 1:
        specs = specs * n_tasks
    if len(specs) != n_tasks:
        raise PilotError(f"pilot treat: ind_nnet_spec gives layers for {len(specs)} tasks but the data "
                         f"has {n_tasks}; give one list per task, or a single list for all.")
    return specs


def build_model(n_features: int, n_classes: list[int], p: dict, shared: list[int],
                ind: list[list[int]]):
    act, dropout = p["activation"], to_float(p["dropout"], "dropout", 0.0, 0.99)
    inp = keras.Input(shape=(n_features,), name="input")
    h = inp
    for k, n in enumerate(shared):
        h = keras.layers.Dense(n, activation=act, name=f"shared_layer_{k}")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, name=f"shared_dropout_{k}")(h)
    outputs = {}
    for t, spec in enumerate(ind):
        g = h
        for k, n in enumerate(spec):
            g = keras.layers.Dense(n, activation=act, name=f"indiv_layer_{t}_{k}")(g)
            if dropout > 0:
                g = keras.layers.Dropout(dropout, name=f"indiv_dropout_{t}_{k}")(g)
        outputs[f"out_{t}"] = keras.layers.Dense(n_classes[t], activation=p["out_activation"],
                                                 name=f"out_{t}")(g)
    return keras.Model(inputs=inp, outputs=outputs, name="treat_mtl")


def _stack_tasks(tasks: list[dict], part: str, n_classes: list[int], sparse: bool):
    """One input matrix for all tasks, labels per output, and weights masking other tasks' rows.

    When every task has the same documents (the default data) the rows are shared and all weights
    are 1; otherwise (P3B1, where each task has its own documents) rows are concatenated and each
    output only learns from its own task's rows.
    """
    xs = [t[f"x_{part}"] for t in tasks]
    same = all(x.shape == xs[0].shape and np.array_equal(x, xs[0]) for x in xs[1:])
    if same:
        x = xs[0]
        rows = [np.arange(len(x))] * len(tasks)
    else:
        x = np.concatenate(xs)
        starts = np.cumsum([0] + [len(a) for a in xs])
        rows = [np.arange(starts[i], starts[i + 1]) for i in range(len(xs))]
    y, w = {}, {}
    for i, t in enumerate(tasks):
        lab = np.zeros(len(x), dtype=np.int64)
        lab[rows[i]] = t[f"y_{part}"]
        wt = np.zeros(len(x), dtype=np.float32)
        wt[rows[i]] = 1.0
        y[f"out_{i}"] = lab if sparse else np.eye(n_classes[i], dtype=np.float32)[lab]
        w[f"out_{i}"] = wt
    return x, y, w, rows


def _subsample(tasks: list[dict], max_samples: int, seed: int) -> list[dict]:
    if max_samples <= 0:
        return tasks
    rng = np.random.default_rng(seed)
    idx_cache = {}
    out = []
    for t in tasks:
        n = len(t["x_train"])
        if n > max_samples:
            if n not in idx_cache:
                idx_cache[n] = np.sort(rng.choice(n, max_samples, replace=False))
            idx = idx_cache[n]
            t = {**t, "x_train": t["x_train"][idx], "y_train": t["y_train"][idx]}
        out.append(t)
    return out


def train_fold(tasks: list[dict], p: dict, ctx, fold: int, shared, ind_raw, task_names):
    n_tasks = len(tasks)
    n_classes = [int(max(t["y_train"].max(), t["y_test"].max())) + 1 for t in tasks]
    ind = _ind_spec(ind_raw, n_tasks)
    loss = str(p["loss"])
    sparse = loss.startswith("sparse")
    x_tr, y_tr, w_tr, _ = _stack_tasks(tasks, "train", n_classes, sparse)
    x_te, y_te, w_te, rows_te = _stack_tasks(tasks, "test", n_classes, sparse)

    keras.utils.set_random_seed(to_int(p["seed"], "seed") + fold)
    model = build_model(x_tr.shape[1], n_classes, p, shared, ind)
    model.compile(optimizer=make_optimizer(p["optimizer"], p["learning_rate"], PILOT),
                  loss={k: loss for k in y_tr},
                  metrics={k: ["accuracy"] for k in y_tr})
    # epochs are numbered on across folds (fold 1 starts at `epochs`), so each epoch_end of a
    # trial has its own epoch number; the fold is in the event's metrics.
    epochs = to_int(p["epochs"], "epochs", 1)
    cbs = callbacks_for(ctx, params=_loggable(p), fold=fold,
                        restore_best=to_bool(p["restore_best_weights"], "restore_best_weights"))
    cbs[-1].epoch_offset = fold * epochs
    build_before_fit(model, x_tr, y_tr, w_tr)   # one trace of the training step, not two
    model.fit(x_tr, y_tr, sample_weight=w_tr, validation_data=(x_te, y_te, w_te),
              batch_size=to_int(p["batch_size"], "batch_size", 1),
              epochs=epochs, verbose=to_int(p["verbose"], "verbose"),
              callbacks=cbs, shuffle=True)
    val = model.evaluate(x_te, y_te, sample_weight=w_te, verbose=0, return_dict=True)
    pred = predict_np(model, x_te)
    metrics, ce = {}, []
    for i in range(n_tasks):
        r = rows_te[i]
        truth = tasks[i]["y_test"]
        prob = np.asarray(pred[f"out_{i}"])[r]
        name = task_names[i]
        metrics[f"{name}_accuracy"] = float((prob.argmax(1) == truth).mean())
        metrics[f"{name}_macro_f1"] = macro_f1(truth, prob.argmax(1), n_classes[i])
        metrics[f"{name}_val_crossentropy"] = cross_entropy(truth, prob)
        ce.append(metrics[f"{name}_val_crossentropy"])
    metrics["val_loss"] = float(val["loss"])
    # Objective: the summed per-task validation cross-entropy; equal to Keras' val_loss under the
    # default loss (categorical_crossentropy), and comparable across trials whatever loss trained.
    objective = float(np.sum(ce))
    return model, objective, metrics


def _loggable(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in ("verbose",)}


def run(params: dict, ctx) -> dict:
    p = pilot_params(__file__, params)
    t_start = time.time()
    start_classifier_trial(p, ctx, PILOT)
    shared = parse_int_list(p["shared_nnet_spec"], "shared_nnet_spec")
    n_fold = to_int(p["n_fold"], "n_fold", 1)
    max_samples = to_int(p["max_samples"], "max_samples", 0)

    data_dir = resolve_data_dir(p)
    t_data = time.time()
    fold_results = []
    best = None
    for fold in range(n_fold):
        if not (data_dir / f"task0_{fold}_train_feature.csv").exists() and fold > 0:
            raise PilotError(f"pilot treat: n_fold = {n_fold} but {data_dir} has no fold {fold} "
                             f"(task0_{fold}_train_feature.csv); lower n_fold.")
        tasks = _subsample(get_fold(data_dir, fold), max_samples, to_int(p["seed"], "seed"))
        names = treat_data.task_names(data_dir, len(tasks))
        if names[0] == "task0" and isinstance(p.get("feature_names"), (list, tuple)) \
                and len(p["feature_names"]) == len(tasks):
            names = [str(s).replace(" ", "_") for s in p["feature_names"]]
        if fold == 0:
            t_data = time.time() - t_data
        model, obj, metrics = train_fold(tasks, p, ctx, fold, shared, p["ind_nnet_spec"], names)
        fold_results.append((obj, metrics))
        if best is None or obj < best[0]:
            best = (obj, model)
        if ctx.timed_out:
            break

    objective = float(np.mean([o for o, _ in fold_results]))
    metrics = {}
    for key in fold_results[0][1]:
        metrics[key] = float(np.mean([m[key] for _, m in fold_results]))
    metrics["folds_trained"] = len(fold_results)
    metrics["data_seconds"] = float(t_data)
    metrics["seconds"] = time.time() - t_start
    if not np.isfinite(objective):
        raise PilotError(f"pilot treat: training diverged (validation loss {objective}); try a smaller "
                         f"learning_rate.")
    path = ctx.model_path(".keras")
    best[1].save(path)
    return {"objective": objective, "metrics": metrics, "model_path": str(path)}
