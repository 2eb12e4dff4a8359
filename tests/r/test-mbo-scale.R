# r_algorithms/mbo/scale.R: the bounded training set (fit.max, fit.top), the duplicate index and
# stream mode's look-ahead (ahead); the cost figures are benchmarks/proposal_cost.py's.

mixed_ps <- function() eq_space_load(tmp_space('param.set <- makeParamSet(
  makeNumericParam("a", 0, 1), makeNumericParam("c", -5, 5), makeIntegerParam("i", 1, 20),
  makeDiscreteParam("f", values = c("relu", "tanh", "elu")), makeLogicalParam("l"))'))
mixed_f <- function(X) (X$a - 0.3)^2 + X$c^2 / 25 + 0.01 * (X$i - 7)^2 + (X$f == "tanh") * 0.2 + (X$l == "TRUE") * 0.1

test_that("beyond fit.max the surrogate is fitted on the best points plus a sample of the rest", {
  set.seed(1)
  ps <- mixed_ps()
  S <- mbo_test_state(ps, list(fit.max = 200, fit.top = 0.25))
  X <- mbo_sample(S$info, mbo_full_box(S$info), 1500)
  mbo_add(S, X); S$y <- mixed_f(X); S$status[] <- "completed"
  S$status[1:100] <- "failed"                                        # imputed as the worst
  tg <- mbo_targets(S)
  sub <- mbo_fit_rows(S, tg)
  expect_equal(length(sub$rows), 200L)
  expect_equal(S$last.fit.n, 200L)
  expect_false(anyDuplicated(sub$rows) > 0)
  best50 <- tg$rows[order(tg$y)[1:50]]
  expect_true(all(best50 %in% sub$rows))                             # the best fit.top * fit.max
  expect_equal(sub$y, tg$y[match(sub$rows, tg$rows)])                # targets travel with their rows
  expect_true(any(sub$rows %in% 1:100))                              # failures keep a share of the rest
  # below the cap, and with fit.max = Inf, nothing changes (and no random number is drawn)
  S2 <- mbo_test_state(ps, list(fit.max = Inf)); mbo_add(S2, X); S2$y <- S$y; S2$status <- S$status
  seed <- .Random.seed
  expect_identical(mbo_fit_rows(S2, tg), tg)
  expect_identical(.Random.seed, seed)
  # a proposal after 1,500 evaluations fits 200 points and stays distinct from all 1,500
  P <- mbo_propose(S, 8)
  expect_equal(S$last.fit.n, 200L)
  NP <- mbo_norm(S$info, P)
  expect_false(any(apply(NP, 1, function(v) mbo_is_dup(v, S$N, S$ctl$dup.tol))))
})

test_that("the duplicate index answers as the plain check does, also for near and exact repeats", {
  set.seed(2)
  ps <- mixed_ps()
  S <- mbo_test_state(ps)
  E <- mbo_norm(S$info, mbo_sample(S$info, mbo_full_box(S$info), 3000))
  I <- mbo_dup_index(E)
  expect_s3_class(I, "mbo_dup_index")
  expect_identical(mbo_dup_index(E[1:100, ]), E[1:100, ])            # small: the matrix itself
  tol <- 1e-4
  near <- E[sample.int(3000, 300), ]
  near[, 1:2] <- near[, 1:2] + runif(600, -2, 2) * tol               # about half within tol
  probe <- rbind(E[1:50, ], near, mbo_norm(S$info, mbo_sample(S$info, mbo_full_box(S$info), 100)))
  plain <- apply(probe, 1, function(v) mbo_is_dup(v, E, tol))
  indexed <- apply(probe, 1, function(v) mbo_is_dup(v, I, tol))
  expect_identical(indexed, plain)
  expect_true(sum(plain) > 50 && sum(!plain) > 100)                  # both answers were exercised
  # points added during a round (select.R) count as well
  v <- probe[nrow(probe), ]
  expect_false(mbo_is_dup(v, I, tol))
  expect_true(mbo_is_dup(v, mbo_dup_add(I, v), tol))
})

test_that("stream look-ahead: ahead = 0 proposes for idle workers only, 'auto' follows the results per round", {
  ps <- mixed_ps()
  S <- mbo_test_state(ps, list(ahead = 0))
  expect_equal(mbo_stream_q(S, free = 2L, npend = 6L, workers = 8L, nres = 2L), 2L)
  S <- mbo_test_state(ps, list(ahead = 3))
  expect_equal(mbo_stream_q(S, 2L, 6L, 8L, 2L), 5L)                  # 2 idle + 3 queued
  expect_equal(mbo_stream_q(S, 0L, 10L, 8L, 1L), 1L)                 # 2 still queued: one more
  expect_equal(mbo_stream_q(S, 0L, 12L, 8L, 1L), 0L)
  A <- mbo_test_state(ps)                                            # ahead = "auto", the default
  expect_equal(A$ctl$ahead, "auto")
  expect_equal(mbo_stream_q(A, 4L, 4L, 8L, 4L), 12L)                 # 4 results: 4 idle + 2 x 4 ahead
  expect_equal(mbo_stream_q(A, 1L, 11L, 8L, 1L), 5L)                 # 4 of the 8 queued already
  for (k in 1:5) mbo_stream_q(A, 1L, 8L, 8L, 1L)                     # the burst leaves the window
  expect_equal(mbo_stream_q(A, 1L, 7L, 8L, 1L), 3L)                  # 1 idle + 2 x 1 ahead
  expect_equal(mbo_stream_q(A, 5L, 3L, 8L, 50L), 5L + 16L)           # never more than 2 x workers ahead
  expect_equal(mbo_stream_q(A, 2L, 2L, NA_integer_, 3L), 2L)         # farm size unknown: idle only
})

test_that("stream mode keeps trials queued ahead of the workers, and none with ahead = 0", {
  run <- function(ahead) {
    h <- mbo(paste0(branin("stream", 30), ", min.fit = 4, ahead = ", ahead))
    tr <- fake_eq_trials(h)
    expect_true(nrow(tr) == 30L && all(tr$status == "completed"), info = paste("ahead", ahead))
    # trials in the farm (submitted, not finished) when each later trial was submitted
    after <- tr[tr$submit > 0, ]
    inflight <- vapply(after$submit, function(t) sum(tr$submit <= t & tr$finish > t), 0)
    list(max = max(inflight), waited = sum(after$start > after$submit))
  }
  none <- run(0)
  expect_true(none$max <= 4L && none$waited == 0L, info = paste(none, collapse = " "))
  two <- run(2)
  expect_true(two$max == 6L && two$waited > 0L, info = paste(two, collapse = " "))
})

test_that("bad fit.max, fit.top and ahead are refused in one paragraph", {
  base <- list(param.set.file = "x.R")
  expect_error_paragraph(mbo_settings(c(base, fit.max = 5)), "fit.max must be a whole number of at least 10")
  expect_error_paragraph(mbo_settings(c(base, fit.max = "big")), "fit.max")
  expect_error_paragraph(mbo_settings(c(base, fit.top = 1.5)), "fit.top must be a number between 0 and 1")
  expect_error_paragraph(mbo_settings(c(base, ahead = -1)), "ahead must be 'auto' or a whole number")
  expect_error_paragraph(mbo_settings(c(base, ahead = "lots")), "ahead = 'auto'")
  expect_equal(mbo_settings(c(base, ahead = 4))$ahead, 4L)
  expect_equal(mbo_settings(c(base, fit.max = Inf))$fit.max, Inf)
})

test_that("select's kept-up distances pick exactly the points the plain spacing check picks", {
  ps <- mixed_ps()
  S <- mbo_test_state(ps, list(fit.max = 300))
  set.seed(3)
  X <- mbo_sample(S$info, mbo_full_box(S$info), 600)
  mbo_add(S, X); S$y <- mixed_f(X); S$status[] <- "completed"
  S$status[591:600] <- "pending"; S$y[591:600] <- NA                 # P0: spacing from pending too
  set.seed(4); fast <- mbo_propose(S, 40)
  # the reference: every examined candidate measured against pending + chosen points (mbo_first_fit)
  saved <- list(add = mbo_pool_add, fit = mbo_pool_first_fit)
  on.exit({ assign("mbo_pool_add", saved$add, globalenv()); assign("mbo_pool_first_fit", saved$fit, globalenv()) })
  assign("mbo_pool_add", function(p, v) p$chosen <- rbind(p$chosen, v), globalenv())
  assign("mbo_pool_first_fit", function(p, idx, En, d2, tol) mbo_first_fit(p$Cn, idx, rbind(p$P0, p$chosen), En, d2, tol),
         globalenv())
  set.seed(4); plain <- mbo_propose(S, 40)
  expect_identical(fast, plain)
  N <- mbo_norm(S$info, fast)
  D <- as.matrix(dist(N))
  expect_true(min(D[upper.tri(D)]) >= S$ctl$batch.dist / 4 - 1e-12)  # spaced (relaxed at most once)
})
