# r_algorithms/mbo/settings.R: defaults, checks, presets, and the refusal of unknown names.

base <- list(param.set.file = "space.R")

test_that("a typo'd setting is refused in one paragraph that suggests the known name", {
  m <- expect_error_paragraph(mbo_settings(c(base, propose.point = 8)),
                              "unknown setting 'propose.point' \\(did you mean 'propose.points'\\?\\)")
  # the paragraph lists every known setting
  for (n in MBO_SETTINGS) expect_match(m, n, fixed = TRUE)
  expect_error_paragraph(mbo_settings(c(base, desing.size = 8)), "'desing.size' \\(did you mean 'design.size'\\?\\)")
  expect_error_paragraph(mbo_settings(c(base, fs.point = 8)), "did you mean 'fs.points'")
})

test_that("an unknown name with nothing close is refused without a suggestion; all bad names are named", {
  m <- expect_error_paragraph(mbo_settings(c(base, no.such.setting = 1)), "unknown setting 'no.such.setting'\\. ")
  expect_false(grepl("did you mean", m))
  m <- expect_error_paragraph(mbo_settings(c(base, list(8), mdoe = "batch", no.such.setting = 1)), "unknown settings ")
  expect_match(m, "a value without a name", fixed = TRUE)
  expect_match(m, "'mdoe' (did you mean 'mode'?)", fixed = TRUE)
  expect_match(m, "'no.such.setting'", fixed = TRUE)
})

test_that("the settings every workflow sends are accepted", {
  # what emews_py/cli.py prepare() puts into the settings, plus names meant for the farm
  ctl <- mbo_settings(list(max.budget = 20, workers = 3, seed = 123, param.set.file = "/x/space.R",
                           space = "{}", impute = 1e9, keep.models = 3))
  expect_equal(ctl$max.budget, 20L)
  expect_equal(ctl$workers, 3)
  expect_equal(ctl$seed, 123)
})

test_that("every setting in the control list is a known name, documented once in settings.R", {
  ctl <- mbo_settings(base)
  expect_setequal(names(ctl), MBO_SETTINGS)
  doc <- readLines(file.path(EQ_HOME, "r_algorithms", "mbo", "settings.R"))
  documented <- sub("^#   ([a-z.]+) .*$", "\\1", grep("^#   [a-z.]+ ", doc, value = TRUE))
  expect_setequal(documented, MBO_SETTINGS)
})

test_that("defaults are the current ones (the extras on)", {
  ctl <- mbo_settings(base)
  expect_null(ctl$preset)
  expect_equal(ctl$local.points, 1000L)
  expect_equal(ctl$y.trafo, "auto")
  expect_true(ctl$design.cap)
  expect_equal(ctl$batch.dist, 0.05)
  expect_equal(ctl$select, "pool")
  expect_equal(ctl$mode, "stream")
  expect_equal(c(ctl$fs.points, ctl$fs.maxit, ctl$fs.restarts), c(1000L, 5L, 3L))
  expect_equal(mbo_settings(c(base, log.y = TRUE))$y.trafo, "log")
})

test_that("preset = 'mlrMBO' switches the extras off; explicit settings still win", {
  ctl <- mbo_settings(c(base, preset = "mlrMBO"))
  expect_equal(ctl$preset, "mlrMBO")
  expect_equal(ctl$local.points, 0L)
  expect_equal(ctl$y.trafo, "none")
  expect_false(ctl$design.cap)
  expect_equal(ctl$batch.dist, 0)
  expect_equal(ctl$select, "lambda")
  expect_equal(ctl$surrogate, "ranger")   # CANDLE's behaviour: the forest (the default is "auto")
  expect_equal(ctl$infill, "cb")          # and qLCB for every round, a single point too
  # everything else as without the preset
  keep <- setdiff(MBO_SETTINGS, c("preset", "local.points", "y.trafo", "design.cap", "batch.dist", "select",
                                  "surrogate", "infill"))
  expect_equal(ctl[keep], mbo_settings(base)[keep])
  ctl <- mbo_settings(c(base, preset = "mlrMBO", batch.dist = 0.05, y.trafo = "slog"))
  expect_equal(ctl$batch.dist, 0.05)
  expect_equal(ctl$y.trafo, "slog")
  expect_equal(ctl$local.points, 0L)
  expect_equal(mbo_settings(c(base, preset = "mlrMBO", log.y = TRUE))$y.trafo, "log")
  expect_error_paragraph(mbo_settings(c(base, preset = "candle")), "preset = 'candle' is not known; use preset = 'mlrMBO'")
})

test_that("bad values are refused in one paragraph", {
  expect_error_paragraph(mbo_settings(list(max.budget = 10)), "no param.set.file in the settings")
  expect_error_paragraph(mbo_settings(c(base, mode = "async")), "mode = 'async' is not supported")
  expect_error_paragraph(mbo_settings(c(base, max.budget = 0)), "max.budget must be a positive number")
  expect_error_paragraph(mbo_settings(c(base, surrogate = "km")), "surrogate = 'km' is not supported")
  expect_error_paragraph(mbo_settings(c(base, lambda = -1)), "lambda must be 'exp' or a non-negative number")
  expect_error_paragraph(mbo_settings(c(base, impute.y = "mean")), "impute.y must be 'worst', 'median' or a number")
  expect_error_paragraph(mbo_settings(c(base, select = "best")), "select = 'best' is not supported")
})

test_that("through the simulated farm: a typo fails before any trial; no param.set.file is named", {
  m <- error_of(mbo(paste(branin("batch", 16), ", propose.point = 8")))
  expect_match(m, "unknown setting 'propose.point' (did you mean 'propose.points'?)", fixed = TRUE)
  expect_length(fake_eq_last()$trials, 0L)
  m <- error_of(mbo("max.budget = 10, mode = 'batch'"))
  expect_true(grepl("no param.set.file", m), info = m)
})
