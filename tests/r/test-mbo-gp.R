# r_algorithms/mbo/gp.R: the Gaussian-process surrogate (Matern 5/2, maximum likelihood), when it
# is used instead of the forest, and its settings.

test_that("the GP interpolates its training points, its se is ~0 there and grows away from them", {
  set.seed(2)
  X <- matrix(c(0.05, 0.2, 0.35, 0.5, 0.65, 0.8), ncol = 1)
  f <- function(x) sin(6 * x) + x
  g <- gp_fit(X, f(X[, 1]))
  p <- gp_predict(g, X)
  expect_lt(max(abs(p$mean - f(X[, 1]))), 1e-3 * diff(range(f(X[, 1]))))
  expect_lt(max(p$se), 0.01 * stats::sd(f(X[, 1])))
  # between two points: small error, small se; beyond the data (x = 1): larger se, growing
  q <- gp_predict(g, matrix(c(0.275, 0.9, 1.0), ncol = 1))
  expect_lt(abs(q$mean[1] - f(0.275)), 0.1)
  expect_gt(q$se[1], max(p$se))
  expect_gt(q$se[2], q$se[1])
  expect_gt(q$se[3], q$se[2])
})

test_that("maximum likelihood finds a long length scale for an irrelevant input", {
  set.seed(3)
  X <- matrix(runif(60), ncol = 2)
  y <- sin(5 * X[, 1])                                   # x2 plays no part
  g <- gp_fit(X, y)
  expect_gt(g$l[2], 3 * g$l[1])
  # the analytic gradient agrees with finite differences
  th <- c(log(0.3), log(0.7), log(1.2), log(1e-3))
  z <- (y - mean(y)) / stats::sd(y)
  an <- gp_nll(th, X, z, grad = TRUE)$g
  num <- vapply(seq_along(th), function(k) {
    e <- replace(numeric(4), k, 1e-5)
    (gp_nll(th + e, X, z) - gp_nll(th - e, X, z)) / 2e-5
  }, 0)
  expect_equal(an, num, tolerance = 1e-4)
})

test_that("surrogate = 'auto' takes the GP for numeric spaces while n < gp.max.n, else the forest", {
  set.seed(1)
  ps <- branin_ps()
  X <- data.frame(x1 = runif(12, -5, 10), x2 = runif(12, 0, 15))
  y <- (X$x1 - 2)^2 + X$x2
  S <- mbo_test_state(ps, list(), X, y)
  m <- mbo_fit(S)
  expect_equal(m$kind, "gp")
  # the fit is on the bounds' [0, 1] scale: the model predicts on the parameters' own scale
  p <- mbo_predict(m, mbo_features(S, X))
  expect_equal(p$mean, mbo_ytrafo(S$ctl, y)(y), tolerance = 1e-3)
  expect_equal(mbo_fit(mbo_test_state(ps, list(gp.max.n = 12), X, y))$kind, "ranger")
  expect_equal(mbo_fit(mbo_test_state(ps, list(surrogate = "ranger"), X, y))$kind, "ranger")
  expect_equal(mbo_fit(mbo_test_state(ps, list(preset = "mlrMBO"), X, y))$kind, "ranger")   # CANDLE's
  # an integer or a discrete parameter: under "auto" gp_mixed.R's GP (test-mbo-mixed.R; the
  # forest before issue 11's mixed part); "gp" takes integers
  psi <- makeParamSet(makeNumericParam("a", 0, 1), makeIntegerParam("n", 1L, 20L))
  Xi <- data.frame(a = runif(10), n = sample(1:20, 10))
  expect_false(is.null(mbo_fit(mbo_test_state(psi, list(), Xi, Xi$a + Xi$n))$encode))
  expect_equal(mbo_fit(mbo_test_state(psi, list(surrogate = "gp"), Xi, Xi$a + Xi$n))$kind, "gp")
  psd <- makeParamSet(makeNumericParam("a", 0, 1), makeDiscreteParam("c", values = c("u", "v")))
  expect_false(is.null(mbo_fit(mbo_test_state(psd, list(), data.frame(a = runif(6), c = rep(c("u", "v"), 3)),
                                              1:6))$encode))
  # a one-valued discrete parameter is not searched: Hartmann6's space counts as numeric
  S6 <- mbo_test_state(eq_space_load(space("bench_hartmann6.R")))
  expect_true(mbo_use_gp(S6, 10L))
})

