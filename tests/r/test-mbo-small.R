# Small budgets on numeric spaces (issue 11): the constant liar (infill.R, gp_condition of gp.R)
# that spreads a batch's points, and stream mode's pending trials, under EI from the GP.

# a GP state on Branin's space with 12 evaluated points
small_state <- function(settings = list(), n = 12L, seed = 4L) {
  set.seed(seed)
  X <- data.frame(x1 = runif(n, -5, 10), x2 = runif(n, 0, 15))
  y <- (X$x2 - 5.1 / (4 * pi^2) * X$x1^2 + 5 / pi * X$x1 - 6)^2 + 10 * (1 - 1 / (8 * pi)) * cos(X$x1) + 10
  mbo_test_state(branin_ps(), modifyList(list(fs.points = 300L, fs.maxit = 3L, local.points = 300L), settings), X, y)
}
med_pair_dist <- function(N) stats::median(dist(N))

test_that("a fantasy pins the GP there with the same hyperparameters; the rest is the plain GP", {
  set.seed(5)
  X <- matrix(runif(20), ncol = 2); y <- sin(4 * X[, 1]) + X[, 2]
  g <- gp_fit(X, y)
  x0 <- matrix(c(0.5, 0.5), 1)
  h <- gp_condition(g, x0, -3)
  p <- gp_predict(h, x0)
  expect_equal(p$mean, -3, tolerance = 1e-3)
  expect_lt(p$se, 1e-3 * g$sd)
  expect_equal(h$l, g$l); expect_equal(h$sf2, g$sf2)
  # the training points keep their fit
  expect_equal(gp_predict(h, X)$mean, y, tolerance = 1e-3)
  far <- matrix(c(0.02, 0.98), 1)
  # the same as fitting those hyperparameters on the augmented data directly
  K <- g$sf2 * gp_matern52(sqrt(gp_dist2(sweep(rbind(X, x0), 2, g$l, "/"), sweep(rbind(X, x0), 2, g$l, "/"))))
  diag(K) <- g$sf2 + g$nug
  z <- (c(y, -3) - g$mu) / g$sd
  direct <- g$mu + g$sd * drop(g$sf2 * gp_matern52(sqrt(gp_dist2(sweep(far, 2, g$l, "/"),
                                                                 sweep(rbind(X, x0), 2, g$l, "/")))) %*% solve(K, z))
  expect_equal(gp_predict(h, far)$mean, direct, tolerance = 1e-6)
  # a fantasy on top of a training point does not break the Cholesky
  expect_true(is.finite(gp_predict(gp_condition(g, X[1, , drop = FALSE], min(y)), far)$mean))
})

test_that("a batch of EI under the constant liar is spread out; without fantasies it clusters", {
  spread <- function(liar) {
    S <- small_state(list(liar = liar, infill = "ei", batch.dist = 0))
    set.seed(11)
    X <- mbo_propose(S, 6L)
    expect_equal(nrow(X), 6L)
    med_pair_dist(mbo_norm(S$info, X))
  }
  cl <- spread("min"); none <- spread("none")
  expect_gt(cl, 0.05)          # the six points are spread out (median distance 0.11 measured)
  expect_gt(cl, 5 * none)      # plain EI puts all six next to its one maximum (0.008)
})

test_that("stream mode: a proposal keeps away from the trials in flight under the fantasies", {
  away <- function(liar) {
    S <- small_state(list(liar = liar, mode = "stream", batch.dist = 0))
    set.seed(12)
    first <- mbo_propose(S, 1L)            # EI's maximum, now running as a pending trial
    mbo_add(S, first)
    set.seed(12)
    nxt <- mbo_propose(S, 1L)
    sqrt(sum((mbo_norm(S$info, nxt) - mbo_norm(S$info, first))^2))
  }
  none <- away("none")
  expect_lt(none, 0.03)           # before: the same maximum again, next to the running trial (0.012)
  expect_gt(away("mean"), 3 * none)  # the default, kriging believer: 0.057 measured
  expect_gt(away("min"), 3 * none)   # 0.066
})

