"""What the Keras pilots share: callbacks that report training to the store and stop it at the
trial's time limit, and Keras-specific helpers (optimizer by name, activation/loss name checks,
thread limits, batched prediction).

A pilot passes ``callbacks_for(ctx)`` to ``model.fit``:

* ``StoreCallback(ctx)`` sends ``train_begin`` (with the trial's hyperparameters, if given),
  one ``epoch_end`` per epoch with every value Keras logged (``loss``, ``val_loss``, metrics) as
  floats, and ``train_end`` (epochs run, final logs, whether the time limit stopped it). The events
  go through ``ctx.event``; rank 0 writes them as ``events`` rows before the trial's result reaches
  the optimizer. It also ends the training at an epoch end once the run's early stopper
  (``STOPPER``, docs/stopping.md) asks for it (``ctx.stop_requested()``), so the trial is stored
  ``stopped`` at that epoch.
* ``BestWeights()`` (with ``callbacks_for(ctx, restore_best=True)``: the pilots'
  ``restore_best_weights`` parameter) keeps the weights of the epoch with the best ``val_loss`` and
  puts them back when training ends, so the pilot evaluates, reports and saves that model rather
  than the last epoch's (``train_end`` says which epoch: ``restored_epoch``).
* ``TimeLimit(ctx)`` checks ``ctx.time_left()`` after every batch and every epoch; once it is <= 0
  it sets ``model.stop_training = True`` and calls ``ctx.mark_timeout()``, so the trial is stored
  with status ``timeout``.

Importing this module imports Keras (and its backend), and times that import for ``log_import``;
pilots import it at module import time, so a resident worker pays for Keras once, not once per
trial. Pilots take Keras itself from here too (``from emews_py.pilotkit.keras import keras``), so
the time logged is the real import. Parameter coercion and metrics need no Keras: they are in
``emews_py.pilotkit.params`` and ``emews_py.pilotkit.metrics``.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any

_t0 = time.perf_counter()
import keras  # noqa: E402  (timed: the cost a resident worker pays once)

KERAS_IMPORT_SECONDS = time.perf_counter() - _t0

from emews_py.pilotkit.context import PilotError  # noqa: E402
from emews_py.pilotkit.params import check_choice, set_deadline, to_float  # noqa: E402

log = logging.getLogger("emews_py.pilotkit.keras")


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


def _jsonish(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonish(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonish(x) for k, x in v.items()}
    return str(v)


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
        self.best_weights = None   # callbacks_for(restore_best=True): its BestWeights, for train_end
        self.epochs_done = 0
        self.last_logs: dict = {}
        self._t_begin = None
        self._t_epoch = None

    def on_train_begin(self, logs=None):
        self._t_begin = time.time()
        self.epochs_done = 0
        if getattr(self.ctx, "stopped_epoch", None) is not None:
            self.model.stop_training = True  # a later fit of a stopped trial (a fold): no more
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
        n = self.epoch_offset + int(epoch)
        self.ctx.event("epoch_end", epoch=n, **values, **self.extra)
        stop = getattr(self.ctx, "stop_requested", None)
        if stop is not None and stop():   # the early stopper (STOPPER): end at this epoch
            self.model.stop_training = True
            self.ctx.mark_stopped(n)

    def on_train_end(self, logs=None):
        final = {str(k): _num(v) for k, v in (logs or {}).items()} or dict(self.last_logs)
        dur = time.time() - self._t_begin if self._t_begin else None
        kept = self.best_weights
        restored = {} if kept is None or kept.restored is None else \
            {"restored_epoch": self.epoch_offset + kept.restored}
        self.ctx.event("train_end", epochs_run=self.epochs_done, seconds=dur,
                       timed_out=bool(getattr(self.ctx, "timed_out", False)),
                       stopped_epoch=getattr(self.ctx, "stopped_epoch", None),
                       **{f"final_{k}": v for k, v in final.items()}, **restored, **self.extra)


class BestWeights(keras.callbacks.Callback):
    """At the end of training, puts back the weights of the epoch whose ``monitor`` value was best.

    Keras' ``EarlyStopping(restore_best_weights=True)`` does this only when its own patience stops
    the training; here it happens whatever ended it (the last epoch, the run's stopper, the time
    limit), which is what a search wants: a trial's result is its best model, as a checkpoint with
    ``save_best_only`` would keep. Epochs whose value is missing or not finite never count as
    best. ``restored`` is the (0-based) epoch put back, or None when the last epoch was the best
    (nothing to do) or no epoch had a value.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        self.monitor, self.sign = monitor, (1.0 if mode == "min" else -1.0)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best = self.weights = self.best_epoch = self.restored = self.last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch = int(epoch)
        v = _num((logs or {}).get(self.monitor))
        if isinstance(v, float) and (self.best is None or self.sign * v < self.sign * self.best):
            self.best, self.best_epoch = v, int(epoch)
            self.weights = self.model.get_weights()   # host copies: a later epoch cannot touch them

    def on_train_end(self, logs=None):
        if self.weights is not None and self.best_epoch != self.last_epoch:
            self.model.set_weights(self.weights)
            self.restored = self.best_epoch
        self.weights = None


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


