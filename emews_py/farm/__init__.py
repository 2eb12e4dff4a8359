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

import signal
import sys


STOP_SIGNALS: list[int] = []   # SIGTERM/SIGINT received before the driver's loop runs


def _remember(signum, _frame) -> None:
    STOP_SIGNALS.append(signum)


def main(argv: list[str] | None = None) -> int:
    # First thing: SIGTERM/SIGINT reach every rank at once (the batch system, hydra's mpiexec, a
    # Ctrl-C). A rank killed by one ends the MPI job before the driver records anything, so no
    # rank dies of them: the driver notes them and stops cleanly, the workers wait for its STOP.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)
    from mpi4py import MPI

    from emews_py.config import ConfigError, RunConfig
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: mpiexec -n PROCS python -m emews_py.farm RUN_DIR/config.json "
                         "(written by `emews workflow`)\n")
        return 2
    comm = MPI.COMM_WORLD
    try:
        cfg = RunConfig.read(args[0])
    except ConfigError as e:
        import socket
        # Across hosts, the likely cause is a host that does not see the run directory. Abort:
        # the other ranks would wait for this one forever.
        sys.stderr.write(f"[emews] rank {comm.Get_rank()} on host {socket.gethostname()}: {e} "
                         f"In a job across hosts every host must see the run directory at the "
                         f"same path: put the runs directory (--runs, EMEWS_RUNS) on a file "
                         f"system they share.\n")
        sys.stderr.flush()
        if comm.Get_size() > 1:
            comm.Abort(2)
        return 2
    if comm.Get_size() < 2:
        sys.stderr.write("[emews] the farm needs at least 2 MPI ranks (a driver and a worker); "
                         "set PROCS to 2 or more.\n")
        return 2
    if comm.Get_rank() == 0:
        from emews_py.farm.driver import Driver, StartError
        try:
            driver = Driver(comm, cfg)  # opens the store and records the experiment
        except BaseException as e:  # noqa: BLE001 - whatever it is, the workers must not wait forever
            from emews_py.store.engine import open_error
            why = (str(e) if isinstance(e, StartError) else open_error(cfg.db, e)
                   or f"{type(e).__name__}: {' '.join(str(e).split())}")
            sys.stderr.write(f"[emews] ERROR: the driver could not start the experiment: {why}\n")
            sys.stderr.flush()
            comm.Abort(2)  # ends every rank (the workers are waiting for the driver)
        rc = driver.run()
        # Python restores the default handlers while it shuts down: a late SIGTERM would kill
        # rank 0 inside MPI_Finalize and hydra would report a crash of a run that ended well.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return rc
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from emews_py.farm.worker import Worker
    Worker(comm, cfg).serve()
    return 0
