# tests/r/run.R -- runs the testthat files tests/r/test-*.R (tests/test_r.py calls it):
#   EQ_HOME=/path/to/repo Rscript tests/r/run.R RESULTS.json [FILTER]
# FILTER is a regular expression on the file names without "test-" and ".R" (testthat's filter).
# Writes one JSON record per test (file, test, expectations, failed, error, skipped, seconds,
# messages of the failures) and exits with status 1 when any expectation failed or any test
# raised an error, so a plain `Rscript tests/r/run.R out.json` can gate a build as well.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1L) stop("usage: Rscript tests/r/run.R RESULTS.json [FILTER]", call. = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
if (!nzchar(Sys.getenv("EQ_HOME"))) Sys.setenv(EQ_HOME = normalizePath(file.path(here, "..", "..")))
filter <- if (length(args) >= 2L && nzchar(args[2])) args[2] else NULL

res <- testthat::test_dir(here, filter = filter, stop_on_failure = FALSE, load_package = "none",
                          reporter = testthat::SummaryReporter$new(show_praise = FALSE))
bad <- function(e) inherits(e, "expectation_failure") || inherits(e, "expectation_error")
recs <- lapply(res, function(t) {
  list(file = t$file, test = t$test, expectations = length(t$results),
       failed = sum(vapply(t$results, bad, TRUE)),
       error = any(vapply(t$results, function(e) inherits(e, "expectation_error"), TRUE)),
       skipped = any(vapply(t$results, function(e) inherits(e, "expectation_skip"), TRUE)),
       seconds = t$real,
       messages = I(vapply(Filter(bad, t$results), conditionMessage, "")))
})
writeLines(jsonlite::toJSON(recs, auto_unbox = TRUE, digits = NA), args[1])
quit(status = if (any(vapply(recs, function(r) r$failed > 0L, TRUE))) 1L else 0L, save = "no")