test_that("a GP-driven run finds Branin's valley within a small budget", {
  h <- mbo(branin("batch", 24))
  y <- fake_eq_trials(h)$objective
  expect_equal(length(y), 24L)
  expect_lt(min(y[9:24]), min(y[1:8]))     # the model-based points beat the design
})

test_that("bad GP settings are refused in one paragraph", {
  base <- list(param.set.file = "x.R")
  expect_error_paragraph(mbo_settings(c(base, gp.max.n = -1)), "gp.max.n must be a whole number >= 0")
  expect_error_paragraph(mbo_settings(c(base, gp.max.n = "many")), "gp.max.n must be a whole number")
  expect_error_paragraph(mbo_settings(c(base, gp.restarts = 0)), "gp.restarts must be a whole number >= 1")
  expect_error_paragraph(mbo_settings(c(base, surrogate = "kriging")), "surrogate = 'kriging' is not supported.*'gp'")
})

test_that("surrogate = 'gp' on a space with discretes takes the one-hot GP at any n", {
  psd <- makeParamSet(makeNumericParam("a", 0, 1), makeDiscreteParam("c", values = c("u", "v")))
  X <- data.frame(a = runif(12), c = rep(c("u", "v"), 6))
  S <- mbo_test_state(psd, list(surrogate = "gp", gp.max.n = 5), X, X$a + (X$c == "v"))
  m <- mbo_fit(S)
  expect_equal(m$kind, "gp")
  expect_false(is.null(m$encode))                 # gp_mixed.R's encoder: the one-hot GP
  expect_false(mbo_use_gp(S, 12L))                # not gp.R's numeric one
  # and a whole run with it (it used to stop before its first trial)
  h <- mbo(sprintf("max.budget = 12, surrogate = 'gp', seed = 1, param.set.file = '%s'",
                   space("bench_mixed.R")))
  expect_equal(length(fake_eq_trials(h)$objective), 12L)
})

test_that("expected improvement: zero se gives the plain improvement; more se, more EI", {
  expect_equal(mbo_ei(c(1, 3), c(0, 0), 2), c(1, 0))
  ei <- mbo_ei(c(2, 2, 2), c(0.1, 0.5, 1), 2)                        # at the best: se * dnorm(0)
  expect_equal(ei, c(0.1, 0.5, 1) * dnorm(0))
  expect_equal(mbo_ei(1.5, 0.5, 1), -0.5 * pnorm(-1) + 0.5 * dnorm(-1))
  ctl <- mbo_settings(list(param.set.file = "x.R"))
  gp <- list(kind = "gp")
  expect_true(mbo_use_ei(ctl, 1L, gp))                                # auto: EI for one point,
  expect_true(mbo_use_ei(modifyList(ctl, list(mode = "batch")), 8L, gp))    # batches: the kriging believer
  expect_false(mbo_use_ei(ctl, 8L, gp))                  # stream mode's look-ahead rounds: qLCB (liar 'none')
  expect_false(mbo_use_ei(ctl, 1L, list(kind = "none")))              # no model yet: no EI
  expect_false(mbo_use_ei(ctl, 1L, list(kind = "ranger")))            # the forest keeps qLCB
  expect_true(mbo_use_ei(modifyList(ctl, list(infill = "ei")), 8L, gp))
  expect_error_paragraph(mbo_settings(list(param.set.file = "x.R", infill = "pi")),
                         "infill = 'pi' is not supported; use 'auto'")
})
