# r_algorithms/mbo/gp.R -- a Gaussian-process surrogate for numeric spaces while data are few
# (mlrMBO uses kriging, DiceKriging's km, for purely numeric spaces; DiceKriging is not in Debian,
# so this is ours). Matern-5/2 kernel with one length scale per input (ARD), inputs scaled to
# [0, 1] by the parameters' bounds, targets standardised; the length scales, the signal variance
# and a small nugget are chosen by maximum likelihood (optim L-BFGS-B with analytic gradients,
# a few restarts). The standard error is that of the latent function: about 0 at a training point
# (up to the nugget), growing towards the prior's away from the data.
#
# Which surrogate (mbo_use_gp): surrogate = "auto" (default) takes the GP when every searched
# parameter is numeric and fewer than gp.max.n points are fitted (with integer, discrete or
# logical parameters, gp_mixed.R's one-hot GP under the same n limit), else the forest;
# surrogate = "gp" takes it at any n: this GP for numeric and integer parameters (integers as
# continuous values), gp_mixed.R's where some are discrete or logical.

# this GP for this state and number of fitted points?
mbo_use_gp <- function(S, n) {
  sur <- S$ctl$surrogate
  if (identical(sur, "gp")) return(length(mbo_gp_unsupported(S$info)) == 0L)
  if (!identical(sur, "auto") || n >= S$ctl$gp.max.n) return(FALSE)
  all(vapply(S$info[S$act], function(p) p$type == "numeric", TRUE))
}

# the searched parameters that this GP cannot take (discrete or logical): gp_mixed.R's do
mbo_gp_unsupported <- function(info) {
  bad <- Filter(function(p) !p$const && !(p$type %in% c("numeric", "integer")), info)
  vapply(bad, `[[`, "", "id")
}

# squared scaled distances between the rows of A and B (inputs already divided by length scales)
gp_dist2 <- function(A, B) {
  D <- outer(rowSums(A * A), rowSums(B * B), "+") - 2 * tcrossprod(A, B)
  D[D < 0] <- 0
  D
}

gp_matern52 <- function(r) { s <- sqrt(5) * r; (1 + s + s * s / 3) * exp(-s) }

# negative log marginal likelihood and its gradient in theta = (log l_1..d, log sf2, log nugget)
gp_nll <- function(theta, X, y, grad = FALSE) {
  d <- ncol(X); n <- nrow(X)
  l <- exp(theta[seq_len(d)]); sf2 <- exp(theta[d + 1L]); nug <- exp(theta[d + 2L])
  Xs <- sweep(X, 2L, l, "/")
  r <- sqrt(gp_dist2(Xs, Xs))
  s <- sqrt(5) * r
  E <- exp(-s)
  K <- sf2 * (1 + s + s * s / 3) * E
  diag(K) <- sf2 + nug
  L <- tryCatch(chol(K), error = function(e) NULL)
  if (is.null(L)) return(if (grad) list(f = 1e10, g = rep(0, length(theta))) else 1e10)
  alpha <- backsolve(L, forwardsolve(t(L), y))
  f <- 0.5 * sum(y * alpha) + sum(log(diag(L))) + 0.5 * n * log(2 * pi)
  if (!grad) return(f)
  Kinv <- chol2inv(L)
  W <- tcrossprod(alpha) - Kinv   # dNLL/dtheta_k = -0.5 tr(W dK/dtheta_k)
  # dK/dlog(l_k) = sf2 * (5/3) (1 + s) exp(-s) * (x_ik - x_jk)^2 / l_k^2
  base <- sf2 * (5 / 3) * (1 + s) * E
  g <- numeric(d + 2L)
  for (k in seq_len(d)) {
    Dk <- outer(Xs[, k], Xs[, k], "-")
    g[k] <- -0.5 * sum(W * (base * Dk * Dk))
  }
  g[d + 1L] <- -0.5 * sum(W * (K - diag(nug, n)))
  g[d + 2L] <- -0.5 * nug * sum(diag(W))
  list(f = f, g = g)
}

# The length scales' prior of mbo_fit_gp: log-normal, median 0.5 of the unit range, log-scale sd
# 0.5 (about BoTorch's former default Gamma(3, 6) prior: mean 0.5, log-scale sd ~0.6). Maximum
# likelihood alone, with 12-24 points in 6 dimensions, often put one length scale at 0.01-0.03
# and the others at the upper bound 10 (a fit that predicts nothing); measured on held-out points
# of Hartmann6 (8 designs each), correlation of the GP mean with the truth at n = 12 / 24 / 40:
# 0.21 / 0.30 / 0.57 by maximum likelihood, 0.36 / 0.57 / 0.65 with this prior (Branin, 4-13
# points: 0.27 / 0.71 / 0.79 and 0.67 / 0.75 / 0.79); docs/mlrmbo.md.
GP_PRIOR <- c(log(0.5), 0.5)

