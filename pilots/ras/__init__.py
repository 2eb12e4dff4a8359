"""ras: a stacked autoencoder of molecules in coarse-grained membrane simulations (like CANDLE P2B1).

Each sample is one lipid with its ``molecular_nbrs`` nearest neighbour lipids in one frame of a
Martini trajectory: a 2-D array of (molecules x 12 beads) rows by 20 bead features (positions
relative to the lipid's centre, lipid type and bead location one-hots, bond lengths). The model is
P2B1's ``conv_dense_mol_auto``: optional 1-D convolutions (one per bead, then one per molecule),
a dense encoder (``dense``, the last size is the latent code), a mirrored dense decoder and a
linear output of the input's shape. The objective is the validation reconstruction loss (MSE) of
the saved model. Data layout and sources: ``pilots/ras/data.py`` and ``docs/pilots.md``.
"""
from __future__ import annotations

import math
import os
import sys
import time

from emews_py.pilotkit.context import PilotError
from emews_py.pilotkit.defaults import pilot_params
from emews_py.pilotkit.keras import (build_before_fit, callbacks_for, check_keras_name, configure_threads,
                                     keras, log_import, make_optimizer)
from emews_py.pilotkit.params import check_choice, parse_int_list, to_bool, to_float, to_int

from . import data as ras_data

PILOT = "ras"
configure_threads()
log_import(PILOT)

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")
LOSSES = ("mse", "mae", "huber")


# ----------------------------------------------------------------------------- parameters

def to_int_list(v, name: str) -> list[int]:
    """Layer sizes from a list, an int, or a string ('256,64,16', '256 64 16', '[256, 64]');
    '' or '0' or [] means no layers (search spaces give discrete choices of lists as strings)."""
    return parse_int_list(v, name, allow_empty=True, drop_zeros=True)


def resolve_params(params: dict) -> dict:
    """Defaults from ``ras_default_model.txt``, overridden by ``params``, checked and typed."""
    p = pilot_params(__file__, params)  # an unknown name raises UnknownParameterError naming it
    q = dict(p)
    q["data_dir"] = str(p["data_dir"] or os.environ.get("EMEWS_RAS_DATA_DIR", "") or "")
    q["data_set"] = str(p["data_set"])
    q["molecular_nbrs"] = to_int(p["molecular_nbrs"], "molecular_nbrs", 0, ras_data.MAX_NBRS)
    q["type_bool"] = to_bool(p["type_bool"], "type_bool")
    q["conv_bool"] = to_bool(p["conv_bool"], "conv_bool")
    q["conv_features"] = to_int_list(p["conv_features"], "conv_features")
    q["dense"] = to_int_list(p["dense"], "dense")
    if not q["dense"]:
        raise PilotError(f"pilot '{PILOT}': parameter 'dense' is {p['dense']!r}; it must hold at "
                         f"least one layer size (the last is the latent code).")
    q["batch_size"] = to_int(p["batch_size"], "batch_size", 1)
    q["epochs"] = to_int(p["epochs"], "epochs", 1)
    q["learning_rate"] = to_float(p["learning_rate"], "learning_rate", 0.0)
    q["dropout"] = to_float(p["dropout"], "dropout", 0.0, 0.95)
    q["noise_factor"] = to_float(p["noise_factor"], "noise_factor", 0.0, 0.95)
    q["l2_reg"] = to_float(p["l2_reg"], "l2_reg", 0.0)
    q["batch_norm"] = to_bool(p["batch_norm"], "batch_norm")
    q["validation_split"] = to_float(p["validation_split"], "validation_split", 0.01, 0.9)
    q["max_samples"] = to_int(p["max_samples"], "max_samples", 0)
    q["rng_seed"] = to_int(p["rng_seed"], "rng_seed", 0)
    q["restore_best_weights"] = to_bool(p["restore_best_weights"], "restore_best_weights")
    q["verbose"] = to_int(p["verbose"], "verbose", 0, 2)
    q["optimizer"] = check_choice(p["optimizer"], "optimizer", OPTIMIZERS, PILOT)
    q["loss"] = check_choice(p["loss"], "loss", LOSSES, PILOT)
    q["activation"] = check_keras_name(p["activation"], "activation", PILOT, "activation")
    return q


# ----------------------------------------------------------------------------- model

