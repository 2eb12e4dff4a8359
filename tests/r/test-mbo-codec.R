# r_algorithms/mbo/codec.R: untransformed points, normalized coordinates, surrogate features,
# what the pilot receives, sampling and duplicate checks.

test_that("info describes every parameter type; constants are not searched", {
  ps <- eq_space_load(space("bench_mixed.R"))
  info <- mbo_info(ps)
  expect_equal(unname(vapply(info, `[[`, "", "type")), c("discrete", "numeric", "numeric", "integer", "discrete"))
  expect_true(info[[1]]$const)                         # function = "mixed" only
  expect_equal(info[[5]]$levels, c("a", "b", "c", "d"))
  expect_equal(c(info[[4]]$lower, info[[4]]$upper), c(1, 20))
  S <- mbo_test_state(ps)
  expect_equal(unname(S$act), 2:5)
  ps2 <- makeParamSet(makeNumericParam("x", 0, 1), makeDiscreteParam("k", values = c("a", "b"), requires = quote(x > 0.5)))
  expect_error_paragraph(mbo_info(ps2), "parameter 'k' has `requires`.*use ALGO=random")
})

test_that("normalized coordinates: numeric/integer in [0, 1], discrete as the level index", {
  info <- mbo_info(eq_space_load(space("bench_mixed.R")))
  X <- data.frame(`function` = "mixed", x1 = c(-1, 0, 1), x2 = c(1, -1, 0), n = c(1, 20, 1), cat = c("d", "a", "b"),
                  check.names = FALSE, stringsAsFactors = FALSE)
  N <- mbo_norm(info, X)
  expect_equal(N[, 2], c(0, 0.5, 1))
  expect_equal(N[, 4], c(0, 1, 0))
  expect_equal(N[, 5], c(4, 1, 2))
  expect_equal(N[, 1], c(1, 1, 1))
})

test_that("samples stay in their box and use only the box's levels", {
  info <- mbo_info(eq_space_load(space("bench_mixed.R")))
  box <- mbo_full_box(info)
  box[[2]]$lower <- 0.2; box[[2]]$upper <- 0.4; box[[4]]$lower <- 3; box[[4]]$upper <- 5
  box[[5]]$levels <- c("b", "c")
  X <- mbo_sample(info, box, 200L)
  expect_true(all(X$x1 >= 0.2 & X$x1 <= 0.4))
  expect_true(all(X$n %in% 3:5))
  expect_setequal(unique(X$cat), c("b", "c"))
  Y <- mbo_sample_boxes(info, list(box, mbo_full_box(info)), 100L)
  expect_equal(nrow(Y), 200L)
  expect_true(all(Y$x1[1:100] >= 0.2 & Y$x1[1:100] <= 0.4))
  expect_true(any(Y$x1[101:200] < 0))
})

test_that("duplicates are judged by dup.tol of each range (max metric); random_distinct avoids them", {
  E <- rbind(c(0.5, 0.5), c(0.1, 0.9))
  expect_true(mbo_is_dup(c(0.50005, 0.49995), E, 1e-4))
  expect_false(mbo_is_dup(c(0.5002, 0.5), E, 1e-4))
  expect_false(mbo_is_dup(c(0.5, 0.5), NULL, 1e-4))
  expect_equal(mbo_min_dist2(c(0.1, 0.5), E), 0.16)
  # a 2 x 2 space with three points taken has one distinct point left
  ps <- makeParamSet(makeIntegerParam("n", 1, 2), makeLogicalParam("b"))
  S <- mbo_test_state(ps)
  taken <- data.frame(n = c(1, 1, 2), b = c("TRUE", "FALSE", "TRUE"), stringsAsFactors = FALSE)
  r <- mbo_random_distinct(S, mbo_norm(S$info, taken))
  expect_equal(r$X$n, 2)
  expect_equal(r$X$b, "FALSE")
  all4 <- rbind(taken, data.frame(n = 2, b = "FALSE"))
  expect_null(mbo_random_distinct(S, mbo_norm(S$info, all4)))
})

test_that("features hold the searched parameters only, discretes as factors with every level", {
  ps <- eq_space_load(space("bench_mixed.R"))
  S <- mbo_test_state(ps)
  X <- data.frame(`function` = "mixed", x1 = 0.1, x2 = 0.2, n = 3, cat = "c", check.names = FALSE, stringsAsFactors = FALSE)
  Fx <- mbo_features(S, X)
  expect_equal(names(Fx), paste0("v", 2:5))
  expect_true(is.factor(Fx$v5))
  expect_equal(levels(Fx$v5), c("a", "b", "c", "d"))
})

test_that("the pilot receives transformed values of the right types", {
  ps <- eq_space_load(space("candle_example_space.R"))
  S <- mbo_test_state(ps)
  X <- mbo_sample(S$info, mbo_full_box(S$info), 5L)
  P <- mbo_to_farm(S, X)
  expect_length(P, 5L)
  for (p in P) {
    expect_true(is.integer(p$batch_size) && p$batch_size %in% 2^(5:10))
    expect_true(p$learning_rate >= 1e-5 && p$learning_rate <= 0.1)
    expect_true(is.numeric(p$dense))
    expect_true(is.logical(p$batch_normalization))
  }
})
