"""A store that cannot be opened is reported before anything starts: one paragraph naming DB,
the URL (password hidden) and the fix, exit status 2 within 15 s, no run directory, no hang.
Also: the farm itself, given such a store, ends every rank (rank 0 aborts the job) instead of
leaving the workers waiting; and the README's plain `postgresql://` URL runs a real workflow."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emews_py.config import RunConfig
from helpers import ROOT, output, query, run_workflow


def refused(tmp_path: Path, db: str, *args: str, limit: float = 15.0, times: list | None = None) -> str:
    t0 = time.time()
    p = run_workflow(tmp_path / "runs", "--algo", "py_random", "--procs", "2", "--budget", "2",
                     *args, db=db, timeout=60)
    took = time.time() - t0
    if times is not None:
        times.append(took)
    err = p.stderr.strip()
    assert p.returncode == 2, output(p)
    assert took < limit, f"took {took:.1f} s"
    assert len(err.splitlines()) == 1, err          # one paragraph, no traceback
    assert "Traceback" not in output(p) and "mpiexec" not in p.stdout
    assert not any((tmp_path / "runs").glob("*-*")), "a run directory was created"
    return err


@pytest.mark.parametrize("db, fix", [
    ("garbage://x", "DB must be a SQLAlchemy URL"),
    ("not a url", "DB must be a SQLAlchemy URL"),
    ("sqlite:////proc/emews.db", "directory /proc exists and is writable"),
])
def test_unopenable_url_or_path_is_one_paragraph_exit_2(tmp_path, db, fix):
    err = refused(tmp_path, db)
    assert f"DB={db}" in err and fix in err


def test_sqlite_path_under_a_file_names_the_directory(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    db = f"sqlite:///{tmp_path / 'afile' / 'emews.db'}"
    err = refused(tmp_path, db)
    assert f"DB={db}" in err and f"directory {tmp_path / 'afile'} exists" in err


def test_refused_postgresql_connection_hides_the_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed again below: nothing listens there
    err = refused(tmp_path, f"postgresql://me:s3cret@127.0.0.1:{port}/hpo")
    assert "s3cret" not in err
    assert f"DB=postgresql://me:***@127.0.0.1:{port}/hpo" in err
    assert f"127.0.0.1:{port} is running and reachable" in err


def test_postgresql_server_that_never_answers_times_out_within_15s(tmp_path):
    """A host that accepts TCP but never speaks (a hung server, a firewall that swallows packets):
    the connect timeout (10 s) ends the wait. Timed against a refused connection in the same
    test (the command's own start-up, which a loaded machine stretches, and by a second or so
    more in one run than in the other: 9.0 s more was seen in CI): 7 to 13 s more."""
    times: list = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused(tmp_path / "base", f"postgresql://me@127.0.0.1:{closed}/hpo", limit=60, times=times)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)                 # the kernel accepts connections; nobody ever answers
        port = s.getsockname()[1]
        err = refused(tmp_path, f"postgresql://me@127.0.0.1:{port}/hpo", limit=60, times=times)
    assert f"DB=postgresql://me@127.0.0.1:{port}/hpo" in err and "time out after 10 s" in err
    assert 7 < times[1] - times[0] < 13, f"{times[1]:.1f} s against {times[0]:.1f} s refused"


def test_exp_longer_than_the_column_is_refused(tmp_path):
    err = refused(tmp_path, f"sqlite:///{tmp_path / 'emews.db'}", "--exp", "e" * 201)
    assert "EXP=" in err and "201 characters" in err and "at most 200" in err


def test_farm_rank0_failing_to_open_the_store_ends_every_rank(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    db = "sqlite:////proc/emews-farm.db"
    cfg = RunConfig(exp="noopen", pilot="bench", algo="py_random",
                    algo_file=str(ROOT / "py_algorithms" / "py_random.py"), db=db,
                    run_dir=str(run_dir), endpoint=f"ipc://{tmp_path}/e.sock",
                    settings={"max.budget": 2})
    cfg.write(run_dir / "config.json")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    t0 = time.time()
    p = subprocess.run([str(mpiexec), "-n", "3", sys.executable, "-m", "emews_py.farm",
                        str(run_dir / "config.json")], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert time.time() - t0 < 30
    assert p.returncode != 0
    assert f"DB={db}" in p.stderr and "the driver could not start the experiment" in p.stderr


def test_plain_postgresql_url_runs_a_workflow(tmp_path, postgres_url):
    from pg_server import new_database
    url = new_database(postgres_url).replace("postgresql+psycopg2://", "postgresql://")
    p = run_workflow(tmp_path, "--algo", "py_random", "--procs", "2", "--budget", "4",
                     db=url, timeout=180)
    assert p.returncode == 0, output(p)
    exp = query(tmp_path, "SELECT status FROM experiments", db=url)
    assert [e["status"] for e in exp] == ["completed"]
    assert query(tmp_path, "SELECT COUNT(*) AS n FROM trials WHERE status = 'completed'",
                 db=url)[0]["n"] == 4
