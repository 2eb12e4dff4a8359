# r_algorithms/mbo/focus_search.R: box shrinking, local candidates, and the lock-step focus
# search with its prediction budget.

test_that("a box shrinks around x: numeric range halved, integers rounded outwards, one level dropped", {
  set.seed(2)
  ps <- makeParamSet(makeNumericParam("x", 0, 8), makeIntegerParam("n", 1, 10),
                     makeDiscreteParam("c", values = c("a", "b", "c")))
  info <- mbo_info(ps)
  box <- mbo_shrink(info, mbo_full_box(info), data.frame(x = 1, n = 5, c = "b", stringsAsFactors = FALSE))
  expect_equal(c(box[[1]]$lower, box[[1]]$upper), c(0, 3))             # [1 - 2, 1 + 2] within [0, 8]
  expect_equal(c(box[[2]]$lower, box[[2]]$upper), c(2, 8))             # [2.75, 7.25] rounded outwards
  expect_length(box[[3]]$levels, 2L)
  expect_true("b" %in% box[[3]]$levels)
})

test_that("local candidates perturb the best points, stay in bounds, and are off with local.points = 0", {
  set.seed(3)
  X <- data.frame(x1 = c(-5, 3, 9, 0, 1, 2), x2 = c(0, 2, 14, 5, 6, 7))
  y <- c(50, 1, 40, 30, 20, 10)
  S <- mbo_test_state(branin_ps(), list(local.top = 1), X, y)
  L <- mbo_local(S, 500L)
  expect_equal(nrow(L), 500L)
  expect_true(all(L$x1 >= -5 & L$x1 <= 10 & L$x2 >= 0 & L$x2 <= 15))
  expect_lt(median(abs(L$x1 - 3)), 1.5)                                # around the best point (3, 2)
  expect_lt(median(abs(L$x2 - 2)), 1.5)
  expect_null(mbo_local(S, 0L))
  expect_equal(mbo_test_state(branin_ps(), list(preset = "mlrMBO"))$ctl$local.points, 0L)
})

test_that("focus search returns scored candidates within the prediction budget", {
  set.seed(5)
  ps <- branin_ps()
  X <- mbo_sample(mbo_info(ps), mbo_full_box(mbo_info(ps)), 30L)
  S <- mbo_test_state(ps, list(fs.points = 200, fs.maxit = 4, fs.restarts = 2, fs.budget = 5000, local.points = 100),
                      X, fake_eq_branin(X$x1, X$x2))
  model <- mbo_fit(S)
  npred <- 0L
  pred <- function(Z) { npred <<- npred + nrow(Z); mbo_predict(model, mbo_features(S, Z)) }
  cand <- mbo_focus_search(S, model, rexp(8), S$N, pred)
  expect_gt(nrow(cand$X), 0L)
  expect_equal(length(cand$mean), nrow(cand$X))
  expect_equal(length(cand$se), nrow(cand$X))
  # later rounds share fs.budget - (first round) predictions: q = 8 chains x 2 restarts get 95
  # points each instead of fs.points = 200
  expect_equal(cand$nloc, 95)
  expect_equal(npred, 2 * 200 + 100 + 3 * 8 * 2 * 95)
  expect_lte(npred, 5000 + 100)
  # the candidates are better than the data on average (the search looks where the model is low)
  expect_lt(mean(cand$mean), mean(mbo_targets(S)$y))
})
