# r_algorithms/mbo/propose.R -- one proposal round: fit the surrogate (surrogate.R), draw the q
# LCB lambdas, search candidates (focus_search.R), select q points (select.R); with the GP and
# EI, one point at a time under the constant liar's fantasies (infill.R).

# The lambdas of the model-based points: lambda = "exp" draws one per point from Exp(1) (mlrMBO's
# multi-point "cb"), a number fixes them all.
mbo_lambdas <- function(ctl, qm) if (identical(ctl$lambda, "exp")) rexp(qm) else rep(as.numeric(ctl$lambda), qm)

# q new points (untransformed rows), distinct from every submitted point. With an environment as
# `timing`, the split of the time (fit, predict, search, select) is left in timing$last.
mbo_propose <- function(S, q, timing = NULL) {
  ctl <- S$ctl
  t0 <- proc.time()[["elapsed"]]
  model <- mbo_fit(S)
  t1 <- proc.time()[["elapsed"]]
  # normalized coordinates of every submitted point (evaluated and pending), indexed when many
  E <- mbo_dup_index(S$N)
  P0 <- S$N[S$status == "pending", , drop = FALSE]
  nrnd <- if (q > 1L) min(q - 1L, max(0L, ctl$interleave.random.points)) else 0L
  lambdas <- mbo_lambdas(ctl, q - nrnd)
  # EI (infill.R): the search minimizes -EI, given as the prediction's mean, with lambdas 0
  ei <- mbo_use_ei(ctl, q - nrnd, model)
  if (ei) { lambdas[] <- 0; ybest <- min(mbo_targets(S)$y) }
  tpred <- 0
  predict_t <- function(X) {
    a <- proc.time()[["elapsed"]]
    p <- mbo_predict(model, mbo_features(S, X))
    if (ei) p$mean <- -mbo_ei(p$mean, p$se, ybest)
    tpred <<- tpred + proc.time()[["elapsed"]] - a
    p
  }
  if (mbo_use_liar(ctl, ei, model)) {
    # the constant liar (infill.R): pending trials as fantasies (unless pending = 'believer'
    # has already put them into the fit), then one point at a time, each a fantasy for the next
    pend <- which(S$status == "pending")
    if (length(pend) && !(ctl$mode == "stream" && identical(ctl$pending, "believer")))
      model <- mbo_gp_fantasize(ctl, model, mbo_features(S, S$X[pend, , drop = FALSE]), ybest)
    qm <- length(lambdas); out <- vector("list", qm); En <- E; B <- P0; nrand <- 0L; tsel <- 0
    for (i in seq_len(qm)) {
      cand <- mbo_focus_search(S, model, 0, En, predict_t)
      a <- proc.time()[["elapsed"]]
      Xi <- mbo_select(S, cand, 0, 1L, En, B)
      tsel <- tsel + proc.time()[["elapsed"]] - a
      nrand <- nrand + attr(Xi, "random")
      Ni <- mbo_norm(S$info, Xi)[1, ]
      En <- mbo_dup_add(En, Ni); B <- rbind(B, Ni)
      out[[i]] <- Xi
      if (i < qm) model <- mbo_gp_fantasize(ctl, model, mbo_features(S, Xi), ybest)
    }
    if (nrnd > 0L) out <- c(out, list(mbo_select(S, list(), numeric(0), nrnd, En, B)))
    t2 <- proc.time()[["elapsed"]] - tsel
    X <- do.call(rbind, out)
    rownames(X) <- NULL
    attr(X, "random") <- nrand
  } else {
    cand <- mbo_focus_search(S, model, lambdas, E, predict_t)
    t2 <- proc.time()[["elapsed"]]
    X <- mbo_select(S, cand, lambdas, q, E, P0)
  }
  if (!is.null(timing)) {
    t3 <- proc.time()[["elapsed"]]
    assign("last", list(fit = t1 - t0, predict = tpred, search = (t2 - t1) - tpred, select = t3 - t2,
                        total = t3 - t0, nloc = cand$nloc, fitted = S$last.fit.n, random = attr(X, "random")), envir = timing)
  }
  X
}
