"""The MPI task farm: ``mpiexec -n PROCS python -m emews_py.farm RUN_DIR/config.json``.

Rank 0 is the driver (``driver.py``, which only wires the parts together); ranks 1..N-1 are
workers (``worker.py``). The parts, each readable and testable alone:

- ``scheduler.py``  pure: queue, chunks in flight per worker, chunk sizing, watchdog verdicts
- ``protocol.py``   pure: the EQ protocol as a state machine (message in, actions out)
- ``transport.py``  MPI only: tags, back-off, probe/receive, non-blocking sends
- ``supervisor.py`` the optimizer child process (start, echo its log, notice its death, stop)
- ``models.py``     model retention (best K model files)
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI

    from emews_py.config import ConfigError, RunConfig
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: mpiexec -n PROCS python -m emews_py.farm RUN_DIR/config.json "
                         "(written by `emews workflow`)\n")
        return 2
    try:
        cfg = RunConfig.read(args[0])
    except ConfigError as e:
        sys.stderr.write(f"[emews] {e}\n")
        return 2
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        sys.stderr.write("[emews] the farm needs at least 2 MPI ranks (a driver and a worker); "
                         "set PROCS to 2 or more.\n")
        return 2
    if comm.Get_rank() == 0:
        from emews_py.farm.driver import Driver
        try:
            driver = Driver(comm, cfg)  # opens the store and records the experiment
        except Exception as e:  # noqa: BLE001 - whatever it is, the workers must not wait forever
            from emews_py.store.engine import open_error
            why = open_error(cfg.db, e) or f"{type(e).__name__}: {' '.join(str(e).split())}"
            sys.stderr.write(f"[emews] ERROR: the driver could not start the experiment: {why}\n")
            sys.stderr.flush()
            comm.Abort(2)  # ends every rank (the workers are waiting for the driver)
        return driver.run()
    from emews_py.farm.worker import Worker
    Worker(comm, cfg).serve()
    return 0
