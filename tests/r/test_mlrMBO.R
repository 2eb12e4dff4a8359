# Tests for eq/R/space.R, eq/R/EQ.R and r_algorithms/mlrMBO.R through the in-process fake driver.
# Run from anywhere:  Rscript tests/r/test_mlrMBO.R      (exit status 0 = all passed)
# Small focus-search settings keep it fast; the search-quality benchmark is
# benchmarks/optimizer_quality.py.

.this <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1]))
EQ_HOME <- normalizePath(file.path(dirname(.this), "..", ".."))
source(file.path(EQ_HOME, "eq", "R", "sim.R"))
source(file.path(EQ_HOME, "eq", "R", "EQ.R"))
source(file.path(EQ_HOME, "eq", "R", "space.R"))

failures <- 0L
check <- function(name, expr) {
  t0 <- proc.time()[["elapsed"]]
  res <- tryCatch({ force(expr); TRUE }, error = function(e) { message("  error: ", conditionMessage(e)); FALSE })
  if (!isTRUE(res)) failures <<- failures + 1L
  cat(sprintf("%-4s %-62s %5.1f s\n", if (isTRUE(res)) "ok" else "FAIL", name, proc.time()[["elapsed"]] - t0))
}
expect <- function(cond, ...) if (!isTRUE(cond)) stop(paste0(...), call. = FALSE)
expect_error_like <- function(expr, pattern) {
  msg <- tryCatch({ force(expr); NULL }, error = function(e) conditionMessage(e))
  expect(!is.null(msg), "no error raised; expected /", pattern, "/")
  expect(grepl(pattern, msg), "error message does not match /", pattern, "/: ", msg)
  expect(!grepl("\n", msg), "error message is not one paragraph: ", msg)
  invisible(msg)
}
tmp_space <- function(text) { f <- tempfile(fileext = ".R"); writeLines(text, f); f }
space <- function(name) file.path(EQ_HOME, "workflows", name)

FAST <- "verbose = FALSE, fs.points = 150, fs.maxit = 3, fs.restarts = 2, num.trees = 30"
mbo <- function(settings, ...) suppressMessages(fake_eq_run(file.path(EQ_HOME, "r_algorithms", "mlrMBO.R"),
                                                            paste(settings, FAST, sep = ", "), ...))
params_df <- function(h) do.call(rbind, lapply(fake_eq_trials(h)$params, function(p) as.data.frame(p, optional = TRUE)))

# --- eq/R/space.R -------------------------------------------------------------------------------
check("space: bench and example spaces load and export", {
  for (f in c("bench_branin.R", "bench_hartmann6.R", "bench_mixed.R", "candle_example_space.R")) {
    ps <- eq_space_load(space(f))
    js <- jsonlite::fromJSON(eq_space_json(ps, space(f)), simplifyVector = FALSE)
    expect(length(js$params) == length(ps$pars), f)
  }
  js <- jsonlite::fromJSON(eq_space_json(eq_space_load(space("candle_example_space.R")), "x"), simplifyVector = FALSE)
  byid <- setNames(js$params, vapply(js$params, `[[`, "", "id"))
  expect(isTRUE(byid$batch_size$trafo) && identical(byid$dropout$trafo, FALSE), "trafo flags")
  expect(identical(byid$dense$values[[1]], 64L) || identical(byid$dense$values[[1]], 64), "numeric discrete values are numbers")
  expect(identical(byid$activation$values[[1]], "relu"), "string discrete values are strings")
  expect(identical(byid$batch_normalization$type, "logical"), "logical type")
  js <- jsonlite::fromJSON(eq_space_json(eq_space_load(space("bench_hartmann6.R")), "x"), simplifyVector = FALSE)
  expect(identical(js$params[[1]]$values, list("hartmann6")), "one-valued discrete stays a JSON array of strings")
})

check("space: transform applies trafo, keeps types", {
  ps <- eq_space_load(space("candle_example_space.R"))
  x <- eq_space_transform(ps, list(batch_size = 7, learning_rate = -3, dropout = 0.5, epochs = 4,
                                   activation = "tanh", optimizer = "sgd", dense = "256",
                                   batch_normalization = "FALSE"))
  expect(identical(x$batch_size, 128L), "2L^7 should be integer 128, got ", deparse(x$batch_size))
  expect(isTRUE(all.equal(x$learning_rate, 1e-3)), "10^-3")
  expect(identical(x$epochs, 4L), "integer stays integer")
  expect(identical(x$dense, 256), "numeric discrete value comes out as a number")
  expect(identical(x$activation, "tanh") && identical(x$batch_normalization, FALSE), "discrete/logical")
  js <- eq_point_json(x)
  expect(grepl('"batch_size":128', js) && grepl('"dense":256', js) && grepl('"batch_normalization":false', js) &&
         grepl('"activation":"tanh"', js), "JSON encoding: ", js)
})

