# eq/R/sim.R, the simulated farm: what an optimizer author relies on when testing against it.

test_that("plain EMEWS batches get NaN for a failed trial, in the order of the points", {
  algo <- tempfile(fileext = ".R")
  writeLines(c('OUT_put(paste(eq_point_json(list(x1 = 0, x2 = 0)), eq_point_json(list(x1 = 9, x2 = 1)),',
               '              eq_point_json(list(x1 = pi, x2 = 2.275)), sep = ";"))',
               'eq_done(IN_get())'), algo)
  obj <- function(p) if (p$x1 > 5) stop("diverged") else fake_eq_branin(p$x1, p$x2)
  h <- fake_eq_run(algo, "", objective = obj, workers = 2)
  ys <- strsplit(h$final, ";", fixed = TRUE)[[1]]
  expect_length(ys, 3L)
  expect_equal(as.numeric(ys[1]), fake_eq_branin(0, 0))
  expect_identical(ys[2], "NaN")
  expect_equal(as.numeric(ys[3]), 0.397887, tolerance = 1e-5)
  expect_identical(fake_eq_trials(h)$status, c("completed", "failed", "completed"))
})

test_that("streamed results arrive in simulated finishing order and every worker is used", {
  algo <- tempfile(fileext = ".R")
  writeLines(c('ids <- eq_submit(lapply(1:6, function(i) list(x1 = i, x2 = i)))',
               'got <- integer(0)',
               'while (length(got) < 6L) got <- c(got, vapply(eq_results(min = 1)$results, function(r) r$id, 1L))',
               'eq_done(list(got = got))'), algo)
  h <- fake_eq_run(algo, "", workers = 3)
  got <- jsonlite::fromJSON(h$final)$got
  tr <- fake_eq_trials(h)
  expect_setequal(got, 1:6)
  expect_equal(got, order(tr$finish))
  expect_equal(h$max_busy, 3L)
  u <- fake_eq_utilization(h)
  expect_true(u > 0 && u <= 1)
})
