"""Keras pilots through the whole farm: events in the store, the model store, time limits,
and resident workers that import Keras once."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from helpers import json_space, output, query, run_workflow

import keras  # noqa: E402 - installed by make setup


def test_treat_trials_events_and_model_store(tmp_path):
    space = json_space(tmp_path / "s.json", [
        {"id": "learning_rate", "type": "numeric", "lower": 0.001, "upper": 0.01},
        {"id": "epochs", "type": "discrete", "values": [2, 3]},
        {"id": "batch_size", "type": "discrete", "values": [16]}])
    p = run_workflow(tmp_path, "--pilot", "treat", "--algo", "py_random", "--procs", "3",
                     "--budget", "5", "--space", str(space), "--settings", "keep.models = 2",
                     timeout=400)
    out = output(p)
    assert p.returncode == 0, out
    # each of the 2 resident workers imported the pilot (and Keras) once for 5 trials: one line
    # on the terminal, one per worker in RUN_DIR/workers.log
    assert len(re.findall(r"imported pilot", out)) == 1, out
    assert re.search(r"\[emews\] 2 workers imported pilot 'treat' in [\d.]+(–[\d.]+)? s", out), \
        out
    run_dir = re.search(r"run directory: (\S+)", out).group(1)
    detail = open(f"{run_dir}/workers.log").read()
    assert len(re.findall(r"worker \d \(pid \d+ on .*\) imported pilot 'treat' once", detail)) == 2
    trials = query(tmp_path, "SELECT id, params, objective, metrics FROM trials")
    assert len(trials) == 5
    for t in trials:
        epochs = json.loads(t["params"])["epochs"]
        kinds = [e["kind"] for e in query(tmp_path, "SELECT kind FROM events WHERE trial_id = :t "
                                                    "ORDER BY id", t=t["id"])]
        assert kinds == ["train_begin"] + ["epoch_end"] * epochs + ["train_end"]
        ends = query(tmp_path, "SELECT epoch, metrics FROM events WHERE trial_id = :t AND "
                               "kind = 'epoch_end' ORDER BY epoch", t=t["id"])
        assert [e["epoch"] for e in ends] == list(range(epochs))
        last = json.loads(ends[-1]["metrics"])
        assert "loss" in last and "val_loss" in last
        m = json.loads(t["metrics"])
        assert any("f1" in k.lower() for k in m) and any("acc" in k.lower() for k in m)
    models = query(tmp_path, "SELECT m.trial_id, m.path, m.metric, t.objective FROM models m "
                             "JOIN trials t ON t.id = m.trial_id ORDER BY m.metric")
    best2 = sorted(t["objective"] for t in trials)[:2]
    assert [m["metric"] for m in models] == pytest.approx(best2)
    run_dir = query(tmp_path, "SELECT run_dir FROM experiments")[0]["run_dir"]
    kept = sorted(p.name for p in (__import__("pathlib").Path(run_dir) / "models").iterdir())
    assert kept == sorted(f"trial_{m['trial_id']}.keras" for m in models)
    model = keras.saving.load_model(models[0]["path"])
    x = np.random.default_rng(0).random((4, 400)).astype("float32")
    preds = model.predict(x, verbose=0)
    preds = list(preds.values()) if isinstance(preds, dict) else list(preds)  # one head per task
    assert len(preds) == 3 and all(p.shape[0] == 4 for p in preds)
    for p_ in preds:
        assert np.allclose(p_.sum(axis=1), 1, atol=1e-4)


def test_keras_time_limit_marks_trial_timeout(tmp_path):
    space = json_space(tmp_path / "s.json", [{"id": "epochs", "type": "discrete", "values": [500]}])
    p = run_workflow(tmp_path, "--pilot", "treat", "--algo", "py_random", "--procs", "2",
                     "--budget", "1", "--space", str(space), "--timeout", "4", timeout=300)
    assert p.returncode == 0, output(p)
    t = query(tmp_path, "SELECT id, status, error FROM trials")[0]
    assert t["status"] == "timeout" and "time limit" in t["error"]
    n = query(tmp_path, "SELECT COUNT(*) AS n FROM events WHERE trial_id = :t AND kind = 'epoch_end'",
              t=t["id"])[0]["n"]
    assert 0 < n < 500