check("space: bad files give one clear paragraph", {
  expect_error_like(eq_space_load("/nonexistent/space.R"), "/nonexistent/space.R' does not exist")
  f <- tmp_space(c("param.set <- makeParamSet(", "  makeNumericParam('x', lower = 0 upper = 1))"))
  m <- expect_error_like(eq_space_load(f), "is not valid R: unexpected symbol at line 2")
  expect(grepl(basename(f), m), "names the file")
  expect_error_like(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericParam('x', lower = 0, upper = undefined_var))")),
                    "failed while being evaluated at the expression starting on line 1.*undefined_var")
  expect_error_like(eq_space_load(tmp_space("ps <- makeParamSet(makeNumericParam('x', 0, 1))")),
                    "defines no `param.set` \\(it defines: ps\\)")
  expect_error_like(eq_space_load(tmp_space("param.set <- list(x = 1)")), "not a ParamHelpers ParamSet")
  expect_error_like(eq_space_load(tmp_space("param.set <- makeParamSet()")), "is empty")
  expect_error_like(eq_space_load(tmp_space("param.set <- makeParamSet(makeDiscreteParam('act', values = character(0)))")),
                    "No possible value for discrete parameter act")
  bad <- makeParamSet(makeNumericParam("x", 0, 1)); bad$pars$x$type <- "discrete"; bad$pars$x$values <- list()
  expect_error_like(eq_space_check(bad, "f.R"), "discrete parameter 'x' has no values")
  expect_error_like(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericVectorParam('v', len = 2, lower = 0, upper = 1))")),
                    "type 'numericvector', which is not supported.*one scalar parameter per element")
  expect_error_like(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericParam('x'))")), "infinite bound")
})

check("space: Rscript eq/R/space.R export/transform (good and bad)", {
  rs <- file.path(R.home("bin"), "Rscript")
  out <- system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "export", space("bench_mixed.R")), stdout = TRUE, stderr = TRUE)
  expect(is.null(attr(out, "status")), "exit status ", attr(out, "status"))
  js <- jsonlite::fromJSON(paste(out, collapse = ""), simplifyVector = FALSE)
  expect(length(js$params) == 5L && js$params[[5]]$id == "cat", "mixed space JSON")
  errf <- tempfile()
  bad <- tmp_space("param.set <- makeParamSet(makeNumericParam('x', 0, 1)")
  st <- suppressWarnings(system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "export", bad), stdout = TRUE, stderr = errf))
  expect(identical(attr(st, "status"), 1L), "bad file should exit 1")
  err <- readLines(errf)
  expect(length(err) == 1L && grepl("not valid R", err) && grepl(basename(bad), err), "one-paragraph stderr: ", paste(err, collapse = "|"))
  out <- system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "transform", space("candle_example_space.R"),
                       shQuote('[{"batch_size": 5, "dense": "64"}, {"batch_size": 10, "learning_rate": -1}]')), stdout = TRUE)
  pts <- jsonlite::fromJSON(paste(out, collapse = ""), simplifyVector = FALSE)
  expect(identical(pts[[1]]$batch_size, 32L) && identical(pts[[2]]$batch_size, 1024L) && pts[[2]]$learning_rate == 0.1,
         "transform CLI: ", paste(out, collapse = ""))
})

# --- eq/R/EQ.R and the fake driver ---------------------------------------------------------------
check("EQ: JSON encoding of points and the plain EMEWS convention", {
  js <- eq_points_json(data.frame(a = c("x", "y"), n = c(1L, 2L), f = c(TRUE, FALSE), v = c(0.1 + 0.2, 32)))
  expect(identical(js, '[{"a":"x","n":1,"f":true,"v":0.30000000000000004},{"a":"y","n":2,"f":false,"v":32}]'), js)
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
  expect(abs(fin$ys[2] - 0.397887) < 1e-5 && identical(fin$ids, 3:5) && fin$n == 3 && fin$pending == 0 &&
         fin$s == "b" && fin$st == 5, h$final)
})

