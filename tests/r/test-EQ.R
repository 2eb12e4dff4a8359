# eq/R/EQ.R: JSON encoding of points and the EQ calls (settings handshake, plain EMEWS batches,
# submit/results/status, done) against the simulated farm of eq/R/sim.R.

test_that("JSON encoding of points and the plain EMEWS convention", {
  js <- eq_points_json(data.frame(a = c("x", "y"), n = c(1L, 2L), f = c(TRUE, FALSE), v = c(0.1 + 0.2, 32)))
  expect_identical(js, '[{"a":"x","n":1,"f":true,"v":0.30000000000000004},{"a":"y","n":2,"f":false,"v":32}]')
  algo <- tempfile(fileext = ".R")
  writeLines(c('s <- eq_settings()',
               'OUT_put(paste(eq_point_json(list(x1 = 0, x2 = 0)), eq_point_json(list(x1 = pi, x2 = 2.275)), sep = ";"))',
               'ys <- as.numeric(strsplit(IN_get(), ";")[[1]])',
               'ids <- eq_submit(list(list(x1 = 1, x2 = 1), list(x1 = 2, x2 = 2), list(x1 = 3, x2 = 3)))',
               'r <- eq_results(min = 3)',
               'st <- eq_status()',
               'eq_done(list(ys = ys, ids = ids, n = length(r$results), pending = r$pending, s = s$a, st = st$completed))'), algo)
  h <- fake_eq_run(algo, "a = 'b', k = 2L", workers = 2)
  fin <- jsonlite::fromJSON(h$final)
  expect_true(abs(fin$ys[2] - 0.397887) < 1e-5 && identical(fin$ids, 3:5) && fin$n == 3 && fin$pending == 0 &&
              fin$s == "b" && fin$st == 5, info = h$final)
})

test_that("settings: the last value of a repeated name wins (user SETTINGS are appended)", {
  algo <- tempfile(fileext = ".R")
  writeLines('s <- eq_settings(); eq_done(list(n = length(s), seed = s$seed, mode = s$mode))', algo)
  h <- fake_eq_run(algo, "seed = 1, mode = 'batch', seed = 7", workers = 1)
  fin <- jsonlite::fromJSON(h$final)
  expect_equal(fin$seed, 7)
  expect_equal(fin$n, 2)
  expect_equal(fin$mode, "batch")
})
