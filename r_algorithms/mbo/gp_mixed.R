# r_algorithms/mbo/gp_mixed.R -- the Gaussian process of gp.R for spaces with integer, discrete
# or logical parameters while data are few (issue 11: at 40 evaluations the forest was far behind
# TPE on the mixed function; a forest fitted on 16-40 points is a few coarse steps).
#
# Encoding (as BoTorch's and CoCaBO's one-hot GPs; SMAC's GP uses a Hamming kernel, which this
# is with one length scale per value): numeric and integer values scaled to [0, 1] by their
# bounds (integers as continuous values; the candidates are integers already, so nothing is
# rounded); each discrete or logical parameter as one column per value, 1/sqrt(2) for its value
# and 0 for the others, so that two different values are at distance 1 (as in batch.dist) and
# every value gets its own length scale: maximum likelihood learns how much each value differs
# from the rest. gp.R's Matern-5/2 kernel and fit are used unchanged, by maximum likelihood:
# with gp.R's length-scale prior (GP_PRIOR) 3-5 of 10 runs per mode stayed in a wrong category
# of the mixed function at 40 evaluations (docs/mlrmbo.md, "Mixed spaces").
#
# Which surrogate: surrogate = "auto" (default) takes this GP while fewer than gp.max.n points
# are fitted and some searched parameter is integer, discrete or logical (purely numeric spaces:
# gp.R's mbo_use_gp), the forest beyond; "gp" takes it at any n where some searched parameter
# is discrete or logical; "ranger"/"randomForest" (and preset = 'mlrMBO') keep the forest at any n.

mbo_use_gp_mixed <- function(S, n) {
  sur <- S$ctl$surrogate
  length(S$act) > 0L && (identical(sur, "gp") || (identical(sur, "auto") && n < S$ctl$gp.max.n))
}

# the encoder for the surrogate features (mbo_features: searched parameters, discretes as
# factors) of a state: returns function(Fx) -> numeric matrix, one row per point
mbo_gp_encoder <- function(info) {
  force(info)
  function(Fx) {
    cols <- list()
    for (k in seq_along(info)) {
      p <- info[[k]]; v <- Fx[[k]]
      if (p$type %in% c("numeric", "integer")) {
        cols[[length(cols) + 1L]] <- (as.numeric(v) - p$lower) / (p$upper - p$lower)
      } else {
        code <- match(as.character(v), p$levels)
        for (l in seq_along(p$levels)) cols[[length(cols) + 1L]] <- (code == l) / sqrt(2)
      }
    }
    matrix(unlist(cols, use.names = FALSE), nrow = nrow(Fx))
  }
}

mbo_fit_gp_mixed <- function(S, Fx, y) {
  enc <- mbo_gp_encoder(S$info[S$act])
  g <- gp_fit(enc(Fx), y, restarts = S$ctl$gp.restarts)
  g$encode <- enc
  g
}