# --- mlrMBO -----------------------------------------------------------------------------------
branin <- function(mode, budget = 24, extra = "") sprintf(
  "max.budget = %d, design.size = 8, propose.points = 4, workers = 4, seed = 3, mode = '%s', param.set.file = '%s'%s",
  budget, mode, space("bench_branin.R"), extra)

check("mlrMBO batch: reaches the budget, improves on the design", {
  h <- mbo(branin("batch", 24))
  tr <- fake_eq_trials(h)
  expect(nrow(tr) == 24L && all(tr$status == "completed"), "24 completed trials, got ", nrow(tr))
  fin <- jsonlite::fromJSON(h$final)
  expect(fin$evaluations == 24 && fin$mode == "batch" && fin$iterations == 4, h$final)
  expect(min(tr$objective[9:24]) < min(tr$objective[1:8]), "no improvement over the design: ",
         min(tr$objective[1:8]), " -> ", min(tr$objective[9:24]))
  expect(abs(fin$value - min(tr$objective)) < 1e-12 && fin$id == which.min(tr$objective), "final names the best")
  msgs <- h$messages
  expect(sum(grepl('^\\{"eq":"batch"', msgs)) == 5L, "one design batch and four proposal batches")
})

check("mlrMBO batch: improves on its design in >= 9 of 10 seeds (Branin, q = 4, design 8, budget 24)", {
  imp <- vapply(1:10, function(sd) {
    h <- mbo(sub("seed = 3", paste("seed =", sd), branin("batch", 24), fixed = TRUE))
    y <- fake_eq_trials(h)$objective
    min(y[9:24]) < min(y[1:8])
  }, TRUE)
  expect(sum(imp) >= 9L, "improved in only ", sum(imp), " of 10 seeds (failed: ", paste(which(!imp), collapse = " "), ")")
})

check("mlrMBO: y.trafo variants and a batch keep proposals apart", {
  for (tr in c("none", "slog", "log", "rank")) {
    h <- mbo(branin("batch", 16, sprintf(", y.trafo = '%s', interleave.random.points = 1", tr)))
    expect(nrow(fake_eq_trials(h)) == 16L, tr)
  }
  h <- mbo(branin("batch", 24, ", propose.points = 8, design.size = 8"))
  P <- as.matrix(params_df(h)[, c("x1", "x2")])
  P <- sweep(P, 2, c(-5, 0)) %*% diag(c(1 / 15, 1 / 15))
  for (b in list(9:16, 17:24)) expect(min(dist(P[b, ])) >= 0.05 / 4 - 1e-9, "batch points closer than batch.dist / 4")
  m <- tryCatch({ mbo(branin("batch", 16, ", y.trafo = 'cube'")); "no error" }, error = function(e) conditionMessage(e))
  expect(grepl("y.trafo = 'cube' is not supported", m), m)
})

check("mlrMBO stream: reaches the budget exactly, keeps workers busy", {
  h <- mbo(branin("stream", 40))
  tr <- fake_eq_trials(h)
  expect(nrow(tr) == 40L && all(tr$status == "completed"), "40 completed trials, got ", nrow(tr))
  fin <- jsonlite::fromJSON(h$final)
  expect(fin$evaluations == 40 && fin$mode == "stream", h$final)
  expect(h$max_busy == 4L, "all 4 workers used")
  u <- fake_eq_utilization(h)
  expect(u > 0.8, "utilization ", round(u, 3))
  expect(min(tr$objective[9:40]) < min(tr$objective[1:8]), "no improvement over the design")
  expect(any(grepl('^\\{"eq":"submit"', h$messages)) && !any(grepl('^\\{"eq":"batch"', h$messages)), "uses submit/results")
})

check("mlrMBO stream: max.iterations stops proposing", {
  h <- mbo(branin("stream", 50, ", max.iterations = 3"))
  fin <- jsonlite::fromJSON(h$final)
  expect(fin$iterations == 3 && nrow(fake_eq_trials(h)) < 50, h$final)
  expect(all(fake_eq_trials(h)$status == "completed"), "every submitted trial was collected")
})

check("mlrMBO: distinct proposals in a small integer x discrete space", {
  f <- tmp_space("param.set <- makeParamSet(makeIntegerParam('n', 1, 4), makeDiscreteParam('c', values = c('a', 'b', 'c')))")
  obj <- function(p) (p$n - 3)^2 + c(a = 0, b = 1, c = 2)[[p$c]]
  for (mode in c("batch", "stream")) {
    h <- suppressWarnings(mbo(sprintf("max.budget = 12, design.size = 4, propose.points = 4, workers = 4, seed = 1, mode = '%s', param.set.file = '%s'", mode, f),
                              objective = obj, workers = 4))
    P <- params_df(h)
    expect(nrow(P) == 12L && nrow(unique(P)) == 12L, mode, ": 12 distinct points expected, got ", nrow(unique(P)))
  }
})

