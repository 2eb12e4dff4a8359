# eq/R/runner.R -- how the runtime runs an R optimizer in the embedded R of the optimizer
# process (emews_py/rbridge.py sources this file; eq/R/sim.R-based runs use it too).
#
#   eq_bind_transport(put, get)  defines the EMEWS globals OUT_put(string) / IN_get() on top of
#                                two bridge functions that return c(status, value)
#   eq_run_optimizer(file)       parses and runs the optimizer script; "" on success, else one
#                                error text with the R call stack

# The bridge functions (Python, through rpy2) never raise into R: an exception there would only
# be logged by rpy2 and turn into NULL. They return c("ok", value) or c("error", message) and the
# wrappers below turn an error into stop().
eq_bind_transport <- function(put, get, envir = globalenv()) {
  assign("OUT_put", function(string_params) {
    r <- put(paste(as.character(string_params), collapse = ""))
    if (r[1] != "ok") stop(r[2], call. = FALSE)
    invisible(NULL)
  }, envir = envir)
  assign("IN_get", function() {
    r <- get()
    if (r[1] != "ok") stop(r[2], call. = FALSE)
    r[2]
  }, envir = envir)
  invisible(NULL)
}

# Parse first so a syntax error names the file and line, then evaluate under a calling handler
# that records the R call stack (R's own traceback() is empty outside the top level).
eq_run_optimizer <- function(file) {
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
                   "doTryCatch", "eval", ".handleSimpleError", "h", "FUN", "lapply",
                   "eq_run_optimizer")) &&
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
