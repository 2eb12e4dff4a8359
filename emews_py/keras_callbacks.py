"""Keras callbacks that report a trial's training to the metadata store, and stop it at its time limit.

A pilot passes ``callbacks_for(ctx)`` to ``model.fit``:

* ``StoreCallback(ctx)`` sends ``train_begin`` (with the trial's hyperparameters, if given),
  one ``epoch_end`` per epoch with every value Keras logged (``loss``, ``val_loss``, metrics) as
  floats, and ``train_end`` (epochs run, final logs, whether the time limit stopped it). The events
  go through ``ctx.event``; rank 0 writes them as ``events`` rows before the trial's result reaches
  the optimizer.
* ``TimeLimit(ctx)`` checks ``ctx.time_left()`` after every batch and every epoch; once it is <= 0
  it sets ``model.stop_training = True`` and calls ``ctx.mark_timeout()``, so the trial is stored
  with status ``timeout``.

Importing this module imports Keras; pilots import it at module import time, so a resident worker
pays for Keras once, not once per trial.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any

_t0 = time.perf_counter()
import keras  # noqa: E402

KERAS_IMPORT_SECONDS = time.perf_counter() - _t0

log = logging.getLogger("emews_py.keras_callbacks")


def _num(v: Any) -> Any:
    """A log value as a JSON-friendly float (NaN/inf become None); non-numbers pass through."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        try:  # a 0-d tensor or numpy array
            import numpy as np
            f = float(np.asarray(v))
        except Exception:
            return v if isinstance(v, (str, bool, int)) or v is None else str(v)
    return f if math.isfinite(f) else None


class StoreCallback(keras.callbacks.Callback):
    """Reports ``train_begin``, ``epoch_end`` (every log value) and ``train_end`` through ``ctx``.

    ``params``: hyperparameters to attach to ``train_begin``; ``extra``: key/values added to every
    event (e.g. ``fold=2`` when a pilot trains several folds in one trial); ``epoch_offset`` is added
    to Keras' 0-based epoch number.
    """

    def __init__(self, ctx, params: dict | None = None, extra: dict | None = None,
                 epoch_offset: int = 0):
        super().__init__()
        self.ctx = ctx
        self.trial_params = dict(params or {})
        self.extra = dict(extra or {})
        self.epoch_offset = epoch_offset
        self.epochs_done = 0
        self.last_logs: dict = {}
        self._t_begin = None
        self._t_epoch = None

    def on_train_begin(self, logs=None):
        self._t_begin = time.time()
        self.epochs_done = 0
        info = {}
        try:
            info["n_params"] = int(self.model.count_params())
        except Exception:
            pass
        kp = getattr(self, "params", None) or {}
        for k in ("epochs", "steps"):
            if k in kp and kp[k] is not None:
                info[k] = kp[k]
        merged = {**{k: _jsonish(v) for k, v in self.trial_params.items()}, **info, **self.extra}
        self.ctx.event("train_begin", **merged)

    def on_epoch_begin(self, epoch, logs=None):
        self._t_epoch = time.time()

    def on_epoch_end(self, epoch, logs=None):
        values = {str(k): _num(v) for k, v in (logs or {}).items()}
        self.last_logs = values
        self.epochs_done += 1
        if self._t_epoch is not None:
            values["epoch_seconds"] = time.time() - self._t_epoch
        self.ctx.event("epoch_end", epoch=self.epoch_offset + int(epoch), **values, **self.extra)

    def on_train_end(self, logs=None):
        final = {str(k): _num(v) for k, v in (logs or {}).items()} or dict(self.last_logs)
        dur = time.time() - self._t_begin if self._t_begin else None
        self.ctx.event("train_end", epochs_run=self.epochs_done, seconds=dur,
                       timed_out=bool(getattr(self.ctx, "timed_out", False)),
                       **{f"final_{k}": v for k, v in final.items()}, **self.extra)


class TimeLimit(keras.callbacks.Callback):
    """Stops training once the trial's deadline (``ctx.time_left() <= 0``) has passed.

    Checked after every training batch and every epoch, so a long epoch is cut short too.
    Marks the trial timed out (``ctx.mark_timeout()``); the core then stores status ``timeout``.
    """

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.stopped = False

    def _check(self) -> None:
        left = self.ctx.time_left()
        if left is not None and left <= 0 and not self.stopped:
            self.stopped = True
            self.model.stop_training = True
            self.ctx.mark_timeout()
            log.warning("trial %s: time limit reached, stopping training",
                        getattr(self.ctx, "trial_id", "?"))

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def on_train_begin(self, logs=None):
        self._check()


def callbacks_for(ctx, params: dict | None = None, **extra) -> list:
    """``[TimeLimit(ctx), StoreCallback(ctx, params, extra)]`` for ``model.fit(callbacks=...)``.

    TimeLimit comes first so that the ``train_end`` event already knows whether the limit hit.
    """
    return [TimeLimit(ctx), StoreCallback(ctx, params=params, extra=extra or None)]