def build_model(input_shape: tuple[int, int], p: dict):
    """P2B1's conv_dense_mol_auto in Keras 3: returns (autoencoder, encoder)."""
    rows, nf = input_shape
    n_beads = rows // (p["molecular_nbrs"] + 1)  # 12 for Martini lipids and P2B1 files
    act = p["activation"]
    reg = keras.regularizers.L2(p["l2_reg"]) if p["l2_reg"] > 0 else None
    dense_kw = dict(activation=act, kernel_regularizer=reg, kernel_initializer="glorot_normal")

    def post(h, name, drop=True):
        if p["batch_norm"]:
            h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
        if drop and p["dropout"] > 0:
            h = keras.layers.Dropout(p["dropout"], name=f"{name}_drop")(h)
        return h

    inp = keras.Input(shape=(rows, nf), name="molecules")
    h = inp
    if p["noise_factor"] > 0:  # denoising AE: mask inputs at random, in training only
        h = keras.layers.Dropout(p["noise_factor"], name="input_noise")(h)
    if p["conv_bool"] and p["conv_features"]:
        for i, filters in enumerate(p["conv_features"]):
            if i == 1:  # one window per molecule (P2B1: kernel = stride = beads per molecule)
                k, s = n_beads, n_beads
            else:      # i == 0: one bead at a time (P2B1: kernel = stride = bead features)
                k, s = 1, 1
            h = keras.layers.Conv1D(filters, k, strides=s, name=f"conv_{i}", **dense_kw)(h)
            h = post(h, f"conv_{i}")
    h = keras.layers.Flatten(name="flatten")(h)
    dense = p["dense"]
    for i, units in enumerate(dense):
        last = i == len(dense) - 1
        h = keras.layers.Dense(units, name="latent" if last else f"enc_{i}", **dense_kw)(h)
        h = post(h, "latent" if last else f"enc_{i}", drop=not last)
    encoded = h
    for i, units in reversed(list(enumerate(dense[:-1]))):
        h = keras.layers.Dense(units, name=f"dec_{i}", **dense_kw)(h)
        h = post(h, f"dec_{i}")
    h = keras.layers.Dense(rows * nf, name="reconstruction", kernel_regularizer=reg)(h)
    out = keras.layers.Reshape((rows, nf), name="molecules_out")(h)
    return (keras.Model(inp, out, name="ras_autoencoder"),
            keras.Model(inp, encoded, name="ras_encoder"))


# ----------------------------------------------------------------------------- trial

def run(params: dict, ctx) -> dict:
    """Train one autoencoder; the objective is its validation reconstruction MSE."""
    t0 = time.time()
    p = resolve_params(params)
    x_tr, x_va, info = ras_data.load_data(p)
    t_data = time.time() - t0
    ctx.check_deadline()

    keras.backend.clear_session()  # a resident worker must not pile up graphs across trials
    keras.utils.set_random_seed(p["rng_seed"])
    model, _ = build_model(x_tr.shape[1:], p)
    model.compile(optimizer=make_optimizer(p["optimizer"], p["learning_rate"], PILOT), loss=p["loss"], metrics=["mse"])
    build_before_fit(model, x_tr, x_tr)   # one trace of the training step, not two
    cbs = callbacks_for(ctx, params=dict(params), restore_best=p["restore_best_weights"])
    hist = model.fit(x_tr, x_tr, validation_data=(x_va, x_va), epochs=p["epochs"],
                     batch_size=p["batch_size"], shuffle=True, verbose=p["verbose"],
                     callbacks=cbs)
    val_loss, val_mse = (float(v) for v in model.evaluate(x_va, x_va, batch_size=256, verbose=0))
    if not math.isfinite(val_mse):
        raise PilotError(f"pilot '{PILOT}': training diverged (validation MSE {val_mse}) with "
                         f"learning_rate={p['learning_rate']}, optimizer={p['optimizer']}; "
                         f"lower the learning rate.")
    path = ctx.model_path()
    model.save(path)
    epochs_run = len(hist.history.get("loss", []))
    kept = cbs[-1].best_weights   # restore_best_weights: the BestWeights that put an epoch back
    at = kept.restored if kept is not None and kept.restored is not None else -1
    metrics = {"val_mse": val_mse, "val_loss": val_loss,
               "train_loss": float(hist.history["loss"][at]) if epochs_run else None,
               "epochs_run": epochs_run, "n_params": int(model.count_params()),
               "latent_dim": p["dense"][-1], "train_samples": info["train_samples"],
               "val_samples": info["val_samples"], "sample_shape": info["sample_shape"],
               "data_seconds": round(t_data, 3), "seconds": round(time.time() - t0, 3),
               "timed_out": bool(getattr(ctx, "timed_out", False))}
    print(f"pilot {PILOT}: trial {getattr(ctx, 'trial_id', '?')} val_mse={val_mse:.5f} "
          f"({epochs_run} epochs, {metrics['seconds']:.1f} s)", file=sys.stderr, flush=True)
    return {"objective": val_mse, "metrics": metrics, "model_path": str(path)}


def load_model(path):
    """Reload a stored ras model (plain Keras layers only; no custom objects needed)."""
    return keras.models.load_model(path)


__all__ = ["run", "build_model", "resolve_params", "load_model"]