check("mlrMBO: every discrete value in the design, trafo reaches the pilot", {
  obj <- function(p) (log2(p$batch_size) - 7)^2 + (log10(p$learning_rate) + 3)^2 + p$dropout +
    (p$activation != "relu") + (p$dense != 128) + p$batch_normalization
  h <- mbo(sprintf("max.budget = 16, design.size = 4, propose.points = 4, workers = 4, seed = 2, mode = 'batch', param.set.file = '%s'",
                   space("candle_example_space.R")), objective = obj, workers = 4)
  P <- lapply(fake_eq_trials(h)$params, identity)
  d <- P[1:4]
  expect(setequal(vapply(d, `[[`, "", "activation"), c("relu", "elu", "sigmoid", "tanh")), "all activations in the design")
  expect(setequal(vapply(d, `[[`, "", "optimizer"), c("adam", "sgd", "rmsprop")), "all optimizers in the design")
  expect(setequal(vapply(d, function(p) p$dense, 0), c(64, 128, 256, 512)), "all dense values (as numbers) in the design")
  expect(setequal(vapply(d, `[[`, TRUE, "batch_normalization"), c(TRUE, FALSE)), "both logical values in the design")
  bs <- vapply(P, function(p) p$batch_size, 0)
  expect(all(bs %in% 2^(5:10)) && all(vapply(P, function(p) is.integer(p$batch_size), TRUE)),
         "batch_size must be integer powers of two: ", paste(bs, collapse = " "))
  lr <- vapply(P, function(p) p$learning_rate, 0)
  expect(all(lr >= 1e-5 & lr <= 0.1), "learning_rate transformed")
  msg <- h$messages[grepl('^\\{"eq":"batch"', h$messages)][1]
  expect(grepl('"batch_size":[0-9]+,', msg) && grepl('"dense":[0-9]+,', msg), "integers/numbers unquoted in JSON: ", substr(msg, 1, 200))
})

check("mlrMBO: failed and timed-out trials are imputed, never best", {
  obj <- function(p) {
    if (p$x1 > 5) stop("diverged")
    if (p$x2 > 12) return(list(objective = NA, status = "timeout"))
    fake_eq_branin(p$x1, p$x2)
  }
  for (mode in c("batch", "stream")) {
    h <- mbo(branin(mode, 24), objective = obj)
    tr <- fake_eq_trials(h)
    fin <- jsonlite::fromJSON(h$final)
    expect(nrow(tr) == 24L && any(tr$status == "failed"), mode, ": 24 trials with failures")
    expect(fin$failed == sum(tr$status != "completed") && fin$best$x1 <= 5 && fin$best$x2 <= 12, mode, ": ", h$final)
    expect(mean(tr$status[9:24] != "completed") < mean(tr$status[1:8] != "completed") + 0.25,
           mode, ": the optimizer keeps proposing into the failing region")
  }
})

check("mlrMBO: design.size > max.budget fails before any trial", {
  m <- tryCatch({ mbo(branin("batch", 10, ", design.size = 20")); "no error" }, error = function(e) conditionMessage(e))
  m <- sub("^design", "design", m)
  expect(grepl("design.size \\(20\\) is larger than max.budget \\(10\\)", m), m)
  expect(length(fake_eq_last()$trials) == 0L, "trials were submitted")
  m <- tryCatch({ mbo("max.budget = 10, mode = 'batch'"); "no error" }, error = function(e) conditionMessage(e))
  expect(grepl("no param.set.file", m), m)
})

check("mlrMBO: a bad space file stops with the space error", {
  bad <- tmp_space("param.set <- makeParamSet(makeNumericParam('x', 0, 1)")
  m <- tryCatch({ mbo(sprintf("max.budget = 10, param.set.file = '%s'", bad)); "no error" }, error = function(e) conditionMessage(e))
  expect(grepl("is not valid R", m) && length(fake_eq_last()$trials) == 0L, m)
})

cat(if (failures == 0L) "all tests passed\n" else sprintf("%d test(s) FAILED\n", failures))
quit(status = if (failures == 0L) 0L else 1L, save = "no")