def _jsonish(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonish(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonish(x) for k, x in v.items()}
    return str(v)


def configure_threads() -> None:
    """Apply ``EMEWS_TF_THREADS`` (intra-op threads per worker; inter-op 1) to TensorFlow, if set.

    Several resident workers on one node each using every core oversubscribe it; set this to
    cores / workers. Must run before TensorFlow executes anything; later calls are ignored.
    """
    n = os.environ.get("EMEWS_TF_THREADS")
    if not n or keras.backend.backend() != "tensorflow":
        return
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (RuntimeError, ValueError):  # already initialised, or a bad value
        pass


def log_import(pilot: str) -> None:
    """One line on stderr: how long importing Keras took in this process (paid once per worker)."""
    print(f"pilot {pilot}: keras {keras.__version__} ({keras.backend.backend()}) imported in "
          f"{KERAS_IMPORT_SECONDS:.1f} s (pid {os.getpid()})", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- helpers shared by Keras pilots
# Search spaces deliver values as JSON (from R: numbers may come as floats, discrete values as
# strings), so pilots coerce them here and fail with a message that names the parameter.

def _perr(msg: str):
    from emews_py.pilot import PilotError
    return PilotError(msg)


def to_int(v: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer parameter as it may arrive from R or JSON (3, 3.0, "3"); bools and fractions
    are errors naming the parameter."""
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
        i = int(round(f))
        if abs(f - i) > 1e-9:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _perr(f"parameter {name!r} must be an integer, got {v!r}") from None
    if (lo is not None and i < lo) or (hi is not None and i > hi):
        raise _perr(f"parameter {name!r} = {i} is out of range [{lo}, {hi}]")
    return i


def to_float(v: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
    except (TypeError, ValueError):
        raise _perr(f"parameter {name!r} must be a number, got {v!r}") from None
    if not math.isfinite(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        raise _perr(f"parameter {name!r} = {f} is out of range [{lo}, {hi}]")
    return f


def parse_int_list(v: Any, name: str, allow_empty: bool = False) -> list[int]:
    """``[400, 200]``, ``400``, ``'400,200'``, ``'400 200'``, ``'[400, 200]'`` -> ``[400, 200]``."""
    if isinstance(v, str):
        s = v.strip().strip("[]()")
        items = [x for x in s.replace(",", " ").split()]
    elif isinstance(v, (list, tuple)):
        items = list(v)
    else:
        items = [v]
    out = [to_int(x, name) for x in items]
    if not out and not allow_empty:
        raise _perr(f"parameter {name!r} is empty; give at least one layer size")
    if any(x < 0 for x in out):
        raise _perr(f"parameter {name!r} has a negative size: {v!r}")
    return out


_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
               "adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam",
               "ftrl": "Ftrl", "lion": "Lion"}


def make_optimizer(name: Any, learning_rate: Any, pilot: str):
    key = str(name).strip().lower()
    if key not in _OPTIMIZERS:
        raise _perr(f"pilot {pilot}: unknown optimizer {name!r}; choose one of "
                    f"{', '.join(sorted(_OPTIMIZERS))}")
    lr = to_float(learning_rate, "learning_rate", 0.0)
    return getattr(keras.optimizers, _OPTIMIZERS[key])(learning_rate=lr)


def check_choice(value: Any, name: str, pilot: str, kind: str) -> None:
    """An activation or loss name Keras knows, else a PilotError naming the parameter."""
    try:
        if kind == "activation":
            keras.activations.get(str(value))
        elif kind == "loss":
            keras.losses.get(str(value))
        else:  # pragma: no cover
            raise ValueError(kind)
    except (ValueError, TypeError):
        raise _perr(f"pilot {pilot}: parameter {name!r} = {value!r} is not a Keras {kind} name") \
            from None


def set_deadline(ctx, timeout: Any) -> None:
    """Apply a pilot-level ``timeout`` (seconds, 0 = none) on top of the trial's own deadline."""
    t = to_float(timeout or 0, "timeout", 0.0)
    if t > 0:
        d = time.time() + t
        ctx.deadline = d if ctx.deadline is None else min(ctx.deadline, d)


def start_classifier_trial(p: dict, ctx, pilot: str) -> None:
    """What the classifier pilots (treat, drug) check first: their own ``timeout`` parameter on
    top of the trial's deadline, and activation and loss names Keras knows."""
    set_deadline(ctx, p.get("timeout"))
    for k in ("activation", "out_activation"):
        check_choice(p[k], k, pilot, kind="activation")
    check_choice(p["loss"], "loss", pilot, kind="loss")


def macro_f1(truth, pred, n_classes: int) -> float:
    """Macro-averaged F1 over the classes present in truth or prediction."""
    import numpy as np
    truth, pred = np.asarray(truth), np.asarray(pred)
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (truth == c)))
        fp = int(np.sum((pred == c) & (truth != c)))
        fn = int(np.sum((pred != c) & (truth == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def cross_entropy(truth, prob) -> float:
    """Mean categorical cross-entropy of integer labels under predicted class probabilities."""
    import numpy as np
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, None)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(truth)), np.asarray(truth, dtype=int)])))


def predict_np(model, x, batch_size: int = 512):
    """``model(x)`` in batches, as numpy (a dict of arrays for dict outputs).

    Unlike ``model.predict`` this builds no tf.function, so a resident worker that builds a new
    model per trial does not pile up retracing warnings.
    """
    import numpy as np
    outs = []
    for i in range(0, len(x), batch_size):
        outs.append(model(x[i:i + batch_size], training=False))
    if isinstance(outs[0], dict):
        return {k: np.concatenate([keras.ops.convert_to_numpy(o[k]) for o in outs]) for k in outs[0]}
    return np.concatenate([keras.ops.convert_to_numpy(o) for o in outs])
