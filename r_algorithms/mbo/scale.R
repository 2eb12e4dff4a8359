# r_algorithms/mbo/scale.R -- what keeps a proposal cheap after thousands of evaluations and with
# hundreds of workers (issue 9 item 2). None of it changes anything below its thresholds, so
# small budgets behave (and draw random numbers) exactly as without it.
#
#   mbo_fit_rows    a bounded training set: beyond fit.max fitted points the surrogate is fitted
#                   on the best fit.top share of fit.max points plus a uniform random sample of
#                   the rest, redrawn at every fit (fit, leaf statistics and prediction then cost
#                   the same at 20,000 evaluations as at fit.max);
#   mbo_dup_index   the duplicate check against every submitted point in O(log n) instead of
#                   O(n): the points sorted along one coordinate, only those within dup.tol of
#                   the candidate along it are compared (the same answer as mbo_is_dup);
#   mbo_stream_q    stream mode's look-ahead: how many points to propose so that `ahead` trials
#                   wait in the driver's queue and a worker that finishes during a proposal
#                   starts its next trial at once.

# tg: mbo_targets(S)'s list(rows, y, n.ok); returns it restricted to the rows to fit. The best
# rows are taken by surrogate-scale target (failed trials, imputed as the worst, are never among
# them); the rest is a uniform sample without replacement, so failures keep their share.
mbo_fit_rows <- function(S, tg) {
  n <- length(tg$rows); cap <- S$ctl$fit.max
  S$last.fit.n <- n
  if (is.infinite(cap) || n <= cap) return(tg)
  ntop <- min(cap, floor(S$ctl$fit.top * cap))
  o <- order(tg$y)
  top <- o[seq_len(ntop)]
  rest <- o[-seq_len(ntop)]
  keep <- sort(c(top, rest[sample.int(length(rest), cap - ntop)]))
  S$last.fit.n <- length(keep)
  list(rows = tg$rows[keep], y = tg$y[keep], n.ok = tg$n.ok)
}

# The normalized coordinates E (one row per submitted point) as an index for mbo_is_dup, when E
# is large enough for it to pay (else E itself). The key column is the one with most distinct
# values (a discrete column would leave many rows to compare).
mbo_dup_index <- function(E, min.rows = 500L) {
  if (is.null(E) || nrow(E) < min.rows) return(E)
  key <- which.max(apply(E, 2L, function(col) length(unique(col))))
  o <- order(E[, key])
  structure(list(M = E[o, , drop = FALSE], k = E[o, key], key = key, extra = NULL), class = "mbo_dup_index")
}

# is normalized point v within tol (max metric) of a row of the index? (mbo_is_dup's answer)
mbo_index_is_dup <- function(v, I, tol) {
  # rows with key within 2 tol of v's (a margin against rounding; mbo_is_dup decides)
  lo <- findInterval(v[I$key] - 2 * tol, I$k) + 1L
  hi <- findInterval(v[I$key] + 2 * tol, I$k, left.open = TRUE)
  if (hi >= lo && mbo_is_dup(v, I$M[lo:hi, , drop = FALSE], tol)) return(TRUE)
  mbo_is_dup(v, I$extra, tol)
}

# E with the normalized point v added (a matrix grows by a row; an index keeps the new points
# apart, few per round, and compares them directly)
mbo_dup_add <- function(E, v) {
  if (!inherits(E, "mbo_dup_index")) return(rbind(E, v))
  E$extra <- rbind(E$extra, v)
  E
}

# Stream mode: the number of points to propose now. free: idle workers the driver reported
# (nothing running or queued for them); npend: this run's submitted trials without a result;
# workers: the farm's size; nres: the results that just arrived. ahead = "auto" keeps twice as
# many trials queued as results arrived in one round at most over the last 5 rounds, at most
# 2 x `workers`: the points proposed now land only after this proposal, so the queue counted now
# must cover the workers that finish while it is computed, and what lands must cover the next one
# (with once, measured at 64 workers: the queue ran dry every round and workers waited ~2 s for
# each trial; capped at `workers`, 64 workers with ~45 results a round: the queue held ~20 after
# each round's points landed and ran dry mid-round, 10% of the worker time). A number fixes it
# (also at most 2 x workers); 0 proposes only for idle workers (before issue 9: workers waited
# for every refit).
mbo_stream_q <- function(S, free, npend, workers, nres) {
  S$round.results <- tail(c(S$round.results, nres), 5L)
  a <- S$ctl$ahead
  if (is.na(workers) || identical(a, 0L)) return(free)
  a <- if (identical(a, "auto")) min(2L * workers, 2L * max(S$round.results)) else min(2L * workers, a)
  queued <- max(0L, npend - (workers - free))
  free + max(0L, a - queued)
}

# Point selection (select.R, select = "pool") keeps each candidate's squared distance to the
# points already chosen in the round up to date, one vectorised pass per chosen point, instead of
# measuring every examined candidate against all of them again: a round of q points then costs
# O(q x candidates) rather than O(q^2 x examined candidates). Distances to the pending trials (P0)
# are measured when a candidate is first examined and kept. The answers are mbo_first_fit's.
mbo_pool <- function(Cn, P0) {
  if (is.null(Cn)) return(NULL)
  p <- new.env()
  p$Cn <- Cn; p$P0 <- P0
  p$dc <- rep(Inf, nrow(Cn)); p$dp <- rep(NA_real_, nrow(Cn))
  p
}

mbo_pool_add <- function(p, v) {
  d <- (p$Cn[, 1] - v[1])^2      # mbo_min_dist2's arithmetic, so the same distances
  if (length(v) > 1L) for (j in 2:length(v)) d <- d + (p$Cn[, j] - v[j])^2
  p$dc <- pmin(p$dc, d)
}

# the first of the candidates idx (in that order) that keeps squared distance lev from the pending
# and the chosen points and is no duplicate of a row of En, for each lev of d2 in turn; NA if none
mbo_pool_first_fit <- function(p, idx, En, d2, tol) {
  dp <- p$dp
  on.exit(p$dp <- dp)
  for (lev in d2) {
    ks <- if (lev == 0) idx else idx[p$dc[idx] >= lev]
    for (k in ks) {
      if (lev > 0) {
        if (is.na(dp[k])) dp[k] <- mbo_min_dist2(p$Cn[k, ], p$P0)
        if (dp[k] < lev) next
      }
      if (!mbo_is_dup(p$Cn[k, ], En, tol)) return(k)
    }
  }
  NA_integer_
}
