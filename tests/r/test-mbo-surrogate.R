# r_algorithms/mbo/surrogate.R: the target scale (y.trafo), imputation of failed trials, the
# forest's mean and standard error.

test_that("y.trafo = 'auto' takes the log scale only for values skewed towards large ones", {
  ctl <- mbo_settings(list(param.set.file = "x.R"))
  skewed <- c(0.5, 1, 2, 3, 300)
  tr <- mbo_ytrafo(ctl, skewed)
  expect_equal(tr(skewed), log(skewed - 0.5 + 0.01 * 299.5))            # "slog"
  flat <- c(-3, -2, -1.5, -1, 0)
  expect_equal(mbo_ytrafo(ctl, flat)(flat), flat)                       # "none"
  none <- mbo_settings(list(param.set.file = "x.R", preset = "mlrMBO"))
  expect_equal(mbo_ytrafo(none, skewed)(skewed), skewed)                # the preset fits y as it is
  rk <- mbo_ytrafo(mbo_settings(list(param.set.file = "x.R", y.trafo = "rank")), skewed)
  expect_equal(rank(rk(skewed)), rank(skewed))
  expect_equal(rk(skewed[3]), 0)                                        # the median's normal score
  lg <- mbo_ytrafo(mbo_settings(list(param.set.file = "x.R", y.trafo = "log")), c(-1, 0, 1))
  expect_true(all(is.finite(lg(c(-1, 0, 1)))))                         # shifted when some y <= 0
})

test_that("failed trials enter the surrogate as the worst value plus a margin, or as set", {
  ps <- branin_ps()
  X <- data.frame(x1 = c(0, 1, 2, 3), x2 = c(0, 1, 2, 3))
  S <- mbo_test_state(ps, list(y.trafo = "none"), X, c(1, 3, NA, 5))
  S$status[3] <- "failed"
  tg <- mbo_targets(S)
  expect_equal(tg$y, c(1, 3, 5 + 0.1 * 4, 5))
  expect_equal(tg$n.ok, 3L)
  S$ctl$impute.y <- "median"
  expect_equal(mbo_targets(S)$y[3], 3)
  S$ctl$impute.y <- 10
  expect_equal(mbo_targets(S)$y[3], 10)
  S$ctl$minimize <- FALSE                                              # maximizing: targets negated
  expect_equal(mbo_targets(S)$y, c(-1, -3, -10, -5))
})

test_that("the forest follows the data; its standard error grows away from it", {
  set.seed(1)
  ps <- makeParamSet(makeNumericParam("x", 0, 1))
  X <- data.frame(x = c(seq(0, 0.4, length.out = 30)))
  S <- mbo_test_state(ps, list(y.trafo = "none", surrogate = "ranger"), X, (X$x - 0.2)^2)
  model <- mbo_fit(S)
  expect_equal(model$kind, "ranger")
  p <- mbo_predict(model, mbo_features(S, data.frame(x = c(0.2, 0.0, 0.9))))
  expect_lt(p$mean[1], p$mean[2])                                       # 0.2 is the minimum
  expect_true(all(p$se >= 0))
  for (m in c("sd", "total")) {
    S$ctl$se.method <- m
    expect_true(all(is.finite(mbo_predict(mbo_fit(S), mbo_features(S, X))$se)), info = m)
  }
  S$ctl$surrogate <- "randomForest"
  expect_equal(mbo_fit(S)$kind, "randomForest")
  # no model before two distinct completed values
  S2 <- mbo_test_state(ps, list(), data.frame(x = 0.5), 1)
  expect_equal(mbo_fit(S2)$kind, "none")
})

test_that("y.trafo variants run to the budget; an unknown one is refused", {
  for (tr in c("none", "slog", "log", "rank")) {
    h <- mbo(branin("batch", 16, sprintf(", y.trafo = '%s', interleave.random.points = 1", tr)))
    expect_equal(nrow(fake_eq_trials(h)), 16L, info = tr)
  }
  m <- error_of(mbo(branin("batch", 16, ", y.trafo = 'cube'")))
  expect_true(grepl("y.trafo = 'cube' is not supported", m), info = m)
})

test_that("failed and timed-out trials are imputed, never best", {
  obj <- function(p) {
    if (p$x1 > 5) stop("diverged")
    if (p$x2 > 12) return(list(objective = NA, status = "timeout"))
    fake_eq_branin(p$x1, p$x2)
  }
  for (mode in c("batch", "stream")) {
    h <- mbo(branin(mode, 24), objective = obj)
    tr <- fake_eq_trials(h)
    fin <- jsonlite::fromJSON(h$final)
    expect_true(nrow(tr) == 24L && any(tr$status == "failed"), info = paste(mode, ": 24 trials with failures"))
    expect_true(fin$failed == sum(tr$status != "completed") && fin$best$x1 <= 5 && fin$best$x2 <= 12,
                info = paste(mode, ":", h$final))
    expect_true(mean(tr$status[9:24] != "completed") < mean(tr$status[1:8] != "completed") + 0.25,
                info = paste(mode, ": the optimizer keeps proposing into the failing region"))
  }
})
