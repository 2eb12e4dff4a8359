# r_algorithms/mbo/warm.R -- warm.start = ID: seed the state with the finished trials of an
# earlier experiment of the same store, as if they had been evaluated in this run.
#
# eq_history(ID) (eq/R/EQ.R) returns that experiment's space and its completed, failed and
# timed-out trials with their params as the pilot received them (trafo applied). The space must
# have the same parameter ids and types; bounds and discrete values may differ: a point outside
# this run's space is dropped (and counted in the log line). Params are decoded into the codec's
# untransformed representation (codec.R), inverting a trafo numerically (it must be strictly
# monotone on [lower, upper]). The points enter the state before the initial design, with their
# status and objective, so the surrogate sees them (failed ones imputed as usual); they are not
# re-run, do not count against max.budget, and shrink the initial design by their number.

mbo_warm_fail <- function(exp, ...) stop(paste0("mlrMBO: warm.start = ", exp, ": ", ...), call. = FALSE)

# stop unless the earlier space has the same parameter ids and types as this run's
mbo_warm_check_space <- function(S, space, exp) {
  if (is.null(space) || !length(space$params)) return(invisible(TRUE))   # no space recorded
  old <- vapply(space$params, function(p) as.character(p$type), "")
  names(old) <- vapply(space$params, function(p) as.character(p$id), "")
  new <- vapply(S$info, `[[`, "", "type")
  names(new) <- vapply(S$info, `[[`, "", "id")
  only.old <- setdiff(names(old), names(new))
  only.new <- setdiff(names(new), names(old))
  both <- intersect(names(new), names(old))
  changed <- both[old[both] != new[both]]
  if (!length(c(only.old, only.new, changed))) return(invisible(TRUE))
  why <- c(if (length(only.old)) paste0("only in experiment ", exp, ": ", paste(only.old, collapse = ", ")),
           if (length(only.new)) paste0("only in this run: ", paste(only.new, collapse = ", ")),
           if (length(changed)) paste0("type changed: ",
                                       paste0(changed, " ", old[changed], " -> ", new[changed], collapse = ", ")))
  mbo_warm_fail(exp, "the search space of experiment ", exp,
                if (!is.null(space$source)) paste0(" (", space$source, ")") else "",
                " is not the space of this run (", S$ctl$param.set.file, "): ", paste(why, collapse = "; "),
                ". A warm start needs the same parameter ids and types (bounds and discrete values may ",
                "differ: points outside this run's space are dropped). Use the space of experiment ", exp,
                ", or leave warm.start out.")
}

# The inverse of parameter p's trafo on [lower, upper]: a function from transformed values to
# untransformed ones (NA where a value is not reached from inside the bounds). Stops if the
# trafo is not strictly monotone there (then a value may have several preimages).
mbo_warm_inverse <- function(p, exp) {
  f <- function(x) vapply(x, function(u) suppressWarnings(as.numeric(p$trafo(u))[1]), 0)
  lo <- p$lower; hi <- p$upper
  if (lo == hi) {
    t0 <- f(lo)
    return(structure(function(v) ifelse(abs(v - t0) <= 1e-9 * max(1, abs(t0)), lo, NA_real_),
                     range = c(t0, t0)))
  }
  cannot <- function(what) mbo_warm_fail(exp, "the trafo of parameter '", p$id, "' ", what, " on [",
                                         lo, ", ", hi, "], so the values that experiment ", exp,
                                         " sent to the pilot cannot be mapped back to the search space. ",
                                         "Warm start needs an invertible (strictly monotone) trafo; ",
                                         "leave warm.start out, or use such a trafo.")
  grid <- if (p$type == "integer" && hi - lo <= 1e5) lo:hi else seq(lo, hi, length.out = 1001L)
  tv <- tryCatch(f(grid), error = function(e) cannot(paste0("fails (", conditionMessage(e), ")")))
  if (!all(is.finite(tv))) cannot("is not finite everywhere")
  dv <- diff(tv)
  if (!(all(dv > 0) || all(dv < 0))) cannot("is not strictly monotone")
  inc <- dv[1] > 0
  if (!inc) { grid <- rev(grid); tv <- rev(tv) }     # tv increasing from here on
  n <- length(tv)
  tol <- function(y) 1e-9 * max(1, abs(y))
  if (p$type == "integer" && length(grid) == hi - lo + 1) {
    # every integer's image is known: the value must be one of them
    return(structure(range = tv[c(1L, n)], function(v) vapply(v, function(y) {
      if (!is.finite(y)) return(NA_real_)
      k <- max(1L, min(n, findInterval(y, tv)))
      k <- c(k, min(n, k + 1L))[which.min(abs(tv[c(k, min(n, k + 1L))] - y))]
      if (abs(tv[k] - y) <= tol(y)) as.numeric(grid[k]) else NA_real_
    }, 0)))
  }
  structure(range = tv[c(1L, n)], function(v) vapply(v, function(y) {
    if (!is.finite(y) || y < tv[1] - tol(y) || y > tv[n] + tol(y)) return(NA_real_)
    if (abs(y - tv[1]) <= tol(y)) return(grid[1])
    if (abs(y - tv[n]) <= tol(y)) return(grid[n])
    k <- max(1L, min(n - 1L, findInterval(y, tv)))
    a <- grid[k]; b <- grid[k + 1L]
    x <- stats::uniroot(function(x) f(x) - y, sort(c(a, b)), tol = 1e-12 * (hi - lo), maxiter = 200L)$root
    if (abs(f(x) - y) > 1e-6 * max(1, abs(y))) cannot("is not continuous")
    if (p$type == "integer") x <- round(x)
    x
  }, 0))
}

