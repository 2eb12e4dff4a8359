# r_algorithms/mbo/design.R: the initial design's size (default, cap, preset, checks) and points.

test_that("default size: 4 d, capped at half the budget unless design.cap = FALSE (the preset)", {
  ctl <- function(...) mbo_settings(list(param.set.file = "x.R", ...))
  expect_equal(mbo_design_size(ctl(max.budget = 100), d = 2, maxlev = 1), 8)
  expect_equal(mbo_design_size(ctl(max.budget = 12), d = 2, maxlev = 1), 6)       # half of 12
  expect_equal(mbo_design_size(ctl(max.budget = 12, preset = "mlrMBO"), d = 2, maxlev = 1), 8)
  expect_equal(mbo_design_size(ctl(max.budget = 6, preset = "mlrMBO"), d = 2, maxlev = 1), 6)  # at most the budget
  expect_equal(mbo_design_size(ctl(max.budget = 12, design.cap = FALSE), d = 2, maxlev = 1), 8)
  # never below the largest number of discrete values
  expect_equal(mbo_design_size(ctl(max.budget = 8), d = 2, maxlev = 6), 6)
  expect_equal(mbo_design_size(ctl(max.budget = 100, design.size = 5), d = 2, maxlev = 1), 5)
})

test_that("bad design sizes are refused in one paragraph", {
  ctl <- function(...) mbo_settings(list(param.set.file = "x.R", ...))
  expect_error_paragraph(mbo_design_size(ctl(max.budget = 10, design.size = 20), 2, 1),
                         "design.size \\(20\\) is larger than max.budget \\(10\\)")
  expect_error_paragraph(mbo_design_size(ctl(max.budget = 10, design.size = 3), 2, 4),
                         "design.size \\(3\\) is smaller than the number of values of a discrete parameter \\(4\\)")
  expect_error_paragraph(mbo_design_size(ctl(max.budget = 10, design.size = 0), 2, 1),
                         "design.size must be a positive integer")
})

test_that("design.size > max.budget fails before any trial", {
  m <- error_of(mbo(branin("batch", 10, ", design.size = 20")))
  expect_true(grepl("design.size \\(20\\) is larger than max.budget \\(10\\)", m), info = m)
  expect_length(fake_eq_last()$trials, 0L)
})

test_that("the design is distinct and holds every discrete value", {
  set.seed(4)
  ps <- makeParamSet(makeIntegerParam("n", 1, 3), makeDiscreteParam("c", values = c("a", "b", "c", "d", "e")))
  S <- mbo_test_state(ps)
  X <- mbo_design(S, 6L)
  expect_setequal(X$c, c("a", "b", "c", "d", "e"))
  expect_equal(nrow(unique(X)), 6L)
})

test_that("every discrete value in the design, trafo reaches the pilot", {
  obj <- function(p) (log2(p$batch_size) - 7)^2 + (log10(p$learning_rate) + 3)^2 + p$dropout +
    (p$activation != "relu") + (p$dense != 128) + p$batch_normalization
  h <- mbo(sprintf("max.budget = 16, design.size = 4, propose.points = 4, workers = 4, seed = 2, mode = 'batch', param.set.file = '%s'",
                   space("candle_example_space.R")), objective = obj, workers = 4)
  P <- lapply(fake_eq_trials(h)$params, identity)
  d <- P[1:4]
  expect_setequal(vapply(d, `[[`, "", "activation"), c("relu", "elu", "sigmoid", "tanh"))
  expect_setequal(vapply(d, `[[`, "", "optimizer"), c("adam", "sgd", "rmsprop"))
  expect_setequal(vapply(d, function(p) p$dense, 0), c(64, 128, 256, 512))    # dense values as numbers
  expect_setequal(vapply(d, `[[`, TRUE, "batch_normalization"), c(TRUE, FALSE))
  bs <- vapply(P, function(p) p$batch_size, 0)
  expect_true(all(bs %in% 2^(5:10)) && all(vapply(P, function(p) is.integer(p$batch_size), TRUE)),
              info = paste("batch_size must be integer powers of two:", paste(bs, collapse = " ")))
  lr <- vapply(P, function(p) p$learning_rate, 0)
  expect_true(all(lr >= 1e-5 & lr <= 0.1), info = "learning_rate transformed")
  msg <- h$messages[grepl('^\\{"eq":"batch"', h$messages)][1]
  expect_true(grepl('"batch_size":[0-9]+,', msg) && grepl('"dense":[0-9]+,', msg),
              info = paste("integers/numbers unquoted in JSON:", substr(msg, 1, 200)))
})