# Fit: X an n x d matrix in [0, 1], y a vector. Bounds (log scale): length scales 0.01..10 of the
# unit range, signal variance 0.05..20 of the standardised targets' variance, nugget 1e-8..0.1.
# Restarts: length scales 0.2 and 0.5 everywhere, then random ones; the best likelihood wins.
# prior = c(mean, sd) of the log length scales (a maximum a posteriori fit), NULL for none.
gp_fit <- function(X, y, restarts = 3L, prior = NULL) {
  X <- as.matrix(X); d <- ncol(X)
  mu <- mean(y); sdv <- stats::sd(y)
  if (!is.finite(sdv) || sdv <= 0) sdv <- 1
  z <- (y - mu) / sdv
  lo <- c(rep(log(0.01), d), log(0.05), log(1e-8))
  hi <- c(rep(log(10), d), log(20), log(0.1))
  starts <- list(c(rep(log(0.2), d), 0, log(1e-4)), c(rep(log(0.5), d), 0, log(1e-4)))
  if (restarts > 2L) for (k in seq_len(restarts - 2L))
    starts <- c(starts, list(c(log(runif(d, 0.05, 1)), log(runif(1, 0.5, 2)), log(1e-4))))
  cache <- new.env()
  fg <- function(th) {
    if (!identical(cache$th, th)) {
      cache$th <- th; v <- gp_nll(th, X, z, grad = TRUE)
      if (!is.null(prior)) {   # log-normal prior on the length scales: -log density, gradient
        k <- seq_len(d); u <- (th[k] - prior[1]) / prior[2]
        v$f <- v$f + 0.5 * sum(u * u); v$g[k] <- v$g[k] + u / prior[2]
      }
      cache$v <- v
    }
    cache$v
  }
  best <- NULL
  for (st in head(starts, max(1L, restarts))) {
    o <- tryCatch(stats::optim(st, function(th) fg(th)$f, function(th) fg(th)$g, method = "L-BFGS-B",
                               lower = lo, upper = hi, control = list(maxit = 100L)),
                  error = function(e) NULL)
    if (!is.null(o) && is.finite(o$value) && (is.null(best) || o$value < best$value)) best <- o
  }
  theta <- if (is.null(best)) starts[[1]] else best$par
  l <- exp(theta[seq_len(d)]); sf2 <- exp(theta[d + 1L]); nug <- exp(theta[d + 2L])
  Xs <- sweep(X, 2L, l, "/")
  K <- sf2 * gp_matern52(sqrt(gp_dist2(Xs, Xs)))
  diag(K) <- sf2 + nug
  L <- chol(K)
  list(kind = "gp", Xs = Xs, l = l, sf2 = sf2, nug = nug, L = L, z = z,
       alpha = backsolve(L, forwardsolve(t(L), z)), mu = mu, sd = sdv, theta = theta,
       nll = if (is.null(best)) NA_real_ else best$value)
}

# The GP conditioned on more points (Xn in [0, 1], values y on the target scale) with the same
# hyperparameters and standardisation: the fantasies of the constant liar (infill.R), which must
# not re-estimate the length scales from made-up values. A fantasy very close to a training
# point can make K numerically singular; the nugget then grows until the Cholesky succeeds.
gp_condition <- function(g, Xn, y) {
  Xn <- as.matrix(Xn)
  if (!nrow(Xn)) return(g)
  Xs <- rbind(g$Xs, sweep(Xn, 2L, g$l, "/"))
  z <- c(g$z, (y - g$mu) / g$sd)
  K <- g$sf2 * gp_matern52(sqrt(gp_dist2(Xs, Xs)))
  nug <- g$nug
  repeat {
    diag(K) <- g$sf2 + nug
    L <- tryCatch(chol(K), error = function(e) NULL)
    if (!is.null(L) || nug > 0.1 * g$sf2) break
    nug <- max(nug * 10, 1e-8 * g$sf2)
  }
  if (is.null(L)) return(g)
  g$Xs <- Xs; g$z <- z; g$L <- L; g$nug <- nug
  g$alpha <- backsolve(L, forwardsolve(t(L), z))
  g
}

# mean and standard error (latent function, target scale) at the rows of Xn (an m x d matrix in
# [0, 1]), in chunks so that the m x n kernel matrix stays small
gp_predict <- function(g, Xn, chunk = 5000L) {
  Xn <- as.matrix(Xn); m <- nrow(Xn)
  mean <- se <- numeric(m)
  for (st in seq(1L, max(1L, m), by = chunk)) {
    idx <- st:min(m, st + chunk - 1L)
    if (!m) break
    A <- sweep(Xn[idx, , drop = FALSE], 2L, g$l, "/")
    Ks <- g$sf2 * gp_matern52(sqrt(gp_dist2(A, g$Xs)))
    mean[idx] <- drop(Ks %*% g$alpha)
    V <- forwardsolve(t(g$L), t(Ks))
    se[idx] <- sqrt(pmax(g$sf2 - colSums(V * V), 0))
  }
  list(mean = g$mu + g$sd * mean, se = g$sd * se)
}

# The GP on the surrogate features (mbo_features: the searched parameters, all numeric here):
# inputs scaled to [0, 1] by the parameters' bounds, which the model keeps for mbo_predict.
mbo_fit_gp <- function(S, Fx, y) {
  lo <- vapply(S$info[S$act], `[[`, 0, "lower"); up <- vapply(S$info[S$act], `[[`, 0, "upper")
  g <- gp_fit(mbo_gp_scale(Fx, lo, up), y, restarts = S$ctl$gp.restarts, prior = GP_PRIOR)
  g$lower <- lo; g$upper <- up
  g
}

mbo_gp_scale <- function(Fx, lo, up) {
  M <- vapply(seq_along(lo), function(k) (as.numeric(Fx[[k]]) - lo[k]) / (up[k] - lo[k]), numeric(nrow(Fx)))
  matrix(M, nrow = nrow(Fx))
}
