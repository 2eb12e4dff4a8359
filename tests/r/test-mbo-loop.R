# r_algorithms/mlrMBO.R end to end through the simulated farm (eq/R/sim.R): the batch and stream
# loops, the budget, the final message, the preset.

test_that("batch: reaches the budget, improves on the design", {
  h <- mbo(branin("batch", 24))
  tr <- fake_eq_trials(h)
  expect_true(nrow(tr) == 24L && all(tr$status == "completed"), info = paste("24 completed trials, got", nrow(tr)))
  fin <- jsonlite::fromJSON(h$final)
  expect_true(fin$evaluations == 24 && fin$mode == "batch" && fin$iterations == 4, info = h$final)
  expect_true(min(tr$objective[9:24]) < min(tr$objective[1:8]),
              info = paste("no improvement over the design:", min(tr$objective[1:8]), "->", min(tr$objective[9:24])))
  expect_true(abs(fin$value - min(tr$objective)) < 1e-12 && fin$id == which.min(tr$objective), info = "final names the best")
  expect_equal(sum(grepl('^\\{"eq":"batch"', h$messages)), 5L)        # one design batch and four proposal batches
})

test_that("batch: improves on its design in >= 9 of 10 seeds (Branin, q = 4, design 8, budget 24)", {
  imp <- vapply(1:10, function(sd) {
    h <- mbo(sub("seed = 3", paste("seed =", sd), branin("batch", 24), fixed = TRUE))
    y <- fake_eq_trials(h)$objective
    min(y[9:24]) < min(y[1:8])
  }, TRUE)
  expect_true(sum(imp) >= 9L, info = paste0("improved in only ", sum(imp), " of 10 seeds (failed: ",
                                            paste(which(!imp), collapse = " "), ")"))
})

test_that("stream: reaches the budget exactly, keeps workers busy", {
  h <- mbo(branin("stream", 40))
  tr <- fake_eq_trials(h)
  expect_true(nrow(tr) == 40L && all(tr$status == "completed"), info = paste("40 completed trials, got", nrow(tr)))
  fin <- jsonlite::fromJSON(h$final)
  expect_true(fin$evaluations == 40 && fin$mode == "stream", info = h$final)
  expect_equal(h$max_busy, 4L)                                          # all 4 workers used
  u <- fake_eq_utilization(h)
  expect_true(u > 0.8, info = paste("utilization", round(u, 3)))
  expect_true(min(tr$objective[9:40]) < min(tr$objective[1:8]), info = "no improvement over the design")
  expect_true(any(grepl('^\\{"eq":"submit"', h$messages)) && !any(grepl('^\\{"eq":"batch"', h$messages)), info = "uses submit/results")
})

test_that("stream: max.iterations stops proposing", {
  h <- mbo(branin("stream", 50, ", max.iterations = 3"))
  fin <- jsonlite::fromJSON(h$final)
  expect_true(fin$iterations == 3 && nrow(fake_eq_trials(h)) < 50, info = h$final)
  expect_true(all(fake_eq_trials(h)$status == "completed"), info = "every submitted trial was collected")
})

test_that("a bad space file stops with the space error", {
  bad <- tmp_space("param.set <- makeParamSet(makeNumericParam('x', 0, 1)")
  m <- error_of(mbo(sprintf("max.budget = 10, param.set.file = '%s'", bad)))
  expect_true(grepl("is not valid R", m) && length(fake_eq_last()$trials) == 0L, info = m)
})

test_that("preset = 'mlrMBO' runs to the budget with mlrMBO's design size and its settings", {
  # budget 12 on Branin: the default design is capped at 6, mlrMBO's is 4 d = 8
  s <- sprintf("max.budget = 12, propose.points = 4, workers = 4, seed = 3, mode = 'batch', param.set.file = '%s'",
               space("bench_branin.R"))
  count_design <- function(h) lengths(regmatches(h$messages[grepl('^\\{"eq":"batch"', h$messages)][1],
                                                 gregexpr('"x1"', h$messages[grepl('^\\{"eq":"batch"', h$messages)][1])))
  h <- mbo(paste0(s, ", preset = 'mlrMBO'"))
  expect_equal(nrow(fake_eq_trials(h)), 12L)
  expect_equal(count_design(h), 8L)
  expect_equal(jsonlite::fromJSON(h$final)$evaluations, 12)
  ctl <- get("mbo_last_state", envir = globalenv())$ctl
  expect_equal(list(ctl$local.points, ctl$y.trafo, ctl$design.cap, ctl$batch.dist, ctl$select),
               list(0L, "none", FALSE, 0, "lambda"))
  expect_equal(nrow(unique(params_df(h))), 12L)                        # still distinct
  h <- mbo(paste0(s, ", surrogate = 'ranger'"))   # the forest: 4 d = 8, capped at 6
  expect_equal(count_design(h), 6L)
  expect_equal(count_design(mbo(s)), 4L)          # the GP (design.R): 2 d, one round of 4
})

test_that("without a preset the proposals are exactly the recorded ones (behaviour kept)", {
  # A fingerprint of the default algorithm: seed 3, Branin, batch q = 4, budget 16, the tests'
  # focus-search settings. If this changes, the quality figures of docs/mlrmbo.md need re-measuring.
  # (the forest's path: since the GP became the default for numeric spaces, surrogate = 'ranger')
  h <- mbo(branin("batch", 16, ", surrogate = 'ranger'"))
  P <- params_df(h)
  # x1 of the 8 model-based points, as proposed by the single-file mlrMBO.R before the split
  expect_equal(round(P$x1[9:16], 6), c(-3.168349, -2.500901, -1.833492, -2.590535, -3.602241, -4.985767,
                                       -2.799988, -4.380341))
})
