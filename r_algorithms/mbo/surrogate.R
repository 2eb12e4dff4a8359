# r_algorithms/mbo/surrogate.R -- the surrogate: a Gaussian process while data are few (gp.R,
# gp_mixed.R), else a random forest (ranger by default) with a standard error, fitted on the
# completed trials (failed ones imputed) on a chosen target scale.

# the surrogate's target scale. "log": log(y) (shifted if some y <= 0, the old log.y = TRUE);
# "slog": log(y - min(y) + eps), eps = y.eps * range(y); "rank": normal scores of the ranks;
# "auto": "slog" when the values are skewed towards large ones (max - median > 2 (median - min):
# Branin 268 vs 70 over the whole box, the mixed function 9 vs 4), else none (Hartmann6).
mbo_ytrafo <- function(ctl, yo) {
  tr <- ctl$y.trafo
  rg <- diff(range(yo))
  if (tr == "auto") tr <- {
    md <- stats::median(yo)
    if (length(yo) >= 3L && rg > 0 && max(yo) - md > 2 * (md - min(yo))) "slog" else "none"
  }
  switch(tr,
    none = identity,
    log = {
      shift <- if (min(yo) > 0) 0 else -min(yo) + 1e-3 * (if (rg > 0) rg else 1)
      function(v) log(pmax(v + shift, 1e-300))
    },
    slog = {
      m <- min(yo); eps <- ctl$y.eps * (if (rg > 0) rg else 1)
      function(v) log(pmax(v - m, 0) + eps)
    },
    rank = {
      srt <- sort(yo); n <- length(yo)
      function(v) {
        r <- (findInterval(v, srt, left.open = TRUE) + findInterval(v, srt) + 1) / 2  # mid-rank
        stats::qnorm(r / (n + 1))
      }
    })
}

mbo_targets <- function(S) {
  done <- S$status != "pending"
  y <- S$y[done]
  if (!S$ctl$minimize) y <- -y
  ok <- S$status[done] == "completed" & is.finite(y)
  ys <- y
  trafo <- identity
  if (any(ok)) {
    trafo <- mbo_ytrafo(S$ctl, y[ok])
    ys[ok] <- trafo(y[ok])
  }
  if (any(!ok)) {
    imp <- if (!any(ok)) 0
      else if (identical(S$ctl$impute.y, "worst")) max(ys[ok]) + S$ctl$impute.margin * diff(range(ys[ok]))
      else if (identical(S$ctl$impute.y, "median")) stats::median(ys[ok])
      else {
        v <- as.numeric(S$ctl$impute.y); if (!S$ctl$minimize) v <- -v
        trafo(v)
      }
    ys[!ok] <- imp
  }
  list(rows = which(done), y = ys, n.ok = sum(ok))
}

mbo_fit_forest <- function(S, Fx, y) {
  ctl <- S$ctl
  mtry <- if (is.null(ctl$mtry)) {
    if (ctl$splitrule == "extratrees") ncol(Fx) else max(1L, floor(ncol(Fx) / 3))
  } else min(ncol(Fx), as.integer(ctl$mtry))
  mns <- if (is.null(ctl$min.node.size)) (if (nrow(Fx) < 50L) 1L else 3L) else ctl$min.node.size
  # the forest's kind: randomForest when asked for, else ranger ("auto" and "gp" fall back to it)
  kind <- if (ctl$surrogate == "randomForest") "randomForest" else "ranger"
  if (kind == "ranger") {
    fit <- ranger::ranger(x = Fx, y = y, num.trees = ctl$num.trees, mtry = mtry,
                          min.node.size = mns, respect.unordered.factors = "order",
                          splitrule = ctl$splitrule, replace = ctl$replace,
                          num.threads = ctl$threads, seed = sample.int(.Machine$integer.max, 1L),
                          verbose = FALSE)
  } else {
    fit <- randomForest::randomForest(x = Fx, y = y, ntree = ctl$num.trees, mtry = mtry,
                                      nodesize = mns)
  }
  model <- list(kind = kind, fit = fit, threads = ctl$threads, se.method = ctl$se.method)
  if (kind == "ranger" && ctl$se.method == "total") {
    # per tree and leaf: mean and mean square of the training targets that fall into the leaf
    TN <- predict(fit, Fx, type = "terminalNodes", num.threads = ctl$threads)$predictions
    TN <- matrix(TN, nrow = nrow(Fx))
    nn <- max(TN) + 1L
    T <- ncol(TN)
    key <- as.vector(TN) + 1L + nn * rep(seq_len(T) - 1L, each = nrow(TN))
    yy <- rep(y, times = T)
    cnt <- tabulate(key, nbins = nn * T)
    s1 <- numeric(nn * T); s2 <- numeric(nn * T)
    agg1 <- rowsum(yy, key); agg2 <- rowsum(yy * yy, key)
    k <- as.integer(rownames(agg1))
    s1[k] <- agg1[, 1]; s2[k] <- agg2[, 1]
    model$leaf.mean <- ifelse(cnt > 0, s1 / pmax(cnt, 1), NA_real_)
    model$leaf.sq <- ifelse(cnt > 0, s2 / pmax(cnt, 1), NA_real_)
    model$nn <- nn
  }
  model
}

mbo_fit <- function(S) {
  tg <- mbo_targets(S)
  if (length(S$act) == 0L || tg$n.ok < 2L || diff(range(tg$y)) == 0)
    return(list(kind = "none"))
  tg <- mbo_fit_rows(S, tg)   # a bounded training set at large n (scale.R)
  Fx <- mbo_features(S, S$X[tg$rows, , drop = FALSE])
  y <- tg$y
  # while data are few the GP: gp.R's for numeric spaces, gp_mixed.R's (one-hot discretes) for
  # the others; else the forest
  fit <- function(F, v) {
    if (mbo_use_gp(S, nrow(F))) mbo_fit_gp(S, F, v)
    else if (mbo_use_gp_mixed(S, nrow(F))) mbo_fit_gp_mixed(S, F, v)
    else mbo_fit_forest(S, F, v)
  }
  model <- fit(Fx, y)
  if (S$ctl$mode == "stream" && S$ctl$pending == "believer") {
    pend <- which(S$status == "pending")
    if (length(pend)) {
      Fp <- mbo_features(S, S$X[pend, , drop = FALSE])
      mu <- mbo_predict(model, Fp)$mean
      model <- fit(rbind(Fx, Fp), c(y, mu))
    }
  }
  model
}

mbo_predict <- function(model, Fx, chunk = 10000L) {
  n <- nrow(Fx)
  if (model$kind == "none") return(list(mean = rep(0, n), se = rep(1, n)))
  if (model$kind == "gp")
    return(gp_predict(model, if (is.null(model$encode)) mbo_gp_scale(Fx, model$lower, model$upper) else model$encode(Fx)))
  m <- s <- numeric(n)
  for (st in seq(1L, n, by = chunk)) {
    idx <- st:min(n, st + chunk - 1L)
    if (!is.null(model$leaf.mean)) {
      # law of total variance over the trees' leaves (as scikit-optimize's forests): the spread
      # of the tree predictions plus the spread of the training targets inside each leaf
      TN <- predict(model$fit, Fx[idx, , drop = FALSE], type = "terminalNodes",
                    num.threads = model$threads)$predictions
      TN <- matrix(TN, nrow = length(idx))
      key <- TN + 1L + model$nn * rep(seq_len(ncol(TN)) - 1L, each = nrow(TN))
      mu <- rowMeans(matrix(model$leaf.mean[key], nrow = length(idx)), na.rm = TRUE)
      sq <- rowMeans(matrix(model$leaf.sq[key], nrow = length(idx)), na.rm = TRUE)
      m[idx] <- mu
      s[idx] <- sqrt(pmax(sq - mu * mu, 0))
    } else {
      P <- if (model$kind == "ranger")
        predict(model$fit, Fx[idx, , drop = FALSE], predict.all = TRUE, num.threads = model$threads)$predictions
      else predict(model$fit, Fx[idx, , drop = FALSE], predict.all = TRUE)$individual
      mu <- rowMeans(P)
      m[idx] <- mu
      s[idx] <- sqrt(pmax(rowMeans(P * P) - mu * mu, 0))
    }
  }
  list(mean = m, se = s)
}
