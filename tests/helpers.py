"""Shared test helpers: run `emews workflow` as a user would, and read the store with SQL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
EMEWS = str(Path(sys.executable).parent / "emews")


def run_workflow(runs: Path, *args: str, env: dict | None = None, timeout: float = 180,
                 db: str | None = None) -> subprocess.CompletedProcess:
    cmd = [EMEWS, "workflow", "--runs", str(runs), *args]
    if db:
        cmd += ["--db", db]
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=e)


def query(runs: Path, sql: str, db: str | None = None, **params) -> list[dict]:
    eng = create_engine(db or f"sqlite:///{runs / 'emews.db'}")
    with eng.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(text(sql), params)]
    eng.dispose()
    return rows


def algorithm(tmp_path: Path, name: str, text: str) -> dict:
    """Write optimizer ``name`` (e.g. "greedy.R") into tmp_path/algos; returns the environment
    that makes ``--algo <stem>`` find it."""
    d = tmp_path / "algos"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return {"EMEWS_ALGORITHM_PATH": str(d)}


def json_space(path: Path, params: list[dict]) -> Path:
    path.write_text(json.dumps({"params": params}))
    return path


def output(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr
