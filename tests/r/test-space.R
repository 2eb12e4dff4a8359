# eq/R/space.R: loading CANDLE ParamHelpers space files, exporting them as JSON, transforming
# points, and the one-paragraph errors for bad files.

test_that("bench and example spaces load and export", {
  for (f in c("bench_branin.R", "bench_hartmann6.R", "bench_mixed.R", "candle_example_space.R")) {
    ps <- eq_space_load(space(f))
    js <- jsonlite::fromJSON(eq_space_json(ps, space(f)), simplifyVector = FALSE)
    expect_equal(length(js$params), length(ps$pars), info = f)
  }
  js <- jsonlite::fromJSON(eq_space_json(eq_space_load(space("candle_example_space.R")), "x"), simplifyVector = FALSE)
  byid <- setNames(js$params, vapply(js$params, `[[`, "", "id"))
  expect_true(isTRUE(byid$batch_size$trafo) && identical(byid$dropout$trafo, FALSE), info = "trafo flags")
  expect_true(identical(byid$dense$values[[1]], 64L) || identical(byid$dense$values[[1]], 64),
              info = "numeric discrete values are numbers")
  expect_identical(byid$activation$values[[1]], "relu")   # string discrete values are strings
  expect_identical(byid$batch_normalization$type, "logical")
  js <- jsonlite::fromJSON(eq_space_json(eq_space_load(space("bench_hartmann6.R")), "x"), simplifyVector = FALSE)
  expect_identical(js$params[[1]]$values, list("hartmann6"))   # a one-valued discrete stays a JSON array of strings
})

test_that("transform applies trafo, keeps types", {
  ps <- eq_space_load(space("candle_example_space.R"))
  x <- eq_space_transform(ps, list(batch_size = 7, learning_rate = -3, dropout = 0.5, epochs = 4,
                                   activation = "tanh", optimizer = "sgd", dense = "256",
                                   batch_normalization = "FALSE"))
  expect_identical(x$batch_size, 128L)                    # 2L^7 is integer 128
  expect_true(isTRUE(all.equal(x$learning_rate, 1e-3)), info = "10^-3")
  expect_identical(x$epochs, 4L)                          # integer stays integer
  expect_identical(x$dense, 256)                          # a numeric discrete value comes out as a number
  expect_true(identical(x$activation, "tanh") && identical(x$batch_normalization, FALSE), info = "discrete/logical")
  js <- eq_point_json(x)
  expect_true(grepl('"batch_size":128', js) && grepl('"dense":256', js) && grepl('"batch_normalization":false', js) &&
              grepl('"activation":"tanh"', js), info = paste("JSON encoding:", js))
})

test_that("bad files give one clear paragraph", {
  expect_error_paragraph(eq_space_load("/nonexistent/space.R"), "/nonexistent/space.R' does not exist")
  f <- tmp_space(c("param.set <- makeParamSet(", "  makeNumericParam('x', lower = 0 upper = 1))"))
  m <- expect_error_paragraph(eq_space_load(f), "is not valid R: unexpected symbol at line 2")
  expect_true(grepl(basename(f), m), info = "names the file")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericParam('x', lower = 0, upper = undefined_var))")),
                         "failed while being evaluated at the expression starting on line 1.*undefined_var")
  expect_error_paragraph(eq_space_load(tmp_space("ps <- makeParamSet(makeNumericParam('x', 0, 1))")),
                         "defines no `param.set` \\(it defines: ps\\)")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- list(x = 1)")), "not a ParamHelpers ParamSet")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- makeParamSet()")), "is empty")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- makeParamSet(makeDiscreteParam('act', values = character(0)))")),
                         "No possible value for discrete parameter act")
  bad <- makeParamSet(makeNumericParam("x", 0, 1)); bad$pars$x$type <- "discrete"; bad$pars$x$values <- list()
  expect_error_paragraph(eq_space_check(bad, "f.R"), "discrete parameter 'x' has no values")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericVectorParam('v', len = 2, lower = 0, upper = 1))")),
                         "type 'numericvector', which is not supported.*one scalar parameter per element")
  expect_error_paragraph(eq_space_load(tmp_space("param.set <- makeParamSet(makeNumericParam('x'))")), "infinite bound")
})

test_that("Rscript eq/R/space.R export/transform (good and bad)", {
  rs <- file.path(R.home("bin"), "Rscript")
  out <- system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "export", space("bench_mixed.R")), stdout = TRUE, stderr = TRUE)
  expect_null(attr(out, "status"))                       # exit status 0
  js <- jsonlite::fromJSON(paste(out, collapse = ""), simplifyVector = FALSE)
  expect_true(length(js$params) == 5L && js$params[[5]]$id == "cat", info = "mixed space JSON")
  errf <- tempfile()
  bad <- tmp_space("param.set <- makeParamSet(makeNumericParam('x', 0, 1)")
  st <- suppressWarnings(system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "export", bad), stdout = TRUE, stderr = errf))
  expect_identical(attr(st, "status"), 1L)               # a bad file exits 1
  err <- readLines(errf)
  expect_true(length(err) == 1L && grepl("not valid R", err) && grepl(basename(bad), err),
              info = paste("one-paragraph stderr:", paste(err, collapse = "|")))
  out <- system2(rs, c(file.path(EQ_HOME, "eq", "R", "space.R"), "transform", space("candle_example_space.R"),
                       shQuote('[{"batch_size": 5, "dense": "64"}, {"batch_size": 10, "learning_rate": -1}]')), stdout = TRUE)
  pts <- jsonlite::fromJSON(paste(out, collapse = ""), simplifyVector = FALSE)
  expect_true(identical(pts[[1]]$batch_size, 32L) && identical(pts[[2]]$batch_size, 1024L) && pts[[2]]$learning_rate == 0.1,
              info = paste("transform CLI:", paste(out, collapse = "")))
})

test_that("a JSON space (SPACE=file.json) loads as the ParamSet it was exported from", {
  for (f in c("bench_branin.R", "bench_mixed.R", "bench_hartmann6.R")) {
    ps <- eq_space_load(space(f))
    js <- tempfile(fileext = ".json")
    writeLines(eq_space_json(ps), js)            # without "source": the JSON stands alone
    back <- eq_space_load(js)
    expect_identical(eq_space_json(back), eq_space_json(ps), info = f)
  }
  # trafo: read from the R source the JSON names; without one, one clear paragraph
  ps <- eq_space_load(space("candle_example_space.R"))
  js <- tempfile(fileext = ".json")
  writeLines(eq_space_json(ps, space("candle_example_space.R")), js)
  expect_identical(eq_space_json(eq_space_load(js)), eq_space_json(ps))
  writeLines(eq_space_json(ps), js)
  expect_error(eq_space_load(js), "\"trafo\": true but no readable R \"source\"", class = "eq_space_error")
  writeLines('{"params": [{"id": "a", "type": "character"}]}', js)
  expect_error(eq_space_load(js), "parameter 'a' has type 'character'", class = "eq_space_error")
  writeLines('{"params": [{"id": "a", "type": "numeric", "lower": 0}]}', js)
  expect_error(eq_space_load(js), "parameter 'a' is not valid", class = "eq_space_error")
  writeLines('{"params": ', js)
  expect_error(eq_space_load(js), "is not valid JSON", class = "eq_space_error")
})
