# r_algorithms/mbo/warm.R: warm.start = ID decodes an earlier experiment's trials (params as the
# pilot received them) into this run's space and adds them to the state before the design.

# a CANDLE-like space: trafos on a numeric and an integer, discrete numbers and strings, logical
warm_ps <- function(lr.lower = -4) makeParamSet(
  makeNumericParam("lr", lower = lr.lower, upper = -1, trafo = function(x) 10^x),
  makeIntegerParam("bs", lower = 3, upper = 7, trafo = function(x) 2L^x),
  makeDiscreteParam("drop", values = c(0, 0.25, 0.5)),
  makeLogicalParam("bn"),
  makeDiscreteParam("act", values = c("relu", "tanh")),
  makeNumericParam("m", lower = 0, upper = 1))

warm_res <- function(id, lr, bs, drop = 0.25, bn = TRUE, act = "relu", m = 0.5, y = 1, status = "completed")
  list(id = as.integer(id), params = list(lr = lr, bs = as.integer(bs), drop = drop, bn = bn, act = act, m = m),
       status = status, objective = if (status == "completed") y else NA_real_, metrics = list())

test_that("decode inverts the trafos and maps values back to the codec's levels", {
  S <- mbo_test_state(warm_ps())
  res <- list(warm_res(1, 0.001, 32, drop = 0.5, bn = FALSE, act = "tanh", m = 0.25),
              warm_res(2, 10^-2.5, 8, drop = 0, bn = TRUE, act = "relu", m = 1),
              warm_res(3, 0.1, 128, drop = 0.25, m = 0))
  d <- mbo_warm_decode(S, res, 7L)
  expect_true(all(d$keep))
  expect_equal(d$X$lr, c(-3, -2.5, -1), tolerance = 1e-9)
  expect_equal(d$X$bs, c(5, 3, 7))
  expect_equal(d$X$drop, c("0.5", "0", "0.25"))         # the level names of the discrete values
  expect_equal(d$X$bn, c("FALSE", "TRUE", "TRUE"))
  expect_equal(d$X$act, c("tanh", "relu", "relu"))
  expect_equal(d$X$m, c(0.25, 1, 0))
  # round trip: transforming the decoded rows gives back what the pilot received
  back <- mbo_to_farm(S, d$X)
  expect_equal(back[[1]]$lr, 0.001, tolerance = 1e-12)
  expect_identical(back[[1]]$bs, 32L)
  expect_equal(back[[2]]$lr, 10^-2.5, tolerance = 1e-12)
})

test_that("points outside the current space are dropped, each with its reason", {
  S <- mbo_test_state(warm_ps(lr.lower = -3))            # bounds narrowed since the earlier run
  res <- list(warm_res(1, 0.01, 32),
              warm_res(2, 1e-4, 32),                     # lr below the new lower bound
              warm_res(3, 0.01, 48),                     # 48 is no 2^x
              warm_res(4, 0.01, 32, drop = 0.3),         # not a value of drop
              warm_res(5, 0.01, 32, act = "elu"),        # not a value of act
              warm_res(6, 0.01, 32, m = 1.5))            # outside [0, 1]
  d <- mbo_warm_decode(S, res, 7L)
  expect_equal(d$keep, c(TRUE, FALSE, FALSE, FALSE, FALSE, FALSE))
  expect_setequal(d$why, c("outside the current bounds of lr", "with a value of bs not in the space",
                           "with a value of drop not in the space", "with a value of act not in the space",
                           "outside the current bounds of m"))
})

