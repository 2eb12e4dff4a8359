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

#
# Fantasies (Ginsbourger et al. 2010; mlrMBO's multi-point "cl"; liar, default "auto" below): with EI from the GP, the
# pending trials (stream mode's trials in flight) and the points already chosen in the round
# enter the GP as fantasies, with the hyperparameters of the real fit (gp_condition), and the
# points of a round are chosen one at a time, each maximizing EI under the fantasies so far. A
# fantasy's se is ~0, so EI there vanishes and the next point goes elsewhere; without them, EI
# from the real data alone sends every point of a batch (and every stream proposal while 8
# trials run) to the same maximum. liar = "min" values a fantasy at the best fitted target (the
# constant liar of mlrMBO; in stream mode it makes the surroundings of every running trial look
# as good as the best and the proposals crowd next to them: Hartmann6 stream median regret at 40
# 1.8, against 0.38 with "none"); "mean" at the GP's mean (the kriging believer); "max" at the
# worst (pessimistic); "none" keeps the behaviour before: EI for one point, qLCB for several,
# pending trials ignored (trials in flight are still kept at batch.dist).

# liar = "auto" (default): "mean" in batch mode, "none" in stream mode (measured, 10 seeds at 40
# evaluations: batch Branin/Hartmann6 0.039/0.14 with "mean", 0.13/0.23 with "min"; stream
# 0.011/0.51 with "none", 0.17/0.56 with "mean"; docs/mlrmbo.md)
mbo_liar <- function(ctl) if (identical(ctl$liar, "auto")) (if (identical(ctl$mode, "batch")) "mean" else "none") else ctl$liar

mbo_use_ei <- function(ctl, q, model) {
  if (model$kind == "none") return(FALSE)
  switch(ctl$infill, ei = TRUE, cb = FALSE,
         auto = model$kind == "gp" && (q == 1L || mbo_liar(ctl) != "none"))
}

# fantasies (the constant liar) for this model and criterion?
mbo_use_liar <- function(ctl, ei, model) ei && model$kind == "gp" && mbo_liar(ctl) != "none"

# the GP with fantasies at the rows Fx (surrogate features): valued at the GP's own mean there
# (liar = "mean"), at ybest ("min") or at the worst fitted target ("max")
mbo_gp_fantasize <- function(ctl, model, Fx, ybest) {
  if (is.null(Fx) || !nrow(Fx)) return(model)
  Xn <- if (is.null(model$encode)) mbo_gp_scale(Fx, model$lower, model$upper) else model$encode(Fx)   # gp_mixed.R
  y <- switch(mbo_liar(ctl), mean = gp_predict(model, Xn)$mean, max = rep(max(model$mu + model$sd * model$z), nrow(Xn)),
              rep(ybest, nrow(Xn)))
  gp_condition(model, Xn, y)
}

# expected improvement of a minimization below ybest, for predictions mean, se
mbo_ei <- function(mean, se, ybest) {
  d <- ybest - mean
  z <- d / pmax(se, 1e-12)
  ei <- d * stats::pnorm(z) + se * stats::dnorm(z)
  ifelse(se > 1e-12, pmax(ei, 0), pmax(d, 0))
}
