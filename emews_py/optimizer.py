"""The optimizer process: one per experiment, started by rank 0.

``python -m emews_py.optimizer ENDPOINT ALGO_FILE`` connects to the driver over ZeroMQ and runs
the algorithm: an R file embedded through rpy2 (emews_py/rbridge.py; R globals ``OUT_put``/
``IN_get``, all R calls on this process's main thread, since rpy2 is not thread-safe) or a Python
file with ``run()`` that does ``import eqpy``. Any error is sent to the driver with its traceback
before a non-zero exit; a crash that kills this process (R segfaults on deep recursion) is seen
by the driver as a dead child. Either way the run ends with a clear error, never a hang.
"""
from __future__ import annotations

import importlib.util
import signal
import sys
import traceback
from pathlib import Path

from emews_py import eq, rbridge


def run_r(client: eq.EQClient, algo: Path) -> str:
    """Run an R optimizer; returns an error text ('' on success). EQAbort propagates."""
    return rbridge.run_r_optimizer(algo, client.OUT_put, client.IN_get, stop=(eq.EQAbort,))


def load_py(algo: Path):
    """The Python optimizer module; it must define run()."""
    spec = importlib.util.spec_from_file_location(f"emews_algorithm_{algo.stem}", algo)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "run", None)):
        raise RuntimeError(f"Python optimizer {algo} defines no run() function; an EQ/Py algorithm "
                           f"is a module whose run() does `import eqpy` and calls eqpy.OUT_put / "
                           f"eqpy.IN_get. Add `def run(): ...` to the file.")
    return mod


def run_py(algo: Path) -> None:
    load_py(algo).run()


def main(argv: list[str] | None = None) -> int:
    # The driver stops the optimizer (abort, then kill) when the job is interrupted; a Ctrl-C
    # or SIGTERM to the process group must not print a traceback from inside R or the script.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    endpoint, algo = (argv or sys.argv[1:])[:2]
    algo = Path(algo)
    client = eq.connect(endpoint)
    try:
        if algo.suffix == ".R":
            err = run_r(client, algo)
        else:
            run_py(algo)
            err = ""
    except eq.EQAbort as e:
        sys.stderr.write(f"{e}\n")
        return 3
    except BaseException:  # noqa: BLE001 - report everything, including SystemExit from the script
        err = f"Error in Python optimizer {algo}:\n{traceback.format_exc()}"
    if err:
        sys.stderr.write(err + "\n")
        client.error(err)
        client.close()
        return 1
    client.bye()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
