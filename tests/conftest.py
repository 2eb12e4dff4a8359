"""Shared pytest fixtures."""
from __future__ import annotations

import pytest


# ---- PostgreSQL (tests/pg_server.py) --------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url():
    """A SQLAlchemy URL for a fresh database on a real, throwaway PostgreSQL server (127.0.0.1,
    a free port, trust auth for loopback), stopped and deleted after the session. Missing
    binaries are a test failure that says to run `make setup`, never a silent skip."""
    from pg_server import PostgresServer, PostgresUnavailable
    why = None
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as e:
        why = str(e)
    if why:
        pytest.fail(f"cannot start a PostgreSQL server for the store tests: {why}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


# ---- pilots' data caches --------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(request, tmp_path_factory):
    """A fresh data cache for the pilot named by the test module's ``PILOT``: EMEWS_DATA_CACHE
    points at it and the pilot's own data-dir variable is unset, so its default data set is
    prepared there (once per module). Yields the pilot's folder in that cache."""
    pilot = request.module.PILOT
    d = tmp_path_factory.mktemp(f"{pilot}_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("EMEWS_DATA_CACHE", str(d))
    mp.delenv(f"EMEWS_{pilot.upper()}_DATA_DIR", raising=False)
    yield d / pilot
    mp.undo()
