"""The optimizer process: one per experiment, started by rank 0.

``python -m emews_py.optimizer ENDPOINT ALGO_FILE`` connects to the driver over ZeroMQ and runs
the algorithm: an R file embedded through rpy2 (R globals ``OUT_put``/``IN_get``, all R calls on
this process's main thread, since rpy2 is not thread-safe) or a Python file with ``run()`` that
does ``import eqpy``. Any error is sent to the driver with its traceback before a non-zero exit;
a crash that kills this process (R segfaults on deep recursion) is seen by the driver as a dead
child. Either way the run ends with a clear error, never a hang.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from emews_py import eq

REPO_ROOT = Path(__file__).resolve().parent.parent
EQ_DIR = REPO_ROOT / "eq"

# R side: parse first so a syntax error names the file and line, then source with a calling
# handler that records the R call stack (R's own traceback() is empty outside the top level).
R_RUNNER = r"""
function(file) {
  exprs <- tryCatch(parse(file = file, keep.source = TRUE), error = function(e) e)
  if (inherits(exprs, "error"))
    return(paste0("R could not parse the optimizer script ", file, ": ", conditionMessage(exprs),
                  "\nFix the syntax error at the line shown and run again."))
  tb <- NULL
  res <- tryCatch(withCallingHandlers({
      for (ex in exprs) eval(ex, envir = globalenv())
      NULL
    }, error = function(e) {
      calls <- sys.calls()
      keep <- vapply(calls, function(cl) {
        f <- deparse(cl[[1]], nlines = 1)[1]
        !(f %in% c("withCallingHandlers", "tryCatch", "tryCatchList", "tryCatchOne",
                   "doTryCatch", "eval", ".handleSimpleError", "h", "FUN", "lapply")) &&
          !startsWith(f, "function(")
      }, logical(1))
      tb <<- vapply(calls[keep], function(cl) paste(deparse(cl, nlines = 1)[1], collapse = ""),
                    character(1))
    }), error = function(e) e)
  if (inherits(res, "error")) {
    msg <- paste0("Error in R optimizer ", file, ": ", conditionMessage(res))
    if (length(tb)) msg <- paste0(msg, "\nR traceback (innermost last):\n",
                                  paste0("  ", seq_along(tb), ": ", tb, collapse = "\n"))
    return(msg)
  }
  ""
}
"""


def run_r(client: eq.EQClient, algo: Path) -> str:
    """Run an R optimizer; returns an error text ('' on success)."""
    import rpy2.rinterface as ri
    import rpy2.robjects as ro

    aborted: list[str] = []

    # rpy2 logs a Python exception raised in an rternalized function and returns NULL to R, so
    # the Python side never raises: it returns c(status, value) and the R wrapper calls stop().
    @ri.rternalize
    def py_put(s):
        try:
            client.OUT_put(str(s[0]) if len(s) else "")
            return ri.StrSexpVector(["ok", ""])
        except Exception as e:  # noqa: BLE001
            return ri.StrSexpVector(["error", f"OUT_put failed: {e}"])

    @ri.rternalize
    def py_get():
        try:
            return ri.StrSexpVector(["ok", client.IN_get()])
        except eq.EQAbort as e:
            aborted.append(str(e))
            return ri.StrSexpVector(["error", str(e)])
        except Exception as e:  # noqa: BLE001
            return ri.StrSexpVector(["error", f"IN_get failed: {e}"])

    ro.globalenv[".eq_py_put"] = py_put
    ro.globalenv[".eq_py_get"] = py_get
    ro.r("""
      OUT_put <- function(string_params) {
        r <- .eq_py_put(paste(as.character(string_params), collapse = ""))
        if (r[1] != "ok") stop(r[2], call. = FALSE)
        invisible(NULL)
      }
      IN_get <- function() {
        r <- .eq_py_get()
        if (r[1] != "ok") stop(r[2], call. = FALSE)
        r[2]
      }""")
    ro.globalenv["EQ_HOME"] = str(REPO_ROOT)
    for helper in ("EQ.R", "space.R"):
        f = EQ_DIR / "R" / helper
        if f.is_file():
            ro.r["source"](str(f))
    err = str(ro.r(R_RUNNER)(str(algo))[0])
    if aborted:
        raise eq.EQAbort(aborted[0])
    return err


def run_py(algo: Path) -> None:
    sys.path.insert(0, str(EQ_DIR))  # `import eqpy` as in EMEWS
    spec = importlib.util.spec_from_file_location(f"emews_algorithm_{algo.stem}", algo)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "run", None)):
        raise RuntimeError(f"Python optimizer {algo} defines no run() function; an EQ/Py algorithm "
                           f"is a module whose run() does `import eqpy` and calls eqpy.OUT_put / "
                           f"eqpy.IN_get. Add `def run(): ...` to the file.")
    mod.run()


def main(argv: list[str] | None = None) -> int:
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
