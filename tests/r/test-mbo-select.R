# r_algorithms/mbo/select.R: qLCB point selection, distinct points, batch spacing.

sel_state <- function(settings = list()) {
  ps <- makeParamSet(makeNumericParam("x", 0, 1), makeNumericParam("z", 0, 1))
  mbo_test_state(ps, settings, data.frame(x = 0.9, z = 0.9), 5)
}
# candidates along x: mean rises with x, se is highest at the far end
cands <- function(S) {
  X <- data.frame(x = c(0.10, 0.11, 0.12, 0.50, 0.95), z = 0.5)
  list(X = X, mean = c(0, 0.01, 0.02, 1, 1.5), se = c(0.1, 0.1, 0.1, 0.1, 5))
}

test_that("each point takes the best LCB under its own lambda", {
  set.seed(1)
  S <- sel_state(list(batch.dist = 0))
  X <- mbo_select(S, cands(S), lambdas = c(0, 10), q = 2L, E = S$N, P0 = S$N[0, , drop = FALSE])
  expect_equal(X$x, c(0.10, 0.95))                                    # lambda 0: lowest mean; 10: highest se
  expect_equal(attr(X, "random"), 0L)
})

test_that("batch.dist keeps the points of a round apart; batch.dist = 0 (as in the preset) does not", {
  set.seed(1)
  S <- sel_state()                                                    # default batch.dist = 0.05
  X <- mbo_select(S, cands(S), lambdas = c(0, 0), q = 2L, E = S$N, P0 = S$N[0, , drop = FALSE])
  expect_equal(X$x, c(0.10, 0.50))
  S0 <- sel_state(list(batch.dist = 0))
  X0 <- mbo_select(S0, cands(S0), lambdas = c(0, 0), q = 2L, E = S0$N, P0 = S0$N[0, , drop = FALSE])
  expect_equal(X0$x, c(0.10, 0.11))
  # the spacing also holds against pending trials
  P0 <- mbo_norm(S$info, data.frame(x = 0.1, z = 0.5))
  X <- mbo_select(S, cands(S), lambdas = 0, q = 1L, E = rbind(S$N, P0), P0 = P0)
  expect_equal(X$x, 0.50)
})

test_that("proposals are never duplicates of evaluated points; without candidates they are random", {
  set.seed(1)
  S <- sel_state(list(batch.dist = 0))
  E <- rbind(S$N, mbo_norm(S$info, data.frame(x = 0.1, z = 0.5)))
  X <- mbo_select(S, cands(S), lambdas = 0, q = 1L, E = E, P0 = S$N[0, , drop = FALSE])
  expect_equal(X$x, 0.11)
  X <- mbo_select(S, list(X = NULL, mean = NULL, se = NULL), lambdas = c(1, 1), q = 3L, E = S$N, P0 = S$N[0, , drop = FALSE])
  expect_equal(nrow(X), 3L)
  expect_equal(attr(X, "random"), 2L)                                  # two model-based points had no candidate
})

test_that("a batch keeps proposals apart", {
  h <- mbo(branin("batch", 24, ", propose.points = 8, design.size = 8"))
  P <- as.matrix(params_df(h)[, c("x1", "x2")])
  P <- sweep(P, 2, c(-5, 0)) %*% diag(c(1 / 15, 1 / 15))
  for (b in list(9:16, 17:24)) expect_true(min(dist(P[b, ])) >= 0.05 / 4 - 1e-9, info = "batch points closer than batch.dist / 4")
})

test_that("distinct proposals in a small integer x discrete space", {
  f <- tmp_space("param.set <- makeParamSet(makeIntegerParam('n', 1, 4), makeDiscreteParam('c', values = c('a', 'b', 'c')))")
  obj <- function(p) (p$n - 3)^2 + c(a = 0, b = 1, c = 2)[[p$c]]
  for (mode in c("batch", "stream")) {
    h <- suppressWarnings(mbo(sprintf("max.budget = 12, design.size = 4, propose.points = 4, workers = 4, seed = 1, mode = '%s', param.set.file = '%s'", mode, f),
                              objective = obj, workers = 4))
    P <- params_df(h)
    expect_true(nrow(P) == 12L && nrow(unique(P)) == 12L,
                info = paste0(mode, ": 12 distinct points expected, got ", nrow(unique(P))))
  }
})

test_that("select = 'lambda' (the preset) takes each lambda's own focus-search best, distinct", {
  set.seed(1)
  S <- sel_state(list(preset = "mlrMBO"))
  cand <- cands(S)
  # chains' bests: lambda 1 found x = 0.5 (crit 0.2) and 0.12 (crit 0.3); lambda 2 found 0.5 as well
  cand$best <- list(X = data.frame(x = c(0.5, 0.12, 0.5), z = 0.5), crit = c(0.2, 0.3, 0.1), lambda = c(1L, 1L, 2L))
  X <- mbo_select(S, cand, lambdas = c(0, 0), q = 2L, E = S$N, P0 = S$N[0, , drop = FALSE])
  expect_equal(X$x[1], 0.5)                          # not the pooled best (0.10): lambda 1's own best
  expect_false(X$x[2] == 0.5)                        # lambda 2's best is taken: a random distinct point
  expect_equal(attr(X, "random"), 1L)
  # through the focus search: every chain reports its best with its LCB value
  set.seed(2)
  ps <- branin_ps()
  Xd <- mbo_sample(mbo_info(ps), mbo_full_box(mbo_info(ps)), 20L)
  S <- mbo_test_state(ps, list(fs.points = 100, fs.maxit = 3, fs.restarts = 2), Xd, fake_eq_branin(Xd$x1, Xd$x2))
  model <- mbo_fit(S)
  lam <- c(0.5, 2)
  cand <- mbo_focus_search(S, model, lam, S$N, function(Z) mbo_predict(model, mbo_features(S, Z)))
  expect_equal(sort(cand$best$lambda), c(1L, 1L, 2L, 2L))
  p <- mbo_predict(model, mbo_features(S, cand$best$X))
  expect_equal(cand$best$crit, p$mean - lam[cand$best$lambda] * p$se)
})