def callbacks_for(ctx, params: dict | None = None, restore_best: bool = False, **extra) -> list:
    """``[TimeLimit(ctx), (BestWeights(),) StoreCallback(ctx, params, extra)]`` for
    ``model.fit(callbacks=...)``; the store callback is always the last.

    TimeLimit comes first so that the ``train_end`` event already knows whether the limit hit, and
    BestWeights (``restore_best``) before the store callback so that ``train_end`` says which
    epoch's weights the model ends with.
    """
    store = StoreCallback(ctx, params=params, extra=extra or None)
    if not restore_best:
        return [TimeLimit(ctx), store]
    store.best_weights = BestWeights()
    return [TimeLimit(ctx), store.best_weights, store]


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


# Optimizer names as search spaces give them -> keras.optimizers class names.
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
              "adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam",
              "ftrl": "Ftrl", "lion": "Lion"}


def make_optimizer(name: Any, learning_rate: Any, pilot: str):
    """A Keras optimizer by its lower-case name (one of ``OPTIMIZERS``) and learning rate."""
    key = check_choice(name, "optimizer", sorted(OPTIMIZERS), pilot)
    lr = to_float(learning_rate, "learning_rate", 0.0)
    return getattr(keras.optimizers, OPTIMIZERS[key])(learning_rate=lr)


def check_keras_name(value: Any, name: str, pilot: str, kind: str) -> str:
    """``value`` if it is an activation (``kind="activation"``) or loss (``kind="loss"``) name
    Keras knows, else a PilotError naming the parameter."""
    getter = {"activation": keras.activations.get, "loss": keras.losses.get}[kind]
    try:
        getter(str(value))
    except (ValueError, TypeError):
        raise PilotError(f"pilot {pilot}: parameter {name!r} = {value!r} is not a Keras {kind} "
                         f"name") from None
    return str(value)


def start_classifier_trial(p: dict, ctx, pilot: str) -> None:
    """What the classifier pilots (treat, drug) check first: their own ``timeout`` parameter on
    top of the trial's deadline, and activation and loss names Keras knows."""
    set_deadline(ctx, p.get("timeout"))
    for k in ("activation", "out_activation"):
        check_keras_name(p[k], k, pilot, kind="activation")
    check_keras_name(p["loss"], "loss", pilot, kind="loss")


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


def build_before_fit(model, x, y=None, sample_weight=None) -> bool:
    """Create the optimizer's and the compiled metrics' variables before ``model.fit``, as Keras
    itself does under a distribution strategy. Without one, Keras 3 on TensorFlow creates them
    inside the first trace of the training step, and TensorFlow then traces the step a second
    time (a tf.function that creates variables is traced again without them): measured on
    ``treat`` on the 2-core machine, two traces of 2-3 s each before the first epoch ends, against
    epochs of 0.3 s after it. Every trial builds a new model, so this is paid per training; with
    it the first epoch takes about half as long and the training is otherwise the same (the same
    objective to the last digit). Call it after ``compile`` with what ``fit`` will get; x, y and
    sample_weight may be arrays or dicts/lists of arrays. Returns False, and changes nothing,
    where it does not apply (another backend) or where this Keras lacks the method it uses
    (``Model._symbolic_build``, not public API: then the training is only slower).
    """
    import numpy as np
    build = getattr(model, "_symbolic_build", None)
    if keras.backend.backend() != "tensorflow" or build is None:
        return False

    def head(a):
        if a is None:
            return None
        return keras.tree.map_structure(lambda v: np.asarray(v)[:2], a)
    try:
        build(data_batch=(head(x), head(y), head(sample_weight)))
    except Exception as e:  # noqa: BLE001 - a Keras whose private build differs: train as before
        logging.getLogger(__name__).warning("build_before_fit: Keras' symbolic build failed (%s); "
                                            "training as usual", e)
        return False
    return True
