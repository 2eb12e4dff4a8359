# r_algorithms/mbo/focus_search.R -- candidate search on the surrogate: mlrMBO's focus search
# (infillOptFocus: restarts x shrinking rounds x points), for q lambdas at once.
#
# The q LCB searches (one lambda per proposed point, times fs.restarts) run in lock step so that
# every round is one surrogate prediction call. The first round is shared: a uniform sample of
# fs.points per restart plus local.points perturbations of the best local.top evaluated points
# (SMAC's local search idea; local.points = 0 is mlrMBO's plain focus search). Every chain keeps
# its best few candidates of every round, and its box shrinks around its round best; the
# candidates of all chains go to point selection (select.R), and so does each chain's best over
# all rounds (mlrMBO's result of a focus search, for select = 'lambda').

# n points around the best evaluated points: every searched numeric/integer value moves by a
# normal step with sd s x its range, s drawn from {0.1, 0.03, 0.01} per point (integers move by at
# least one step with probability 1/2); each discrete value is redrawn with probability 1 / d.
mbo_local <- function(S, n) {
  ok <- which(S$status == "completed" & is.finite(S$y))
  if (!length(ok) || n < 1L || !length(S$act)) return(NULL)
  yy <- if (S$ctl$minimize) S$y[ok] else -S$y[ok]
  top <- ok[head(order(yy), S$ctl$local.top)]
  ctr <- top[sample.int(length(top), n, replace = TRUE, prob = rev(seq_along(top)))]
  X <- S$X[ctr, , drop = FALSE]
  sc <- sample(c(0.1, 0.03, 0.01), n, replace = TRUE)
  pflip <- 1 / length(S$act)
  for (j in S$act) {
    p <- S$info[[j]]
    if (p$type %in% c("numeric", "integer")) {
      r <- p$upper - p$lower
      v <- X[[j]] + rnorm(n) * sc * r
      if (p$type == "integer") {
        v <- round(v)
        still <- v == X[[j]] & runif(n) < 0.5
        v[still] <- v[still] + sample(c(-1, 1), sum(still), replace = TRUE)
      }
      # reflect at the bounds
      v <- ifelse(v < p$lower, 2 * p$lower - v, ifelse(v > p$upper, 2 * p$upper - v, v))
      X[[j]] <- pmin(p$upper, pmax(p$lower, v))
    } else {
      flip <- runif(n) < pflip
      X[[j]][flip] <- p$levels[sample.int(length(p$levels), sum(flip), replace = TRUE)]
    }
  }
  rownames(X) <- NULL
  X
}


# shrink a focus-search box around x (mlrMBO's rule: numeric range halved around x, integers
# rounded outwards; a discrete parameter loses one random value other than x's)
mbo_shrink <- function(info, box, x) {
  for (j in seq_along(info)) {
    p <- info[[j]]; b <- box[[j]]; v <- x[[j]]
    if (p$type %in% c("numeric", "integer")) {
      r <- b$upper - b$lower
      lo <- max(b$lower, v - r / 4); hi <- min(b$upper, v + r / 4)
      if (p$type == "integer") { lo <- floor(lo); hi <- ceiling(hi) }
      box[[j]]$lower <- lo; box[[j]]$upper <- hi
    } else if (length(b$levels) > 1L) {
      drop <- setdiff(b$levels, v)
      box[[j]]$levels <- setdiff(b$levels, drop[sample.int(length(drop), 1L)])
    }
  }
  box
}

# The focus search for lambdas (one per model-based point). `predict(X)` returns the surrogate's
# list(mean, se) for untransformed rows X; E holds the normalized coordinates of every submitted
# point (a chain's box is centred on its best candidate that is not one of them).
# Returns the candidates (X, their mean and se); best, each chain's best (X, its LCB value crit,
# the index of its lambda); and nloc, the points per chain in later rounds:
# min(fs.points, fs.budget / (q * fs.restarts * (fs.maxit - 1))), at least 50.
mbo_focus_search <- function(S, model, lambdas, E, predict) {
  ctl <- S$ctl; info <- S$info
  qm <- length(lambdas)
  R <- ctl$fs.restarts; N0 <- ctl$fs.points; maxit <- ctl$fs.maxit
  nloc <- if (maxit > 1L) max(50L, min(N0, floor((ctl$fs.budget - R * N0) / (qm * R * (maxit - 1L))))) else N0
  full <- mbo_full_box(info)
  keep <- 8L  # candidates kept per chain and round
  # chains: (lambda i, restart r); chain c = (r - 1) * qm + i
  nch <- qm * R
  boxes <- rep(list(full), nch)
  candX <- list(); candM <- list(); candS <- list()
  # per chain, its best candidate over all rounds (what mlrMBO's focus search returns)
  bestX <- vector("list", nch); bestC <- rep(Inf, nch)
  pool <- mbo_sample(info, full, R * N0)
  loc <- if (model$kind != "none") mbo_local(S, ctl$local.points) else NULL
  nl <- if (is.null(loc)) 0L else nrow(loc)
  if (nl) pool <- rbind(pool, loc)
  pp <- predict(pool)
  for (it in seq_len(maxit)) {
    if (it == 1L) {
      Xs <- pool; pm <- pp$mean; ps <- pp$se
      chain_rows <- lapply(seq_len(nch), function(c) { r <- (c - 1L) %/% qm; c(r * N0 + seq_len(N0), R * N0 + seq_len(nl)) })
    } else {
      Xs <- mbo_sample_boxes(info, boxes, nloc)
      pr <- predict(Xs); pm <- pr$mean; ps <- pr$se
      chain_rows <- lapply(seq_len(nch), function(c) (c - 1L) * nloc + seq_len(nloc))
    }
    Ns <- mbo_norm(info, Xs)
    taken <- integer(0)
    for (c in seq_len(nch)) {
      i <- (c - 1L) %% qm + 1L
      rows <- chain_rows[[c]]
      crit <- pm[rows] - lambdas[i] * ps[rows]
      o <- order(crit + runif(length(crit)) * 1e-12)   # random tie breaking (trees are piecewise constant)
      # round best that is not an evaluated/pending point: the next box is centred on it
      center <- NA_integer_
      for (k in head(o, 50L)) {
        if (!mbo_is_dup(Ns[rows[k], ], E, ctl$dup.tol)) { center <- k; break }
      }
      if (is.na(center)) next
      if (crit[center] < bestC[c]) { bestC[c] <- crit[center]; bestX[[c]] <- Xs[rows[center], , drop = FALSE] }
      taken <- c(taken, rows[head(o, keep)])
      if (it < maxit) boxes[[c]] <- mbo_shrink(info, boxes[[c]], Xs[rows[center], , drop = FALSE])
    }
    taken <- unique(taken)
    if (length(taken)) {
      candX <- c(candX, list(Xs[taken, , drop = FALSE])); candM <- c(candM, list(pm[taken])); candS <- c(candS, list(ps[taken]))
    }
  }
  found <- which(is.finite(bestC))
  list(X = if (length(candX)) do.call(rbind, candX) else NULL, mean = unlist(candM), se = unlist(candS),
       nloc = nloc,
       best = list(X = if (length(found)) do.call(rbind, bestX[found]) else NULL, crit = bestC[found],
                   lambda = (found - 1L) %% qm + 1L))
}
