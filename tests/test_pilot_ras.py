"""The ras pilot (CANDLE P2B1-like membrane autoencoder) on real Martini data, small and fast.

Data prep reads the membrane-curvature trajectories once into a per-module cache directory; the
trials train for real on a few hundred samples for one or two epochs.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import keras  # noqa: E402,F401 - installed by make setup; missing is a failure
import MDAnalysis  # noqa: E402,F401 - installed by make setup; missing is a failure
# located, never imported (its import writes a log file); missing is a failure, not a skip
assert importlib.util.find_spec("membrane_curvature") is not None, \
    "membrane-curvature is not installed: run `make setup`"

from emews_py.pilot import PilotError, TrialContext, TrialTimeout, UnknownParameterError  # noqa: E402

PILOT = "ras"  # the cache_dir fixture (conftest.py) prepares its data
SMALL = {"epochs": 1, "max_samples": 256, "dense": "64,16", "conv_features": "8,8"}


@pytest.fixture(scope="module")
def ras(cache_dir):
    import pilots.ras as ras
    return ras


def test_one_epoch_small_subset_trains(ras, tmp_path):
    ctx = TrialContext.local(tmp_path)
    res = ras.run(SMALL, ctx)
    assert np.isfinite(res["objective"]) and res["objective"] > 0
    assert res["objective"] == pytest.approx(res["metrics"]["val_mse"])
    assert res["metrics"]["train_samples"] == 256
    assert res["metrics"]["sample_shape"] == [11 * 12, 20]  # 10 neighbours + itself, 12 beads
    kinds = [e["kind"] for e in ctx.events]
    assert kinds == ["train_begin", "epoch_end", "train_end"]
    ep = ctx.events[1]
    assert ep["epoch"] == 0 and "loss" in ep["metrics"] and "val_loss" in ep["metrics"]
    assert os.path.isfile(res["model_path"])


def test_epoch_events_and_saved_model_reloads(ras, tmp_path):
    ctx = TrialContext.local(tmp_path, trial_id=3)
    res = ras.run({**SMALL, "epochs": 2, "conv_bool": False, "noise_factor": 0.1}, ctx)
    epochs = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert all(np.isfinite(e["metrics"]["loss"]) and np.isfinite(e["metrics"]["val_loss"])
               for e in epochs)
    assert res["model_path"].endswith("trial_3.keras")

    from pilots.ras import data
    p = ras.resolve_params({**SMALL, "epochs": 2, "conv_bool": False, "noise_factor": 0.1})
    _, x_va, _ = data.load_data(p)
    model = ras.load_model(res["model_path"])
    pred = model.predict(x_va[:7], verbose=0)
    assert pred.shape == x_va[:7].shape
    full = model.predict(x_va, verbose=0)
    assert float(((full - x_va) ** 2).mean()) == pytest.approx(res["objective"], rel=1e-3)


def test_unknown_parameter_is_named(ras, tmp_path):
    with pytest.raises(UnknownParameterError, match="no_such_knob"):
        ras.run({**SMALL, "no_such_knob": 3}, TrialContext.local(tmp_path))


def test_bad_values_name_the_parameter(ras):
    with pytest.raises(PilotError, match="'dense'"):
        ras.resolve_params({"dense": "256,abc"})
    with pytest.raises(PilotError, match="'optimizer'"):
        ras.resolve_params({"optimizer": "lbfgs"})
    with pytest.raises(PilotError, match="'molecular_nbrs'"):
        ras.resolve_params({"molecular_nbrs": 50})
    with pytest.raises(PilotError, match="'data_set'"):
        ras.run({"data_set": "no_such_set"}, TrialContext.local("."))


def test_search_space_value_forms(ras):
    p = ras.resolve_params({"dense": "512,128,32", "conv_features": "", "batch_size": 64.0,
                            "conv_bool": "TRUE", "type_bool": 0})
    assert p["dense"] == [512, 128, 32] and p["conv_features"] == []
    assert p["batch_size"] == 64 and p["conv_bool"] is True and p["type_bool"] is False
    assert ras.resolve_params({"dense": "256 64"})["dense"] == [256, 64]
    assert ras.resolve_params({"dense": "[128, 16]"})["dense"] == [128, 16]


def test_missing_and_corrupt_npz_name_the_file(ras, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(PilotError, match=str(missing)):
        ras.run({**SMALL, "data_dir": str(missing)}, TrialContext.local(tmp_path))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file" * 10)
    with pytest.raises(PilotError, match="corrupt") as e:
        ras.run({**SMALL, "data_dir": str(bad)}, TrialContext.local(tmp_path))
    assert str(bad) in str(e.value)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, something=np.zeros(3))
    with pytest.raises(PilotError, match="features") as e:
        ras.run({**SMALL, "data_dir": str(wrong)}, TrialContext.local(tmp_path))
    assert str(wrong) in str(e.value)


def test_reads_p2b1_npz_directory(ras, cache_dir, tmp_path):
    """P2B1 files: only features/neighbors/resnums, float64, 100 neighbour slots, no box."""
    from pilots.ras import data
    path, _ = data.prepare("membrane")
    z = np.load(path)
    d = tmp_path / "3k_run10_10us.35fs-DPPC.10-DOPC.70-CHOL.20.dir"
    d.mkdir()
    for i, frames in enumerate([slice(0, 2), slice(2, 3)]):
        nbrs = -np.ones(z["neighbors"][frames].shape[:2] + (100,), dtype=np.int64)
        nbrs[..., :21] = z["neighbors"][frames]
        np.savez(d / f"chunk_{i:02d}_outof_02.npz", features=z["features"][frames].astype(np.float64),
                 neighbors=nbrs.astype(np.float64), resnums=z["resnums"])
    np.savez(d / "chunk_00_AE_IncludeTrue_ConvTrue.npz", junk=np.zeros(1))  # skipped, as in P2B1
    ctx = TrialContext.local(tmp_path)
    res = ras.run({**SMALL, "data_dir": str(d)}, ctx)
    assert np.isfinite(res["objective"])
    assert len(res["metrics"]["sample_shape"]) == 2


def test_data_prep_is_cached(ras, cache_dir):
    from pilots.ras import data
    path, _ = data.prepare("membrane")  # built by an earlier test or now
    mtime = path.stat().st_mtime_ns
    count = data.PREP_COUNT
    path2, built = data.prepare("membrane")
    assert path2 == path and built is False
    assert data.PREP_COUNT == count and path.stat().st_mtime_ns == mtime
    with np.load(path) as z:
        assert z["features"].shape == (11, 2046, 12, 20)
        assert z["neighbors"].shape == (11, 2046, 21)
        assert (z["neighbors"][:, :, 0] == np.arange(2046)).all()  # itself first
        assert z["resnums"].shape == (2046,)


def test_corrupt_cache_file_is_rebuilt(ras, cache_dir):
    from pilots.ras import data
    path, _ = data.prepare("membrane")
    data._SAMPLES.clear()
    data._ARRAYS.clear()
    path.write_bytes(b"garbage")
    count = data.PREP_COUNT
    x_tr, x_va, info = data.load_data(ras.resolve_params({"max_samples": 64}))
    assert data.PREP_COUNT == count + 1 and len(x_tr) == 64
    with np.load(path) as z:
        assert z["features"].shape[0] == 11


def test_time_limit_before_training(ras, tmp_path):
    ctx = TrialContext.local(tmp_path, timeout=1e-9)
    with pytest.raises(TrialTimeout):
        ras.run(SMALL, ctx)
    assert ctx.timed_out


def test_restore_best_weights_objective_is_the_best_epochs(ras, tmp_path):
    """With restore_best_weights the model evaluated is the best val_loss epoch's: under the
    default loss (mse, no l2) the objective, the validation MSE, is the smallest val_loss of the
    epochs, and train_loss is that epoch's training loss."""
    ctx = TrialContext.local(tmp_path, trial_id=4)
    res = ras.run({**SMALL, "epochs": 4, "conv_bool": False, "learning_rate": 0.05,
                   "restore_best_weights": True}, ctx)
    ep = [e["metrics"] for e in ctx.events if e["kind"] == "epoch_end"]
    best = int(np.argmin([m["val_loss"] for m in ep]))
    assert res["objective"] == pytest.approx(ep[best]["val_loss"], rel=1e-4)
    assert res["metrics"]["train_loss"] == pytest.approx(ep[best]["loss"], rel=1e-6)
    end = [e["metrics"] for e in ctx.events if e["kind"] == "train_end"][0]
    assert best < len(ep) - 1 and end["restored_epoch"] == best   # at 0.05 epoch 3 is worse
