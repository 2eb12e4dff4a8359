# Shared by the testthat files of tests/r (testthat sources helper-*.R before them).
# EQ_HOME is the repository root (tests/r/run.R and tests/test_r.py set it). The EQ helpers, the
# simulated farm and the parts of mlrMBO.R are sourced into the global environment, where the
# runtime puts them too.
EQ_HOME <- normalizePath(Sys.getenv("EQ_HOME", file.path("..", "..")))
assign("EQ_HOME", EQ_HOME, envir = globalenv())
for (f in c("sim.R", "EQ.R", "space.R")) source(file.path(EQ_HOME, "eq", "R", f), local = globalenv())
local({
  op <- options(mlrMBO.source.only = TRUE)
  on.exit(options(op))
  source(file.path(EQ_HOME, "r_algorithms", "mlrMBO.R"), local = globalenv())
})

# An error whose message matches `pattern` and is one paragraph (no line breaks); returns it.
expect_error_paragraph <- function(expr, pattern) {
  msg <- tryCatch({ force(expr); NULL }, error = function(e) conditionMessage(e))
  expect_false(is.null(msg), info = paste0("no error raised; expected /", pattern, "/"))
  expect_match(msg, pattern)
  expect_false(grepl("\n", msg), info = paste("error message is not one paragraph:", msg))
  invisible(msg)
}
# the message of the error expr raises ("no error" if none)
error_of <- function(expr) tryCatch({ force(expr); "no error" }, error = function(e) conditionMessage(e))

tmp_space <- function(text) { f <- tempfile(fileext = ".R"); writeLines(text, f); f }
space <- function(name) file.path(EQ_HOME, "workflows", name)

# Small focus-search settings keep the runs fast; the search-quality benchmark is
# benchmarks/optimizer_quality.py.
FAST <- "verbose = FALSE, fs.points = 150, fs.maxit = 3, fs.restarts = 2, num.trees = 30"
mbo <- function(settings, ...) suppressMessages(fake_eq_run(file.path(EQ_HOME, "r_algorithms", "mlrMBO.R"),
                                                            paste(settings, FAST, sep = ", "), ...))
params_df <- function(h) do.call(rbind, lapply(fake_eq_trials(h)$params, function(p) as.data.frame(p, optional = TRUE)))
branin <- function(mode, budget = 24, extra = "") sprintf(
  "max.budget = %d, design.size = 8, propose.points = 4, workers = 4, seed = 3, mode = '%s', param.set.file = '%s'%s",
  budget, mode, space("bench_branin.R"), extra)

# An optimization state for unit tests: the space, settings (a list), and optionally evaluated
# points X (untransformed data.frame) with objectives y.
mbo_test_state <- function(ps, settings = list(), X = NULL, y = NULL) {
  ctl <- mbo_settings(modifyList(list(param.set.file = "unused.R", verbose = FALSE), settings))
  S <- mbo_new_state(ctl, ps)
  if (!is.null(X)) {
    mbo_add(S, X)
    S$y <- as.numeric(y); S$status[] <- "completed"
  }
  S
}
branin_ps <- function() eq_space_load(space("bench_branin.R"))
