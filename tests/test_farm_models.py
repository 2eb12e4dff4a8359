"""Model retention on a real SQLite store: the best K model files stay, with a row each."""
from __future__ import annotations

from sqlalchemy import text

from emews_py import store
from emews_py.farm.models import ModelKeeper


def test_best_k_models_stay_on_disk_and_in_the_store(tmp_path):
    eng = store.init_db(f"sqlite:///{tmp_path / 'm.db'}")
    w = store.Writer(eng)
    exp = w.create_experiment(name="m", pilot="bench", algorithm="random")
    ids = w.add_trials(exp, [{"x": i} for i in range(5)], 0.0)
    keeper = ModelKeeper(w, keep=2)
    files = []
    for tid, metric in zip(ids, [3.0, 1.0, None, 2.0, 5.0]):  # None: the trial did not complete
        f = tmp_path / f"model-{tid}.keras"
        f.write_text("weights")
        files.append(f)
        keeper.offer(tid, str(f), metric)
    w.flush()
    assert [f.exists() for f in files] == [False, True, False, True, False]
    with eng.connect() as c:
        rows = c.execute(text("SELECT trial_id, path, metric FROM models ORDER BY metric")).all()
    assert [(r[0], r[2]) for r in rows] == [(ids[1], 1.0), (ids[3], 2.0)]
    assert [r[1] for r in rows] == [str(files[1]), str(files[3])]


def test_keep_zero_keeps_nothing(tmp_path):
    eng = store.init_db(f"sqlite:///{tmp_path / 'm.db'}")
    w = store.Writer(eng)
    exp = w.create_experiment(name="m", pilot="bench", algorithm="random")
    (tid,) = w.add_trials(exp, [{"x": 1}], 0.0)
    f = tmp_path / "model.keras"
    f.write_text("weights")
    ModelKeeper(w, keep=0).offer(tid, str(f), 0.5)
    w.flush()
    assert not f.exists()
    with eng.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM models")).scalar() == 0