test_that("merge: warm points enter the state as evaluated, failed ones imputed, not counted as new", {
  S <- mbo_test_state(warm_ps())
  res <- list(warm_res(11, 0.001, 32, y = 3), warm_res(12, 0.01, 16, y = 1),
              warm_res(13, 0.1, 8, status = "failed"), warm_res(14, 0.02, 64, status = "timeout"),
              warm_res(15, 1e-6, 8, y = 0))              # outside the bounds: dropped
  msgs <- character(0)
  withCallingHandlers(mbo_warm_start(S, 9L, list(experiment = 9L, space = NULL, results = res)),
                      message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  expect_match(msgs, "^mlrMBO: warm start from experiment 9: 4 points \\(1 dropped: 1 outside the current bounds of lr\\); 2 completed, 2 failed or timed out", all = FALSE)
  expect_equal(S$nwarm, 4L)
  expect_equal(mbo_n_new(S), 0L)                         # nothing of this run's budget spent
  expect_equal(S$status, c("completed", "completed", "failed", "timeout"))
  expect_true(all(is.na(S$ids)))                         # trial ids of another experiment: apart
  expect_equal(S$warm.ids, 11:14)
  b <- mbo_best(S)
  expect_true(b$warm && b$id == 12L && b$value == 1)
  tg <- mbo_targets(S)
  expect_equal(tg$rows, 1:4)
  expect_true(all(tg$y[3:4] > max(tg$y[1:2])))           # failed ones imputed worse than the worst
  expect_equal(S$warm, list(experiment = 9L, points = 4L, completed = 2L, dropped = 1L))
})

test_that("a different space or a trafo that cannot be inverted is one clear error", {
  S <- mbo_test_state(warm_ps())
  sp <- list(source = "/old/space.R", params = list(list(id = "lr", type = "numeric"), list(id = "bs", type = "numeric"),
                                                     list(id = "drop", type = "discrete"), list(id = "bn", type = "logical"),
                                                     list(id = "act", type = "discrete"), list(id = "k", type = "integer")))
  m <- expect_error_paragraph(mbo_warm_start(S, 4L, list(space = sp, results = list())),
                              "warm.start = 4: the search space of experiment 4 \\(/old/space.R\\) is not the space of this run")
  expect_match(m, "only in experiment 4: k; only in this run: m; type changed: bs numeric -> integer")
  ps <- makeParamSet(makeNumericParam("x", lower = -1, upper = 1, trafo = function(x) x^2))
  S2 <- mbo_test_state(ps)
  expect_error_paragraph(mbo_warm_start(S2, 4L, list(space = NULL, results = list(list(id = 1L, params = list(x = 0.25),
                                                                                        status = "completed", objective = 1)))),
                         "the trafo of parameter 'x' is not strictly monotone on \\[-1, 1\\].*leave warm.start out")
  expect_error_paragraph(mbo_settings(list(param.set.file = "s.R", warm.start = "last")),
                         "warm.start must be the id of an earlier experiment.*got \"last\"")
  expect_match(error_of(mbo_settings(list(param.set.file = "s.R", warm.strat = 3))), "did you mean 'warm.start'")
})

# Run mlrMBO on the simulated farm with the EQ "history" message answered by `history` (JSON).
mbo_warm_run <- function(settings, history) {
  h <- fake_eq_new(settings = paste(settings, FAST, sep = ", "))
  put <- get("OUT_put", globalenv()); get_ <- get("IN_get", globalenv())
  reply <- NULL
  h$asked <- character(0)
  assign("OUT_put", function(s) if (startsWith(s, '{"eq":"history"')) { h$asked <- c(h$asked, s); reply <<- history }
                                else put(s), envir = globalenv())
  assign("IN_get", function() if (!is.null(reply)) { r <- reply; reply <<- NULL; r } else get_(), envir = globalenv())
  h$log <- character(0)
  withCallingHandlers(source(file.path(EQ_HOME, "r_algorithms", "mlrMBO.R"), local = globalenv()),
                      message = function(m) { h$log <- c(h$log, conditionMessage(m)); invokeRestart("muffleMessage") })
  h
}

# the history reply a driver would send for a simulated run
history_json <- function(h0, exp = 1L) {
  tr <- fake_eq_trials(h0)
  res <- lapply(seq_len(nrow(tr)), function(i) list(id = tr$id[i], params = tr$params[[i]], status = tr$status[i],
                                                    objective = if (is.na(tr$objective[i])) NULL else tr$objective[i],
                                                    metrics = structure(list(), names = character(0))))
  sp <- list(source = space("bench_branin.R"), params = list(list(id = "x1", type = "numeric", lower = -5, upper = 10),
                                                              list(id = "x2", type = "numeric", lower = 0, upper = 15)))
  as.character(jsonlite::toJSON(list(eq = "history", experiment = exp, name = "first", space = sp, results = res),
                                auto_unbox = TRUE, digits = NA, null = "null"))
}

test_that("end to end: warm points replace the design, the budget counts only new trials", {
  h0 <- mbo(branin("batch", 12))                          # design 8 + one batch of 4
  expect_equal(nrow(fake_eq_trials(h0)), 12L)
  h <- mbo_warm_run(paste(branin("batch", 8), "warm.start = 1", sep = ", "), history_json(h0))
  expect_equal(h$asked, '{"eq":"history","experiment":1}')
  tr <- fake_eq_trials(h)
  expect_equal(nrow(tr), 8L)                              # max.budget new trials, the warm ones not re-run
  batches <- h$messages[grepl('^\\{"eq":"batch"', h$messages)]
  expect_equal(length(batches), 2L)                       # two model-based batches of 4, no design batch
  expect_true(all(lengths(regmatches(batches, gregexpr('"x1"', batches))) == 4L))
  expect_true(any(grepl("warm start from experiment 1: 12 points \\(0 dropped\\); 12 completed", h$log)), info = paste(h$log, collapse = "\n"))
  fin <- jsonlite::fromJSON(h$final)
  expect_equal(fin$evaluations, 8L)
  expect_equal(fin$warm$points, 12L)
  best0 <- min(fake_eq_trials(h0)$objective)
  expect_true(fin$value <= best0)                          # the incumbent includes the warm points
  # distinct from every warm point
  old <- do.call(rbind, lapply(fake_eq_trials(h0)$params, unlist))
  new <- do.call(rbind, lapply(tr$params, unlist))
  expect_false(any(duplicated(rbind(old, new))))
})

test_that("end to end, stream: fewer warm points than the design shrink it", {
  h0 <- mbo(branin("batch", 8, ""))                       # the design of 8 only
  h0$trials <- h0$trials[1:5]                              # 5 finished trials to reuse
  h <- mbo_warm_run(paste(branin("stream", 10), "warm.start = 1", sep = ", "), history_json(h0))
  tr <- fake_eq_trials(h)
  expect_equal(nrow(tr), 10L)
  sub1 <- h$messages[grepl('^\\{"eq":"submit"', h$messages)][1]
  expect_equal(lengths(regmatches(sub1, gregexpr('"x1"', sub1))), 3L)   # design 8 - 5 warm
  fin <- jsonlite::fromJSON(h$final)
  expect_true(fin$evaluations == 10L && fin$warm$points == 5L && fin$mode == "stream", info = h$final)
})
