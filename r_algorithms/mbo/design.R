# r_algorithms/mbo/design.R -- the initial design: its size (mlrMBO's 4 d, with the checks and
# the cap of the default at half the budget) and its points.

# Design size from the settings: design.size if given (checked against the budget and the
# discrete parameters), else max(4 d (2 d for the GP, below), largest number of discrete values), capped at half of
# max.budget when design.cap is TRUE (so a small budget still gets model-based rounds) but never
# below the largest number of discrete values. d = number of searched parameters. With nwarm
# warm-start points (warm.R) the design run is n0 - nwarm: the checks apply to that.
#
# gp = TRUE (the GP of gp.R will model the space: mbo_use_gp): the default is 2 d, but at least
# one round of the farm (propose.points, else workers, else 8), since a design smaller than the
# workers leaves them random points anyway. With its length-scale prior the GP needs fewer
# design points than the forest, and every point saved is a model-based one: on Hartmann6 (d = 6,
# batches of 8, budget 40) the median regret at 40 went from 0.72 (24 points) to 0.10 with 12
# (docs/mlrmbo.md, "Small budgets on numeric spaces"). Branin (d = 2) keeps its 8.
mbo_design_size <- function(ctl, d, maxlev, nwarm = 0L, gp = FALSE) {
  budget <- ctl$max.budget
  if (is.null(ctl$design.size)) {
    per <- if (isTRUE(gp)) {
      q <- c(ctl$propose.points, ctl$workers, 8L)[1]
      max(2L * d, as.integer(q))
    } else 4L * d
    n0 <- min(budget, max(per, maxlev, 2L))
    if (isTRUE(ctl$design.cap)) n0 <- min(n0, max(maxlev, 2L, budget %/% 2L))
    return(n0)
  }
  n0 <- suppressWarnings(as.integer(ctl$design.size))
  if (length(n0) != 1L || is.na(n0) || n0 < 1L)
    stop("mlrMBO: design.size must be a positive integer (got ", deparse(ctl$design.size), ").", call. = FALSE)
  if (n0 - nwarm > budget)
    stop("mlrMBO: design.size (", n0, ") is larger than max.budget (", budget, "): the initial design ",
         "alone would exceed the evaluation budget. Lower design.size (or leave it out for the ",
         "default max(4 * d, largest number of discrete values)) or raise max.budget.", call. = FALSE)
  if (n0 < maxlev && nwarm == 0L)
    stop("mlrMBO: design.size (", n0, ") is smaller than the number of values of a discrete ",
         "parameter (", maxlev, "), so the initial design cannot contain every value ",
         "(mlr-org/mlrMBO#454). Raise design.size to at least ", maxlev, ".", call. = FALSE)
  n0
}

# Latin hypercube design (maximin for small n) with every discrete value present at least once
mbo_design <- function(S, n) {
  d <- length(S$info)
  U <- if (n <= 1L) matrix(runif(d), 1L, d) else if (n <= 200L) lhs::maximinLHS(n, d) else lhs::randomLHS(n, d)
  X <- mbo_sample(S$info, mbo_full_box(S$info), n, U)
  for (j in seq_along(S$info)) {
    p <- S$info[[j]]
    if (is.null(p$levels)) next
    repeat {
      missing <- setdiff(p$levels, X[[j]])
      if (length(missing) == 0L) break
      counts <- table(factor(X[[j]], levels = p$levels))
      donor <- names(counts)[which.max(counts)]
      rows <- which(X[[j]] == donor)
      X[[j]][rows[sample.int(length(rows), 1L)]] <- missing[1]
    }
  }
  # distinct design points (matters for integer/discrete-only spaces)
  N <- mbo_norm(S$info, X)
  for (i in seq_len(nrow(X))[-1]) {
    if (mbo_is_dup(N[i, ], N[seq_len(i - 1L), , drop = FALSE], S$ctl$dup.tol)) {
      r <- mbo_random_distinct(S, N[seq_len(i - 1L), , drop = FALSE])
      if (!is.null(r)) { X[i, ] <- r$X; N[i, ] <- r$N }
    }
  }
  X
}
