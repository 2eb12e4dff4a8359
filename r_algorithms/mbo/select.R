# r_algorithms/mbo/select.R -- point selection: q points from the focus-search candidates by
# multi-point LCB (qLCB, mlrMBO's setMBOControlMultiPoint(method = "cb")), kept distinct and
# spaced.
#
# select = 'pool' (default): point i (i <= number of lambdas) is the candidate, of all chains, with
# the best LCB mean - lambda_i * se that is not within dup.tol of an evaluated, pending or already
# chosen point, and at least batch.dist (normalized Euclidean distance) away from the pending
# trials and the points already chosen in this round; the spacing is relaxed to batch.dist / 4, then dropped, when
# no candidate qualifies (batch.dist = 0: no spacing, as in mlrMBO). select = 'lambda' (mlrMBO):
# point i is the best point of lambda i's own focus search (the best of its restarts that
# qualifies in the same way), as mlrMBO's multi-point "cb" proposes. The remaining points
# (interleave.random.points), and any point without a qualifying candidate, are uniformly random
# distinct points. Returns the rows (untransformed) with attr(, "random") = the number of
# model-based points that had to be random.
mbo_select <- function(S, cand, lambdas, q, E, P0) {
  ctl <- S$ctl; info <- S$info
  qm <- length(lambdas)
  out <- vector("list", q); En <- E; nrand <- 0L
  Cx <- cand$X; Cm <- cand$mean; Cs <- cand$se
  Cn <- if (!is.null(Cx)) mbo_norm(info, Cx) else NULL
  B <- P0                  # points a new proposal keeps batch.dist away from
  d2 <- c(ctl$batch.dist^2, (ctl$batch.dist / 4)^2, 0)
  pool <- mbo_pool(Cn, P0)  # the candidates' distances to this round's points (scale.R)
  for (i in seq_len(q)) {
    got <- NULL
    if (i <= qm && identical(ctl$select, "lambda")) {
      # mlrMBO: point i is the best that the focus search of lambda i found (over its restarts)
      own <- which(cand$best$lambda == i)
      if (length(own) > 1L) own <- own[order(cand$best$crit[own])]
      if (length(own)) {
        Bn <- mbo_norm(info, cand$best$X[own, , drop = FALSE])
        k <- mbo_first_fit(Bn, seq_along(own), B, En, d2, ctl$dup.tol)
        if (!is.na(k)) got <- list(X = cand$best$X[own[k], , drop = FALSE], N = Bn[k, ])
      }
    } else if (i <= qm && !is.null(Cx)) {
      o <- order(Cm - lambdas[i] * Cs + runif(length(Cm)) * 1e-12)
      k <- mbo_pool_first_fit(pool, head(o, 2000L), En, d2, ctl$dup.tol)
      if (!is.na(k)) got <- list(X = Cx[k, , drop = FALSE], N = Cn[k, ])
    }
    if (is.null(got)) { got <- mbo_random_distinct(S, En); if (i <= qm) nrand <- nrand + 1L }
    if (is.null(got)) {   # the space is exhausted: accept a repeated point
      Xr <- mbo_sample(info, mbo_full_box(info), 1L); got <- list(X = Xr, N = mbo_norm(info, Xr)[1, ])
      warning("mlrMBO: no point distinct from the evaluated ones is left; repeating a point")
    }
    out[[i]] <- got$X
    En <- mbo_dup_add(En, got$N)
    B <- rbind(B, got$N)
    if (!is.null(pool) && i < q) mbo_pool_add(pool, got$N)
  }
  X <- do.call(rbind, out)
  rownames(X) <- NULL
  attr(X, "random") <- nrand
  X
}

# The first candidate (row k of Nc, k taken in the order of idx) that is not within tol of a row
# of En and keeps the spacing from the rows of B, trying each squared distance of d2 in turn
# (d2 = 0: no spacing); NA when none qualifies.
mbo_first_fit <- function(Nc, idx, B, En, d2, tol) {
  for (lev in d2) for (k in idx)
    if ((lev == 0 || mbo_min_dist2(Nc[k, ], B) >= lev) && !mbo_is_dup(Nc[k, ], En, tol)) return(k)
  NA_integer_
}
