# r_algorithms/mbo/gp_mixed.R: the Gaussian process for spaces with integer and discrete
# parameters while data are few (one-hot discretes), when it is used, and a run with it.

mixed_space <- function() eq_space_load(space("bench_mixed.R"))
# the bench pilot's mixed function (workflows/bench_mixed.R): minimum 0 at (0.3, -0.1, 7, "a")
mixed_value <- function(X) (X$x1 - 0.3)^2 + (X$x2 + 0.1)^2 + 0.05 * (X$n - 7)^2 +
  unname(c(a = 0, b = 0.3, c = 0.6, d = 1.0)[X$cat])
mixed_points <- function(n) data.frame(`function` = "mixed", x1 = runif(n, -1, 1), x2 = runif(n, -1, 1),
                                       n = sample(1:20, n, replace = TRUE), cat = sample(c("a", "b", "c", "d"), n, replace = TRUE),
                                       check.names = FALSE, stringsAsFactors = FALSE)

test_that("the encoding: bounds to [0, 1], each discrete value its own column, two values at distance 1", {
  ps <- mixed_space()
  S <- mbo_test_state(ps)
  X <- data.frame(`function` = "mixed", x1 = c(-1, 1, 0), x2 = c(0, 0, 1), n = c(1, 20, 7), cat = c("a", "d", "a"),
                  check.names = FALSE, stringsAsFactors = FALSE)
  M <- mbo_gp_encoder(S$info[S$act])(mbo_features(S, X))
  expect_equal(dim(M), c(3L, 3L + 4L))                       # x1, x2, n, then cat's four values
  expect_equal(M[, 1], c(0, 1, 0.5)); expect_equal(M[, 3], c(0, 1, 6 / 19))
  expect_equal(sum((M[1, 4:7] - M[2, 4:7])^2), 1)            # "a" against "d"
  expect_equal(sum((M[1, 4:7] - M[3, 4:7])^2), 0)
})

test_that("surrogate = 'auto' takes the GP for a mixed space while n < gp.max.n; the forest otherwise", {
  set.seed(4)
  ps <- mixed_space()
  X <- mixed_points(20); y <- mixed_value(X)
  m <- mbo_fit(mbo_test_state(ps, list(), X, y))
  expect_equal(m$kind, "gp")
  expect_false(is.null(m$encode))
  # it fits its training points on the surrogate's scale (y.trafo of the state; the nugget
  # smooths a little)
  S <- mbo_test_state(ps, list(), X, y)
  p <- mbo_predict(m, mbo_features(S, X))
  expect_gt(stats::cor(p$mean, mbo_ytrafo(S$ctl, y)(y)), 0.99)
  expect_equal(mbo_fit(mbo_test_state(ps, list(gp.max.n = 20), X, y))$kind, "ranger")
  expect_equal(mbo_fit(mbo_test_state(ps, list(surrogate = "ranger"), X, y))$kind, "ranger")
  expect_equal(mbo_fit(mbo_test_state(ps, list(preset = "mlrMBO"), X, y))$kind, "ranger")   # CANDLE's
})

test_that("the mixed GP ranks unseen points by their discrete value and integer as the function does", {
  set.seed(5)
  ps <- mixed_space()
  X <- mixed_points(32); y <- mixed_value(X)
  S <- mbo_test_state(ps, list(y.trafo = "none"), X, y)
  m <- mbo_fit(S)
  # the same continuous point under each category: predicted in the function's order a < b < c < d
  Q <- data.frame(`function` = "mixed", x1 = 0.3, x2 = -0.1, n = 7, cat = c("a", "b", "c", "d"),
                  check.names = FALSE, stringsAsFactors = FALSE)
  pq <- mbo_predict(m, mbo_features(S, Q))$mean
  expect_equal(order(pq), 1:4)
  # n = 7 predicted better than n = 1 and n = 20 (the integer's optimum)
  R <- Q[c(1, 1, 1), ]; R$n <- c(1, 7, 20)
  pr <- mbo_predict(m, mbo_features(S, R))$mean
  expect_lt(pr[2], min(pr[c(1, 3)]))
})

test_that("a run on the mixed space proposes valid points, and its model-based points beat the design", {
  for (mode in c("batch", "stream")) {
    h <- mbo(sprintf("max.budget = 32, design.size = 16, propose.points = 4, workers = 4, seed = 2, mode = '%s', param.set.file = '%s'",
                     mode, space("bench_mixed.R")))
    X <- params_df(h)
    y <- fake_eq_trials(h)$objective
    expect_equal(length(y), 32L)
    expect_true(all(X$n == round(X$n) & X$n >= 1 & X$n <= 20), info = mode)
    expect_true(all(X$cat %in% c("a", "b", "c", "d")), info = mode)
    expect_equal(nrow(unique(X)), 32L)
    expect_lt(min(y[17:32]), min(y[1:16]) / 2)   # the model-based points at least halve the design's best
  }
})
