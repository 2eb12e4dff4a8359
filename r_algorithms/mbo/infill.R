# r_algorithms/mbo/infill.R -- the infill criterion. "cb" is mlrMBO's (q)LCB, mean - lambda * se
# with one lambda per proposed point (propose.R); "ei" is expected improvement over the best
# fitted target (mlrMBO's makeMBOInfillCritEI). The focus search and the selection minimize
# mean - lambda * se of what the surrogate predicts, so EI enters through the prediction: the
# "mean" is -EI and every lambda is 0. With q > 1 every point then has the same criterion and
# the batch spacing (batch.dist) keeps the points apart.
#
# infill = "auto" (default): EI when the GP proposes one point (stream mode's usual round), qLCB
# for several and for the forest (whose se, a spread over trees, is not a predictive sd, so
# EI's trade-off has no footing there; the forest's path stays as measured before); "ei" and
# "cb" force one or the other.

mbo_use_ei <- function(ctl, q, model) {
  if (model$kind == "none") return(FALSE)
  switch(ctl$infill, ei = TRUE, cb = FALSE, auto = q == 1L && model$kind == "gp")
}

# expected improvement of a minimization below ybest, for predictions mean, se
mbo_ei <- function(mean, se, ybest) {
  d <- ybest - mean
  z <- d / pmax(se, 1e-12)
  ei <- d * stats::pnorm(z) + se * stats::dnorm(z)
  ifelse(se > 1e-12, pmax(ei, 0), pmax(d, 0))
}