# Decode the params of earlier results into untransformed rows of this run's space.
# Returns list(X = data.frame (all results, NA where undecodable), keep = logical, why = reason
# per dropped result).
mbo_warm_decode <- function(S, results, exp) {
  n <- length(results)
  why <- rep(NA_character_, n)
  drop <- function(i, reason) why[i[is.na(why[i])]] <<- reason
  cols <- lapply(seq_along(S$info), function(j) {
    p <- S$info[[j]]; par <- S$ps$pars[[j]]
    raw <- lapply(results, function(r) r$params[[p$id]])
    miss <- which(vapply(raw, function(v) is.null(v) || length(v) != 1L, NA))
    drop(miss, paste0("without ", p$id))
    if (p$type %in% c("numeric", "integer")) {
      v <- vapply(raw, function(x) if (length(x) == 1L && is.numeric(x)) as.numeric(x) else NA_real_, 0)
      drop(setdiff(which(is.na(v)), miss), paste0("with a non-numeric ", p$id))
      if (!is.null(par$trafo)) {
        inv <- mbo_warm_inverse(par, exp)
        x <- inv(v)
        # inside the trafo's range but no integer maps to it (e.g. 48 for 2^x)
        rg <- attr(inv, "range")
        drop(which(is.na(x) & !is.na(v) & v >= rg[1] & v <= rg[2]), paste0("with a value of ", p$id, " not in the space"))
      } else {
        eps <- 1e-9 * max(1, p$upper - p$lower)
        x <- ifelse(v >= p$lower - eps & v <= p$upper + eps, pmin(p$upper, pmax(p$lower, v)), NA_real_)
        if (p$type == "integer") x <- ifelse(abs(x - round(x)) <= 1e-9, round(x), NA_real_)
      }
      drop(which(is.na(x)), paste0("outside the current bounds of ", p$id))
      x
    } else {
      vals <- if (p$type == "logical") list(TRUE, FALSE) else unname(par$values)
      x <- vapply(raw, function(r) {
        if (length(r) != 1L) return(NA_character_)
        for (k in seq_along(vals)) {
          pv <- vals[[k]]
          same <- if (is.numeric(pv) && is.numeric(r)) isTRUE(all.equal(as.numeric(pv), as.numeric(r)))
                  else identical(as.character(pv), as.character(r))
          if (same) return(p$levels[k])
        }
        NA_character_
      }, "")
      drop(which(is.na(x)), paste0("with a value of ", p$id, " not in the space"))
      x
    }
  })
  X <- mbo_df(cols, vapply(S$info, `[[`, "", "id"))
  rownames(X) <- NULL
  list(X = X, keep = is.na(why), why = why[!is.na(why)])
}

# Fetch the history of experiment `exp` and add its points to the state S (before the design).
# `h` is eq_history(exp)'s answer (given directly by the unit tests). Returns S$warm invisibly.
mbo_warm_start <- function(S, exp, h = eq_history(exp)) {
  exp <- as.integer(exp)
  mbo_warm_check_space(S, h$space, exp)
  res <- h$results
  dec <- mbo_warm_decode(S, res, exp)
  res <- res[dec$keep]
  ids <- vapply(res, function(r) if (is.null(r$id)) NA_integer_ else as.integer(r$id), 0L)
  if (length(res)) {
    X <- dec$X[dec$keep, , drop = FALSE]
    rownames(X) <- NULL
    rows <- mbo_add(S, X)
    # the trials belong to experiment `exp`: kept apart from this run's ids (S$ids matches results)
    mbo_record(S, lapply(res, function(r) { r$id <- NULL; r }), rows)
  }
  S$nwarm <- length(res)
  S$warm.ids <- ids
  ndone <- sum(S$status[seq_len(S$nwarm)] == "completed")
  dropped <- if (length(dec$why)) {
    tb <- table(dec$why)
    paste0(": ", paste0(as.integer(tb), " ", names(tb), collapse = ", "))
  } else ""
  S$warm <- list(experiment = exp, points = S$nwarm, completed = ndone, dropped = length(dec$why))
  message(sprintf("mlrMBO: warm start from experiment %d: %d points (%d dropped%s); %d completed, %d failed or timed out",
                  exp, S$nwarm, length(dec$why), dropped, ndone, S$nwarm - ndone))
  invisible(S$warm)
}
