# r_algorithms/mlrMBO.R -- model-based optimization (MBO) in the style of mlrMBO, for CANDLE
# ParamHelpers spaces, as an EQ/R drop-in (ALGO=mlrMBO). mlrMBO itself is not installable here
# (not in Debian), so the MBO loop is ours; it follows mlrMBO's defaults where they exist:
# a Latin hypercube initial design holding every discrete value, a random-forest surrogate with
# standard errors (for numeric spaces a Gaussian process while data are few, as mlrMBO's kriging),
# (q)LCB infill with lambda ~ Exp(1) per point as in setMBOControlMultiPoint(method = "cb") (EI
# for a single point from the GP), and focus search (mlrMBO >= 1.1: opt.restarts = 3,
# opt.focussearch.maxit = 5, opt.focussearch.points = 1000). It adds a few extras that mlrMBO
# does not have (local candidates around the best points, an automatic log scale for skewed
# objectives, a design capped at half the budget, spacing within a batch, each point chosen from
# the candidates of all lambdas); preset = 'mlrMBO' switches them off. docs/mlrmbo.md says how
# each differs from mlrMBO and what was measured.
#
# Settings (the "Params" handshake; every name is described in mbo/settings.R, unknown names are
# refused): param.set.file (the SPACE file, required), max.budget, max.iterations, design.size,
# propose.points, workers, seed, mode ('stream' or 'batch'), minimize, preset, design.cap, select,
# y.trafo, y.eps, log.y, impute.y, impute.margin, lambda, surrogate, gp.max.n, gp.restarts,
# infill, splitrule, replace,
# se.method, num.trees, min.node.size, mtry, threads, fs.points, fs.maxit, fs.restarts,
# fs.budget, local.points, local.top, batch.dist, interleave.random.points, dup.tol, pending,
# min.fit, verbose, warm.start, fit.max, fit.top, ahead.
#
# The parts, one idea per file, in r_algorithms/mbo/ (a subfolder, so the optimizer discovery
# does not list them as algorithms): settings.R, codec.R (parameter encoding and sampling),
# design.R, state.R, surrogate.R, focus_search.R, select.R (qLCB point selection, spacing),
# gp.R (the Gaussian process for numeric spaces), gp_mixed.R (the same GP for spaces with
# integer or discrete parameters, one-hot), infill.R (EI or qLCB),
# scale.R (large n and q: bounded training set, duplicate index, stream look-ahead),
# propose.R (one proposal round), warm.R (warm.start: points of an earlier experiment), loop.R
# (batch and stream loops, final message).
# It uses only OUT_put()/IN_get() through the helpers of eq/R/EQ.R and eq/R/space.R, which the
# runtime (or eq/R/sim.R) sources first, defining EQ_HOME as the repository root.
#
# Final message (eq_done): {"algorithm": "mlrMBO", "best": {transformed params}, "value": y,
#   "id": trial id, "evaluations": n, "completed": n, "failed": n, "iterations": n, "mode": ...},
#   with warm.start also "warm": {"experiment", "points", "completed", "dropped", "best"} (counts
#   above are of this run's trials; "best": true when the best point is a warm-start one, whose
#   "id" is then a trial of that experiment).

suppressPackageStartupMessages({
  library(ParamHelpers)
  library(ranger)
  library(lhs)
  library(jsonlite)
})

.mbo_dir <- local({
  home <- if (exists("EQ_HOME")) get("EQ_HOME") else Sys.getenv("EQ_HOME", "")
  dir <- file.path(home, "r_algorithms", "mbo")
  if (!nzchar(home) || !dir.exists(dir))
    stop("mlrMBO: cannot find its parts in r_algorithms/mbo/: EQ_HOME (", if (nzchar(home)) home else "unset",
         ") must be the repository root. The EMEWS runtime and eq/R/sim.R define it; when sourcing ",
         "mlrMBO.R yourself, set EQ_HOME <- '/path/to/repo' first.", call. = FALSE)
  dir
})
# into the environment this file is sourced into (the global one under the runtime)
for (.mbo_part in c("settings", "codec", "design", "state", "surrogate", "focus_search", "select",
                    "gp", "gp_mixed", "infill", "scale", "propose", "warm", "loop"))
  source(file.path(.mbo_dir, paste0(.mbo_part, ".R")), local = environment())
rm(.mbo_dir, .mbo_part)

# Sourcing this file runs the optimizer (the EMEWS convention). Benchmarks and unit tests that
# only want the functions set options(mlrMBO.source.only = TRUE) first.
if (!isTRUE(getOption("mlrMBO.source.only"))) mbo_main()