test_that("liar settings: 'auto' takes EI for GP batches; the forest and 'none' keep qLCB", {
  # the default: kriging believer in batch mode, none in stream mode
  expect_equal(mbo_liar(mbo_settings(list(param.set.file = "x.R"))), "none")
  expect_equal(mbo_liar(mbo_settings(list(param.set.file = "x.R", mode = "batch"))), "mean")
  ctl <- mbo_settings(list(param.set.file = "x.R", mode = "batch"))
  gp <- list(kind = "gp")
  expect_true(mbo_use_ei(ctl, 8L, gp))
  expect_true(mbo_use_liar(ctl, TRUE, gp))
  expect_false(mbo_use_ei(ctl, 8L, list(kind = "ranger")))
  none <- mbo_settings(list(param.set.file = "x.R", liar = "none"))
  expect_false(mbo_use_ei(none, 8L, gp)); expect_true(mbo_use_ei(none, 1L, gp))
  expect_false(mbo_use_liar(none, TRUE, gp))
  expect_error_paragraph(mbo_settings(list(param.set.file = "x.R", liar = "worst")),
                         "liar = 'worst' is not supported; use 'auto'")
})

test_that("the GP's default design is 2 d, at least one round of the farm; the forest keeps 4 d", {
  ctl <- function(...) mbo_settings(list(param.set.file = "x.R", ...))
  expect_equal(mbo_design_size(ctl(max.budget = 100), d = 6, maxlev = 1, gp = TRUE), 12)
  expect_equal(mbo_design_size(ctl(max.budget = 100), d = 6, maxlev = 1), 24)            # forest
  expect_equal(mbo_design_size(ctl(max.budget = 100), d = 2, maxlev = 1, gp = TRUE), 8)  # one round of 8
  expect_equal(mbo_design_size(ctl(max.budget = 100, propose.points = 16), d = 6, maxlev = 1, gp = TRUE), 16)
  expect_equal(mbo_design_size(ctl(max.budget = 100, workers = 4), d = 2, maxlev = 1, gp = TRUE), 4)
  expect_equal(mbo_design_size(ctl(max.budget = 16), d = 12, maxlev = 1, gp = TRUE), 8)  # half the budget
  expect_equal(mbo_design_size(ctl(max.budget = 100, design.size = 30), d = 6, maxlev = 1, gp = TRUE), 30)
  # a run on Hartmann6's space logs a design of 12; the preset (the forest) keeps mlrMBO's 24
  design_of <- function(extra) {
    msgs <- character(0)
    withCallingHandlers(fake_eq_run(file.path(EQ_HOME, "r_algorithms", "mlrMBO.R"), sprintf(
      "max.budget = 26, propose.points = 7, workers = 7, mode = 'batch', seed = 1, fs.points = 100, fs.maxit = 2, num.trees = 20, param.set.file = '%s'%s",
      space("bench_hartmann6.R"), extra)), message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
    as.integer(sub(".*design ([0-9]+).*", "\\1", grep("design [0-9]+", msgs, value = TRUE)[1]))
  }
  expect_equal(design_of(""), 12L)
  expect_equal(design_of(", preset = 'mlrMBO', max.budget = 30"), 24L)
})

test_that("the length-scale prior predicts held-out points of a 6-D function better than ML alone", {
  h6 <- function(x) {
    A <- matrix(c(10, 3, 17, 3.5, 1.7, 8, .05, 10, 17, .1, 8, 14, 3, 3.5, 1.7, 10, 17, 8, 17, 8, .05, 10, .1, 14), 4, byrow = TRUE)
    P <- 1e-4 * matrix(c(1312, 1696, 5569, 124, 8283, 5886, 2329, 4135, 8307, 3736, 1004, 9991,
                         2348, 1451, 3522, 2883, 3047, 6650, 4047, 8828, 8732, 5743, 1091, 381), 4, byrow = TRUE)
    -sum(c(1, 1.2, 3, 3.2) * exp(-rowSums(A * (matrix(x, 4, 6, byrow = TRUE) - P)^2)))
  }
  set.seed(99); Xt <- matrix(runif(1800), ncol = 6); yt <- apply(Xt, 1, h6)
  cors <- sapply(1:4, function(seed) {
    set.seed(seed); X <- lhs::maximinLHS(24, 6); y <- apply(X, 1, h6)
    c(ml = cor(gp_predict(gp_fit(X, y), Xt)$mean, yt),
      prior = cor(gp_predict(gp_fit(X, y, prior = GP_PRIOR), Xt)$mean, yt))
  })
  expect_gt(median(cors["prior", ]), median(cors["ml", ]) + 0.1)
  expect_gt(min(cors["prior", ]), 0.2)
})
