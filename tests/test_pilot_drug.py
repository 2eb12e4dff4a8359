"""The drug pilot (CANDLE NT3-like 1-D CNN) on real bladder cancer expression data, small and fast.

The default data set is exported once (Rscript, Debian r-bioc-bladderbatch) into a per-module
cache directory; trials train for real on a subset of samples and probes for one or two epochs.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import keras  # noqa: E402,F401 - installed by make setup; missing is a failure
import sklearn  # noqa: E402,F401 - installed by make setup; missing is a failure

from emews_py.pilot import PilotError, TrialContext, UnknownParameterError  # noqa: E402

PILOT = "drug"  # the cache_dir fixture (conftest.py) prepares its data
SMALL = {"epochs": 1, "max_samples": 30, "feature_subsample": 500, "conv": "8,10,1,8,5,1",
         "dense": "16,8", "batch_size": 10}


@pytest.fixture(scope="module")
def drug(cache_dir):
    import pilots.drug as drug
    return drug


@pytest.fixture(scope="module")
def nt3_dir(drug, cache_dir):
    return drug.drug_data.default_data_dir("bladderbatch", cache_dir)


def test_default_data_is_nt3_layout_and_prepared_once(drug, cache_dir, nt3_dir):
    info = json.loads((nt3_dir / "info.json").read_text())
    assert info["samples"] == 57 and info["features"] == 22283
    assert info["counts"] == [17, 40]  # not cancer (normal + biopsy), cancer
    first = (nt3_dir / "bladderbatch_train.csv").read_text().split("\n", 1)[0].split(",")
    assert len(first) == 1 + 22283 and first[0] in ("0", "1")  # label in column 0, no header
    built, mtime = drug.drug_data.BUILD_COUNT, (nt3_dir / "info.json").stat().st_mtime
    assert drug.drug_data.default_data_dir("bladderbatch", cache_dir) == nt3_dir
    drug.run(SMALL, TrialContext.local(cache_dir / "runs"))
    assert drug.drug_data.BUILD_COUNT == built  # reused, not rebuilt
    assert (nt3_dir / "info.json").stat().st_mtime == mtime


def test_one_epoch_events_and_model_reloads(drug, nt3_dir, tmp_path):
    import keras
    ctx = TrialContext.local(tmp_path, trial_id=4)
    res = drug.run(SMALL, ctx)
    assert np.isfinite(res["objective"]) and res["objective"] > 0
    m = res["metrics"]
    assert m["n_features_file"] == 22283 and m["n_features_used"] == 500 and m["n_train"] == 30
    assert 0 <= m["val_accuracy"] <= 1 and 0 <= m["val_macro_f1"] <= 1
    assert res["objective"] == pytest.approx(m["val_loss"], rel=1e-3)
    kinds = [e["kind"] for e in ctx.events]
    assert kinds == ["train_begin", "epoch_end", "train_end"]
    ep = ctx.events[1]["metrics"]
    assert ctx.events[1]["epoch"] == 0
    assert all(isinstance(ep[k], float) for k in ("loss", "val_loss", "accuracy", "val_accuracy"))

    model = keras.saving.load_model(res["model_path"])
    pred = model.predict(np.zeros((3, 500, 1), dtype="float32"), verbose=0)
    assert pred.shape == (3, 2) and np.allclose(pred.sum(axis=1), 1, atol=1e-4)


def test_one_epoch_end_per_epoch(drug, tmp_path):
    ctx = TrialContext.local(tmp_path)
    drug.run({**SMALL, "epochs": 2, "optimizer": "adam", "scaling": "maxabs",
              "loss": "sparse_categorical_crossentropy", "conv": [8, 10, 2]}, ctx)
    ends = [e for e in ctx.events if e["kind"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [0, 1]
    assert all(np.isfinite(e["metrics"]["val_loss"]) for e in ends)


def test_unknown_parameter_names_it(drug, tmp_path):
    with pytest.raises(UnknownParameterError, match="conv_layers"):
        drug.run({**SMALL, "conv_layers": 2}, TrialContext.local(tmp_path))


def test_bad_values_are_clear_errors(drug, tmp_path):
    with pytest.raises(PilotError, match="triples"):
        drug.run({**SMALL, "conv": "8,10"}, TrialContext.local(tmp_path))
    with pytest.raises(PilotError, match="data_set"):
        drug.run({**SMALL, "data_set": "nope"}, TrialContext.local(tmp_path))


def _write_nt3(path, n, n_features, rng, classes=2):
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, n_features)) + y[:, None] * 0.5
    np.savetxt(path, np.column_stack([y, x]), delimiter=",", fmt=["%d"] + ["%.4f"] * n_features)


def test_reads_user_nt3_files_feature_count_from_file(drug, tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "nt3"
    d.mkdir()
    _write_nt3(d / "nt_train2.csv", 40, 300, rng)
    _write_nt3(d / "nt_test2.csv", 12, 300, rng)
    ctx = TrialContext.local(tmp_path)
    res = drug.run({"epochs": 2, "data_dir": str(d), "conv": "4,10,1,4,5,1", "dense": "8",
                    "feature_subsample": 0}, ctx)
    assert res["metrics"]["n_features_file"] == 300 and res["metrics"]["n_features_used"] == 300
    assert sum(e["kind"] == "epoch_end" for e in ctx.events) == 2


def test_missing_and_corrupt_files_named(drug, nt3_dir, tmp_path):
    rng = np.random.default_rng(2)
    d = tmp_path / "nt3"
    d.mkdir()
    _write_nt3(d / "nt_train2.csv", 20, 50, rng)
    with pytest.raises(PilotError, match="nt_test2.csv") as e:
        drug.run({**SMALL, "data_dir": str(d)}, TrialContext.local(tmp_path))
    assert "missing" in str(e.value)
    (d / "nt_test2.csv").write_text("1,0.5,0.7\n0,abc,0.1\n")
    with pytest.raises(PilotError, match="nt_test2.csv") as e:
        drug.run({**SMALL, "data_dir": str(d)}, TrialContext.local(tmp_path))
    assert "corrupt" in str(e.value)
    _write_nt3(d / "nt_test2.csv", 10, 49, rng)  # one feature short of the training file
    with pytest.raises(PilotError, match="disagree"):
        drug.run({**SMALL, "data_dir": str(d)}, TrialContext.local(tmp_path))
    # a corrupt file in the default data cache is named too
    bad = tmp_path / "cache_copy"
    shutil.copytree(nt3_dir, bad)
    with open(bad / "bladderbatch_test.csv", "a") as fh:
        fh.write("1,2,3\n")
    with pytest.raises(PilotError, match="bladderbatch_test.csv"):
        drug.run({**SMALL, "data_dir": str(bad), "train_data": "bladderbatch_train.csv",
                  "test_data": "bladderbatch_test.csv"}, TrialContext.local(tmp_path))


def test_time_limit_stops_training_and_marks_timeout(drug, tmp_path):
    ctx = TrialContext.local(tmp_path, timeout=0.001)
    drug.run({**SMALL, "epochs": 200, "batch_size": 2}, ctx)
    assert ctx.timed_out
    assert sum(e["kind"] == "epoch_end" for e in ctx.events) < 200
    assert ctx.events[-1]["kind"] == "train_end" and ctx.events[-1]["metrics"]["timed_out"] is True
