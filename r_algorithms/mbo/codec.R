# r_algorithms/mbo/codec.R -- the parameter codec: how points of a ParamHelpers space are held,
# sampled, compared and handed to the surrogate and to the farm.
#
# A point is held untransformed, as one row of a data.frame with one column per parameter:
# numeric and integer as double, discrete as the value's name (character), logical "TRUE"/"FALSE".
# Three views of it: normalized coordinates (mbo_norm: numeric/integer scaled to [0, 1], discrete
# as the level index) for distances and duplicate checks; surrogate features (mbo_features:
# searched parameters only, discretes as factors); and what the pilot receives (mbo_to_farm:
# trafo applied, discrete values as values, through eq_space_transform of eq/R/space.R).

# per parameter: id, type, bounds (discrete: 1..number of values), levels, const (one value only)
mbo_info <- function(ps) {
  lapply(ps$pars, function(p) {
    if (!is.null(p$requires))
      stop("mlrMBO: parameter '", p$id, "' has `requires` (a dependent parameter); this optimizer ",
           "does not support conditional spaces. Remove the `requires` or use ALGO=random.", call. = FALSE)
    if (p$type %in% c("numeric", "integer")) {
      list(id = p$id, type = p$type, lower = p$lower, upper = p$upper, levels = NULL,
           const = p$lower == p$upper)
    } else {
      lv <- if (p$type == "logical") c("TRUE", "FALSE") else names(p$values)
      list(id = p$id, type = p$type, lower = 1, upper = length(lv), levels = lv, const = length(lv) == 1L)
    }
  })
}

mbo_df <- function(cols, ids) {
  df <- as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE)
  names(df) <- ids
  df
}

# a box: per parameter the searched range (numeric/integer) or the levels still allowed
mbo_full_box <- function(info) lapply(info, function(p) list(lower = p$lower, upper = p$upper, levels = p$levels))

# n points uniformly in a box; stratified (Latin hypercube) per column
mbo_sample <- function(info, box, n, U = NULL) {
  d <- length(info)
  if (is.null(U)) U <- if (n > 1L) lhs::randomLHS(n, d) else matrix(runif(d), 1L, d)
  cols <- lapply(seq_len(d), function(j) {
    p <- info[[j]]; b <- box[[j]]; u <- U[, j]
    if (p$type == "numeric") b$lower + (b$upper - b$lower) * u
    else if (p$type == "integer") pmin(b$upper, b$lower + floor((b$upper - b$lower + 1) * u))
    else b$levels[pmin(length(b$levels), floor(length(b$levels) * u) + 1L)]
  })
  mbo_df(cols, vapply(info, `[[`, "", "id"))
}

# nloc points in each of several boxes (rows of box c are (c - 1) * nloc + 1:nloc)
mbo_sample_boxes <- function(info, boxes, nloc) {
  nb <- length(boxes); n <- nb * nloc; d <- length(info)
  U <- matrix(runif(n * d), n, d)
  cols <- lapply(seq_len(d), function(j) {
    p <- info[[j]]; u <- U[, j]
    if (p$type %in% c("numeric", "integer")) {
      lo <- rep(vapply(boxes, function(b) b[[j]]$lower, 0), each = nloc)
      hi <- rep(vapply(boxes, function(b) b[[j]]$upper, 0), each = nloc)
      if (p$type == "numeric") lo + (hi - lo) * u else pmin(hi, lo + floor((hi - lo + 1) * u))
    } else {
      unlist(lapply(seq_len(nb), function(c) {
        lv <- boxes[[c]][[j]]$levels
        lv[sample.int(length(lv), nloc, replace = TRUE)]
      }), use.names = FALSE)
    }
  })
  mbo_df(cols, vapply(info, `[[`, "", "id"))
}

# normalized coordinates for distances: numeric/integer in [0, 1], discrete as level index
mbo_norm <- function(info, X) {
  M <- vapply(seq_along(info), function(j) {
    p <- info[[j]]; v <- X[[j]]
    if (p$type %in% c("numeric", "integer")) {
      if (p$upper > p$lower) (v - p$lower) / (p$upper - p$lower) else rep(0, length(v))
    } else as.numeric(match(v, p$levels))
  }, numeric(nrow(X)))
  matrix(M, nrow = nrow(X))
}

# is normalized point v within tol (max metric) of any row of E?
mbo_is_dup <- function(v, E, tol) {
  if (inherits(E, "mbo_dup_index")) return(mbo_index_is_dup(v, E, tol))   # scale.R
  if (is.null(E) || nrow(E) == 0L) return(FALSE)
  m <- abs(E[, 1] - v[1])
  if (length(v) > 1L) for (j in 2:length(v)) {
    m <- pmax(m, abs(E[, j] - v[j]))
    if (!any(m < tol)) return(FALSE)
  }
  any(m < tol)
}

# surrogate features: non-constant parameters; numerics as double, discretes as factors
mbo_features <- function(S, X) {
  cols <- lapply(S$act, function(j) {
    p <- S$info[[j]]
    if (p$type %in% c("numeric", "integer")) as.numeric(X[[j]]) else factor(X[[j]], levels = p$levels)
  })
  mbo_df(cols, paste0("v", S$act))
}

# transform untransformed rows to what the pilot receives (trafo, discrete values)
mbo_to_farm <- function(S, X) {
  lapply(seq_len(nrow(X)), function(i) {
    x <- lapply(X, function(col) col[i])
    eq_space_transform(S$ps, x)
  })
}

# a uniformly random point that is not within dup.tol of any row of E (NULL when `tries` draws
# found none: the space is nearly exhausted)
mbo_random_distinct <- function(S, E, tries = 200L) {
  X <- mbo_sample(S$info, mbo_full_box(S$info), tries, U = matrix(runif(tries * length(S$info)), tries))
  N <- mbo_norm(S$info, X)
  for (i in seq_len(tries)) if (!mbo_is_dup(N[i, ], E, S$ctl$dup.tol))
    return(list(X = X[i, , drop = FALSE], N = N[i, ]))
  NULL
}


# squared Euclidean distance (normalized coordinates) from v to the nearest row of E
mbo_min_dist2 <- function(v, E) {
  if (is.null(E) || nrow(E) == 0L) return(Inf)
  d <- (E[, 1] - v[1])^2
  if (length(v) > 1L) for (j in 2:length(v)) d <- d + (E[, j] - v[j])^2
  min(d)
}
