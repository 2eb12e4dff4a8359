# Encoding of points and decoding of results in eq/R/EQ.R (the R side of the EQ wire format).
EQ_HOME <- Sys.getenv("EQ_HOME")
source(file.path(EQ_HOME, "eq", "R", "EQ.R"))

decode <- function(txt) jsonlite::fromJSON(txt, simplifyVector = FALSE)

test_that("types survive: integers stay integers, doubles round-trip exactly, logicals, strings", {
  pt <- list(i = 7L, d = 0.1 + 0.2, third = 1 / 3, big = 1e20, tiny = 1e-300, whole = 5,
             neg = -2.5, b = TRUE, f = FALSE, s = "relu")
  txt <- eq_point_json(pt)
  expect_equal(txt, paste0('{"i":7,"d":0.30000000000000004,"third":0.3333333333333333,',
                           '"big":1e+20,"tiny":1e-300,"whole":5,"neg":-2.5,"b":true,"f":false,',
                           '"s":"relu"}'))
  back <- decode(txt)
  expect_identical(back$i, 7L)
  expect_identical(back$d, 0.1 + 0.2)
  expect_identical(back$third, 1 / 3)
  expect_identical(back$b, TRUE)
  expect_identical(back$s, "relu")
})

test_that("strings with quotes, backslashes, ';', control characters and UTF-8 are escaped", {
  s <- c('say "hi"', "back\\slash", "a;b", "tab\there", "new\nline", "bell\a", "caf\u00e9 \u2713",
         "", "/slash")
  txt <- eq_points_json(lapply(s, function(v) list(act = v)))
  back <- decode(txt)
  expect_equal(vapply(back, function(p) p$act, ""), s)
  # identical to jsonlite's own escaping, character by character
  all_ascii <- vapply(1:127, function(i) rawToChar(as.raw(i)), "")
  expect_equal(.eq_str_json(all_ascii), vapply(all_ascii, .eq_json, "", USE.NAMES = FALSE))
})

test_that("the plain EMEWS batch joins objects with ';' and a ';' inside a value stays inside", {
  pts <- list(list(act = "a;b", x = 1), list(act = "c", x = 2L))
  expect_equal(eq_points_json(pts, sep = ";"), '{"act":"a;b","x":1};{"act":"c","x":2}')
  expect_equal(paste(vapply(pts, eq_point_json, ""), collapse = ";"), eq_points_json(pts, sep = ";"))
})

test_that("NA and NULL leave the parameter out; Inf becomes null; factors give their labels", {
  expect_equal(eq_point_json(list(a = NA, b = 1L, c = NULL, d = NA_character_, e = NaN)), '{"b":1}')
  expect_equal(eq_point_json(list(x = Inf, y = -Inf)), '{"x":null,"y":null}')
  expect_equal(eq_point_json(list(act = factor("tanh", levels = c("relu", "tanh")))), '{"act":"tanh"}')
  expect_equal(eq_point_json(list()), "{}")
  expect_equal(eq_points_json(list()), "[]")
  expect_equal(eq_points_json(data.frame()), "[]")
})

test_that("longer vectors and nested lists go through jsonlite; one-element lists are unwrapped", {
  expect_equal(eq_point_json(list(v = c(1, 2.5), l = list(a = 1L), w = list("x"))),
               '{"v":[1,2.5],"l":{"a":1},"w":"x"}')
})

test_that("a data.frame gives the same JSON as the equivalent list of points", {
  df <- data.frame(x1 = c(0.1, -3.25, NA), n = c(1L, 20L, 7L), cat = factor(c("a", "b", "a")),
                   l = c(TRUE, FALSE, NA), s = c("p;q", 'r"s', "t"), stringsAsFactors = FALSE)
  rows <- lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))
  expect_equal(eq_points_json(df), eq_points_json(rows))
  expect_equal(eq_points_json(df),
               paste0('[{"x1":0.1,"n":1,"cat":"a","l":true,"s":"p;q"},',
                      '{"x1":-3.25,"n":20,"cat":"b","l":false,"s":"r\\"s"},',
                      '{"n":7,"cat":"a","s":"t"}]'))
  expect_equal(eq_point_json(df[2, ]), '{"x1":-3.25,"n":20,"cat":"b","l":false,"s":"r\\"s"}')
})

test_that("a single named list is one point; malformed points are refused with a message", {
  expect_equal(eq_points_json(list(x = 1, y = "a")), '[{"x":1,"y":"a"}]')
  expect_error(eq_points_json(1:3), "points must be a list of named lists or a data.frame")
  expect_error(eq_points_json(list(list(1, 2))), "each point must be a named list")
})

test_that("batches are encoded vectorised: 5,000 mixed points take well under a second of CPU", {
  set.seed(1)
  n <- 5000L
  pts <- lapply(seq_len(n), function(i) list(x1 = runif(1, -5, 10), x2 = runif(1), n = sample(20L, 1),
                                             cat = sample(c("a", "b", "c"), 1), l = runif(1) < 0.5))
  cpu <- function(expr) { t <- system.time(expr); t[["user.self"]] + t[["sys.self"]] }
  t_list <- cpu(txt <- eq_points_json(pts))
  df <- do.call(rbind, lapply(pts[1:1000], as.data.frame, stringsAsFactors = FALSE))
  t_df <- cpu(eq_points_json(df))
  back <- decode(txt)
  expect_equal(length(back), n)
  expect_identical(back[[4321]]$x1, pts[[4321]]$x1)
  expect_identical(back[[4321]]$n, pts[[4321]]$n)
  # the per-value jsonlite encoder needed about 2.7 ms a point (13 s here)
  expect_lt(t_list, 2)
  expect_lt(t_df, 1)
})

test_that("results are decoded with one JSON parse: ids integer, failed objective NA, defaults", {
  res <- list(list(id = 3, params = list(x = 1), status = "completed", objective = 0.5),
              list(id = 4, status = "failed", objective = NULL),
              list(id = 5, objective = 2))
  reply <- as.character(jsonlite::toJSON(list(eq = "results", results = res, pending = 1L, free = 2L,
                                              workers = 3L), auto_unbox = TRUE, null = "null"))
  sent <- character(0)
  # the EQ helpers find OUT_put/IN_get in the global environment: put ours there for this test
  # and restore whatever was there before
  g <- globalenv()
  saved <- mget(c("OUT_put", "IN_get"), envir = g, ifnotfound = list(NULL))
  on.exit(for (nm in names(saved))
    if (is.null(saved[[nm]])) suppressWarnings(rm(list = nm, envir = g)) else assign(nm, saved[[nm]], envir = g))
  assign("OUT_put", function(s) sent <<- c(sent, s), envir = g)
  assign("IN_get", function() reply, envir = g)
  r <- eq_results(min = 2)
  expect_equal(sent, '{"eq":"results","min":2}')
  expect_identical(vapply(r$results, function(x) x$id, 0L), c(3L, 4L, 5L))
  expect_identical(vapply(r$results, function(x) x$objective, 0), c(0.5, NA_real_, 2))
  expect_equal(vapply(r$results, function(x) x$status, ""), c("completed", "failed", "completed"))
  expect_equal(r[c("pending", "free", "workers")], list(pending = 1L, free = 2L, workers = 3L))
  expect_equal(eq_plain_results("0.5;NaN;1e+06"), c(0.5, NaN, 1e6))
})
