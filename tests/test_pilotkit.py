"""emews_py.pilotkit: what a pilot imports. Coercion and metrics must not cost a Keras import, and a
bad parameter must fail with a PilotError that names it."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from emews_py.pilotkit.context import PilotError, TrialContext
from emews_py.pilotkit.metrics import cross_entropy, macro_f1, roc_auc
from emews_py.pilotkit.params import (check_choice, parse_int_list, set_deadline, to_bool,
                                      to_float, to_int)

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("keras", "tensorflow", "jax", "numpy")


def _loaded_after(imports: str) -> set[str]:
    """The heavy modules a fresh interpreter holds after running ``imports``."""
    code = f"import json, sys\n{imports}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_light_modules_do_not_import_keras():
    light = _loaded_after("import emews_py.pilotkit, emews_py.pilotkit.params, "
                          "emews_py.pilotkit.metrics, emews_py.pilotkit.context, "
                          "emews_py.pilotkit.defaults, emews_py.pilotkit.cache, emews_py.pilot, "
                          "pilots.bench")
    assert not light & {"keras", "tensorflow", "jax"}, light
    # parameter coercion and the pilot context are standard library only
    assert _loaded_after("import emews_py.pilotkit.params, emews_py.pilot") == set()
    # the check can fail: the Keras module does load Keras
    assert "keras" in _loaded_after("import emews_py.pilotkit.keras")


def test_pilot_module_reexports_the_pilotkit_names():
    import emews_py.pilot as pilot
    from emews_py.pilotkit import cache, context, defaults
    assert pilot.PilotError is context.PilotError and pilot.TrialContext is context.TrialContext
    assert pilot.UnknownParameterError is context.UnknownParameterError
    assert pilot.TrialTimeout is context.TrialTimeout
    assert pilot.pilot_params is defaults.pilot_params
    assert pilot.prepare_once is cache.prepare_once and pilot.data_cache_dir is cache.data_cache_dir


def test_to_int_accepts_what_r_and_json_send_and_names_bad_parameters():
    assert to_int(3, "epochs") == 3 and to_int(3.0, "epochs") == 3 and to_int("3", "epochs") == 3
    assert to_int(" 12 ", "epochs", 1, 20) == 12
    for bad in (True, 3.5, "three", None, [3], math.inf, math.nan, "1e400"):
        with pytest.raises(PilotError, match=r"parameter 'epochs' must be an integer"):
            to_int(bad, "epochs")
    with pytest.raises(PilotError, match=r"'batch_size' = 0 is out of range \[1, None\]"):
        to_int(0, "batch_size", 1)
    with pytest.raises(PilotError, match=r"'verbose' = 3 is out of range \[0, 2\]"):
        to_int(3, "verbose", 0, 2)


def test_to_float():
    assert to_float("0.5", "dropout") == 0.5 and to_float(1, "dropout") == 1.0
    for bad in (False, "x", None):
        with pytest.raises(PilotError, match="parameter 'learning_rate' must be a number"):
            to_float(bad, "learning_rate")
    for bad in (math.inf, -math.inf, math.nan, -0.1, 1.5):
        with pytest.raises(PilotError, match="parameter 'dropout' = .* is out of range"):
            to_float(bad, "dropout", 0.0, 0.99)


def test_to_bool():
    for v in (True, 1, 1.0, "TRUE", "true", " yes", "t", "1"):
        assert to_bool(v, "batch_norm") is True
    for v in (False, 0, "FALSE", "no", "f", "0"):
        assert to_bool(v, "batch_norm") is False
    for bad in (2, "maybe", None, [True]):
        with pytest.raises(PilotError, match="parameter 'batch_norm' must be true or false"):
            to_bool(bad, "batch_norm")


def test_parse_int_list_forms():
    for v in ([400, 200], (400, 200), "400,200", "400 200", " [400, 200] ", [400.0, "200"]):
        assert parse_int_list(v, "dense") == [400, 200]
    assert parse_int_list(64, "dense") == [64] and parse_int_list("64", "dense") == [64]
    assert parse_int_list("32,0,16", "conv") == [32, 0, 16]  # zeros kept: positions matter
    assert parse_int_list("32,0,16", "dense", drop_zeros=True) == [32, 16]
    assert parse_int_list("", "conv", allow_empty=True) == []
    assert parse_int_list("0", "conv", allow_empty=True, drop_zeros=True) == []
    with pytest.raises(PilotError, match="parameter 'dense' is empty"):
        parse_int_list("", "dense")
    with pytest.raises(PilotError, match="parameter 'dense' is empty"):
        parse_int_list([0], "dense", drop_zeros=True)
    with pytest.raises(PilotError, match="parameter 'dense' has a negative size"):
        parse_int_list("64,-1", "dense")
    with pytest.raises(PilotError, match="parameter 'dense' must be an integer, got 'abc'"):
        parse_int_list("256,abc", "dense")
    with pytest.raises(PilotError, match="parameter 'dense' must be an integer, got True"):
        parse_int_list(True, "dense")


def test_check_choice():
    assert check_choice("Adam", "optimizer", ("adam", "sgd")) == "adam"
    assert check_choice(" sgd ", "optimizer", ["adam", "sgd"]) == "sgd"
    with pytest.raises(PilotError) as e:
        check_choice("lbfgs", "optimizer", ("adam", "sgd"), pilot="ras")
    assert str(e.value) == "pilot ras: parameter 'optimizer' = 'lbfgs' is not one of adam, sgd"


def test_set_deadline_only_brings_the_deadline_forward(tmp_path):
    ctx = TrialContext.local(tmp_path)
    set_deadline(ctx, 0)
    set_deadline(ctx, None)
    assert ctx.deadline is None
    set_deadline(ctx, 100)
    assert 99 < ctx.time_left() <= 100
    set_deadline(ctx, "5")
    assert 4 < ctx.time_left() <= 5
    set_deadline(ctx, 1000)  # a later pilot timeout never extends the trial's limit
    assert ctx.time_left() <= 5
    with pytest.raises(PilotError, match="parameter 'timeout'"):
        set_deadline(ctx, -1)
    ctx.deadline = time.time() - 1
    assert ctx.time_left() < 0


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    pred[pred == 3] = 2  # class 3 never predicted: counts with F1 0, as in sklearn
    assert macro_f1(truth, pred, 4) == pytest.approx(f1_score(truth, pred, average="macro"))
    assert macro_f1([0, 0, 1], [0, 0, 1], 5) == 1.0  # classes in neither are left out
    assert macro_f1([0, 1, 1], [1, 0, 0], 2) == 0.0
    assert macro_f1([], [], 3) == 0.0


def test_cross_entropy_matches_sklearn_and_survives_zeros():
    rng = np.random.default_rng(1)
    prob = rng.dirichlet(np.ones(3), 50)
    truth = rng.integers(0, 3, 50)
    assert cross_entropy(truth, prob) == pytest.approx(log_loss(truth, prob, labels=[0, 1, 2]))
    assert cross_entropy([0], [[1.0, 0.0]]) == pytest.approx(0.0, abs=1e-6)
    assert cross_entropy([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-7), rel=1e-3)


def test_roc_auc_matches_sklearn_with_ties():
    truth = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.2])
    assert roc_auc(truth, score) == pytest.approx(roc_auc_score(truth, score))
    assert roc_auc([1, 1], [0.2, 0.3]) is None and roc_auc([0], [0.5]) is None


def test_old_keras_callbacks_module_still_works_and_says_it_is_deprecated():
    sys.modules.pop("emews_py.keras_callbacks", None)
    with pytest.warns(DeprecationWarning, match="emews_py.pilotkit"):
        import emews_py.keras_callbacks as old
    from emews_py.pilotkit import keras as kit
    from emews_py.pilotkit import metrics, params
    assert old.callbacks_for is kit.callbacks_for and old.StoreCallback is kit.StoreCallback
    assert old.to_int is params.to_int and old.macro_f1 is metrics.macro_f1
    assert old.check_choice is kit.check_keras_name  # the old Keras-name check, same signature
    with pytest.raises(PilotError, match="parameter 'activation' = 'nope' is not a Keras activation"):
        old.check_choice("nope", "activation", "treat", kind="activation")
    with pytest.raises(PilotError, match="'optimizer' = 'lbfgs' is not one of adadelta, adagrad"):
        old.make_optimizer("lbfgs", 0.01, "treat")
    assert type(old.make_optimizer("Adam", "0.01", "treat")).__name__ == "Adam"


def test_build_before_fit_traces_the_training_step_once():
    """Keras 3 on TensorFlow creates the optimizer's and the metrics' variables inside the first
    trace of the training step, and TensorFlow traces it again: each trial's new model pays two
    traces before its first epoch ends. build_before_fit leaves one, and the training is the same."""
    from emews_py.pilotkit.keras import build_before_fit, keras
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the double trace is TensorFlow's")

    class Counting(keras.Model):
        traces = 0

        def train_step(self, data):      # Python runs only while TensorFlow traces
            type(self).traces += 1
            return super().train_step(data)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("int64"), "b": (x[:, 1] > 0.5).astype("int64")}
    w = {"a": np.ones(96, "float32"), "b": (x[:, 2] > 0).astype("float32")}

    def train(prebuild: bool):
        keras.utils.set_random_seed(3)
        inp = keras.Input((8,))
        h = keras.layers.Dense(6, activation="relu")(inp)
        out = {k: keras.layers.Dense(2, activation="softmax", name=k)(h) for k in "ab"}
        Counting.traces = 0
        model = Counting(inp, out)
        model.compile(optimizer="adam", loss={k: "sparse_categorical_crossentropy" for k in "ab"},
                      metrics={k: ["accuracy"] for k in "ab"})
        if prebuild:
            assert build_before_fit(model, x, y, w)
        hist = model.fit(x, y, sample_weight=w, validation_data=(x, y, w), epochs=3,
                         batch_size=16, verbose=0, shuffle=False)
        return Counting.traces, hist.history

    traces_without, hist_without = train(False)
    traces_with, hist_with = train(True)
    assert traces_without == 2       # the double trace is there to save
    assert traces_with == 1
    for k in ("loss", "val_loss", "a_accuracy", "val_b_accuracy"):
        assert hist_with[k] == pytest.approx(hist_without[k], rel=1e-6), k
