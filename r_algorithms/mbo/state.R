# r_algorithms/mbo/state.R -- the optimization state: every submitted point (untransformed and
# normalized), its trial id, status and objective. With warm.start (warm.R) the first S$nwarm
# rows are the points of an earlier experiment (their trial ids in S$warm.ids, not in S$ids).

mbo_new_state <- function(ctl, ps) {
  S <- new.env()
  S$ctl <- ctl; S$ps <- ps; S$info <- mbo_info(ps)
  S$act <- which(!vapply(S$info, `[[`, TRUE, "const"))
  S$X <- NULL; S$N <- NULL
  S$y <- numeric(0); S$status <- character(0); S$ids <- integer(0)
  S$nwarm <- 0L; S$warm.ids <- integer(0); S$warm <- NULL
  S
}

# points submitted by this run (warm-start points are not: they do not count against max.budget)
mbo_n_new <- function(S) (if (is.null(S$X)) 0L else nrow(S$X)) - S$nwarm

mbo_add <- function(S, X, ids = NULL) {
  n <- nrow(X)
  S$X <- if (is.null(S$X)) X else rbind(S$X, X)
  Nn <- mbo_norm(S$info, X)
  S$N <- if (is.null(S$N)) Nn else rbind(S$N, Nn)
  S$y <- c(S$y, rep(NA_real_, n))
  S$status <- c(S$status, rep("pending", n))
  S$ids <- c(S$ids, if (is.null(ids)) rep(NA_integer_, n) else as.integer(ids))
  invisible(nrow(S$X) - n + seq_len(n))
}

mbo_record <- function(S, results, rows = NULL) {
  for (k in seq_along(results)) {
    r <- results[[k]]
    i <- if (!is.null(rows)) rows[k] else match(r$id, S$ids)
    if (is.na(i)) { warning("mlrMBO: result for unknown trial id ", r$id, " ignored"); next }
    if (!is.null(r$id) && is.na(S$ids[i])) S$ids[i] <- r$id
    S$y[i] <- r$objective
    S$status[i] <- if (identical(r$status, "completed") && is.finite(r$objective)) "completed"
                   else if (is.null(r$status) || identical(r$status, "completed")) "failed" else r$status
  }
}

mbo_best <- function(S) {
  ok <- which(S$status == "completed" & is.finite(S$y))
  if (!length(ok)) return(NULL)
  i <- ok[if (S$ctl$minimize) which.min(S$y[ok]) else which.max(S$y[ok])]
  warm <- i <= S$nwarm
  list(row = i, value = S$y[i], id = if (warm) S$warm.ids[i] else S$ids[i], warm = warm,
       params = mbo_to_farm(S, S$X[i, , drop = FALSE])[[1]])
}
