# r_algorithms/mbo/settings.R -- the settings of mlrMBO.R: names, defaults, presets, checks.
# The settings arrive once, from the "Params" handshake (eq_settings() of eq/R/EQ.R: the
# workflow's settings with the user's SETTINGS="..." appended, the last value of a name winning).
# A name not listed here is refused, with the closest known name suggested.
#
#   param.set.file   the CANDLE ParamHelpers space file (required).
#   max.budget       total number of evaluations, initial design included (default 100).
#   max.iterations   maximum number of proposal rounds after the design (default Inf): batches
#                    in batch mode, proposal rounds (one per eq_results) in stream mode.
#   design.size      initial design size (default max(4 * d, largest number of discrete values),
#                    at most half of max.budget (design.cap; but never fewer than the largest
#                    number of discrete values), so a small budget still gets model-based rounds;
#                    d = number of non-constant parameters). A design.size
#                    larger than max.budget is an error, raised before any trial is submitted.
#   propose.points   points per batch in batch mode (default: workers, else 8).
#   workers          number of farm workers (used when the driver does not report `free`).
#   seed             RNG seed (default: none).
#   mode             "stream" (default): keep every worker busy, propose as many points as there
#                    are free workers (plus `ahead`) each time results arrive; "batch": propose propose.points,
#                    wait for all of them (eq_batch), refit (the CANDLE/Supervisor behaviour).
#   minimize         TRUE (default); FALSE maximizes the objective.
#   y.trafo          the surrogate's target scale: "auto" (default): "slog" when the observed
#                    values are skewed towards large ones (max - median > 2 (median - min), as on
#                    Branin, 0.4..300), else "none"; "slog": log(y - min(y) + y.eps * range(y));
#                    "log": log(y) (shifted if some y <= 0); "rank": normal scores of the ranks;
#                    "none". Recomputed at every fit.
#   y.eps            offset of "slog", as a fraction of the observed range (default 0.01).
#   log.y            TRUE is y.trafo = "log" (kept for compatibility).
#   impute.y         how failed/timed-out trials (status != "completed" or objective null/NaN;
#                    also an infinite objective, a diverged loss: never a missing one)
#                    enter the surrogate: "worst" (default): the worst observed (surrogate-scale)
#                    value plus impute.margin times the observed range; "median"; or a number
#                    (raw objective scale). Imputed trials never count as the best point.
#   impute.margin    margin for "worst" (default 0.1).
#   preset           "mlrMBO": the defaults of mlrMBO itself for the extras this implementation
#                    adds (see docs/mlrmbo.md): local.points = 0, y.trafo = "none",
#                    design.cap = FALSE, batch.dist = 0, select = "lambda". Settings given
#                    explicitly still win.
#                    Default: none (the extras on).
#   design.cap       TRUE (default): the default design.size is at most half of max.budget
#                    (never below the largest number of discrete values); FALSE: mlrMBO's 4 d,
#                    at most max.budget.
#   select           how the q points are chosen from the focus-search results: "pool" (default):
#                    point i is the best candidate under lambda_i from the candidates of all
#                    chains; "lambda": the best of lambda_i's own focus search (mlrMBO).
#   lambda           "exp" (default): each proposed point gets its own LCB lambda ~ Exp(1)
#                    (rexp(q)); or a number for a fixed lambda.
#   surrogate        "auto" (default): the Gaussian process of gp.R while fewer than gp.max.n
#                    points are fitted (as mlrMBO takes kriging for numeric spaces; with integer
#                    or discrete parameters the same GP on one-hot discretes, gp_mixed.R), else
#                    the ranger forest; "gp" (the same GPs at any n: integers as continuous
#                    values, discretes one-hot); "ranger";
#                    "randomForest" (se = sd over the trees).
#   gp.max.n         surrogate = "auto": fitted points from which the forest replaces the GP
#                    (default 200; the GP's fit costs O(n^3)).
#   gp.restarts      maximum-likelihood restarts of the GP's hyperparameters (default 3).
#   infill           the infill criterion (infill.R): "auto" (default): expected improvement
#                    from the GP (several points: under the constant liar, see liar), qLCB
#                    (lambda) for the forest; "ei"; "cb" (qLCB always, mlrMBO's multi-point "cb").
#   liar             with EI from the GP: pending trials and the points already chosen in the
#                    round enter the GP as fantasies, hyperparameters kept, and the round's points
#                    are chosen one at a time (infill.R). "auto" (default): "mean" in batch
#                    mode, "none" in stream mode (measured, docs/mlrmbo.md); "min": fantasies
#                    at the best fitted target (mlrMBO's constant liar "cl"; crowds proposals
#                    next to running trials in stream mode); "mean": the GP's mean there (the
#                    kriging believer); "max": the worst fitted target (pessimistic);
#                    "none": no fantasies (and
#                    infill = 'auto' then takes qLCB for several points, the behaviour before).
#   splitrule        ranger split rule: "extratrees" (default: random split points, a smoother
#                    mean than "variance" splits; scikit-optimize's forest default) or "variance".
#   replace          bootstrap (TRUE) or subsample 63.2% without replacement (FALSE, default).
#   se.method        "total" (default): law of total variance over the trees' leaves (spread of
#                    the tree means plus the spread of the training targets inside each leaf, as
#                    scikit-optimize's forests); "sd": spread of the tree predictions only.
#   num.trees        trees in the forest (default 100).
#   min.node.size    minimal node size (default: 1 while fewer than 50 points are fitted, then 3).
#   mtry             variables per split (default: all for extratrees, max(1, floor(d / 3)) else).
#   threads          ranger threads (default 1: the optimizer shares its node with workers).
#   fs.points        focus search points per round (default 1000).
#   fs.maxit         focus search shrinking rounds (default 5).
#   fs.restarts      focus search restarts (default 3).
#   fs.budget        most surrogate predictions per proposal round (default 100000). The q LCB
#                    searches run in lock step with one shared first round; later rounds use
#                    min(fs.points, fs.budget / (q * fs.restarts * (fs.maxit - 1))) points, so
#                    q <= 8 gets mlrMBO's full focus search and q = 64 stays within the budget.
#   local.points     candidates added to the first focus-search round by perturbing the
#                    local.top best evaluated points (default 1000; SMAC's local search idea):
#                    numeric/integer steps with sd 0.1, 0.03 or 0.01 of the range, each
#                    discrete value redrawn with probability 1 / d.
#   local.top        how many of the best evaluated points local.points perturbs (default 5).
#   batch.dist       a proposed point keeps at least this normalized Euclidean distance (numeric
#                    ranges scaled to [0, 1]; a differing discrete value counts 1) from the points
#                    already proposed in the same round and from pending trials (default 0.05);
#                    relaxed to batch.dist / 4, then to dup.tol, when no candidate qualifies.
#   interleave.random.points  points of each round (of q > 1) that are uniformly random instead
#                    of model-based (mlrMBO's option of the same name; default 0).
#   dup.tol          two points are the same if every discrete value is equal and every
#                    numeric/integer value differs by less than dup.tol of its range (default
#                    1e-4, mlrMBO's filter.proposed.points.tol). Proposals are distinct from
#                    each other, from pending trials and from all evaluated points; when the
#                    search finds no distinct candidate a random distinct point is used.
#   pending          stream mode: "ignore" (default) leaves running trials out of the surrogate
#                    (proposals are still kept distinct from them); "believer" adds them with their
#                    predicted mean (kriging believer). On Branin/mixed "ignore" searched better.
#   min.fit          stream mode: results needed before the surrogate is used; until then free
#                    workers get random points (default ceiling(design.size / 2)).
#   verbose          TRUE (default): one line per round on stderr.
#   warm.start       the id of an earlier experiment of the same store (default: none): its
#                    completed, failed and timed-out trials enter the surrogate as if evaluated
#                    here (warm.R), before the initial design, which shrinks by their number (none
#                    at all when they are at least design.size). Same parameter ids and types
#                    needed; points outside this run's bounds are dropped. They are not re-run and
#                    do not count against max.budget.
#
#   fit.max          most points the surrogate is fitted on (default 1000; Inf: all). Beyond it,
#                    each fit takes the best fit.top share of fit.max points (by objective) and
#                    a uniform random sample of the others (failed trials included), redrawn at
#                    every fit (scale.R), so a proposal costs about the same after 20,000
#                    evaluations as after fit.max.
#   fit.top          share of fit.max kept for the best points (default 0.25).
#   ahead            stream mode: trials kept queued in the driver beyond the idle workers, so
#                    that a worker finishing during a proposal starts its next trial at once.
#                    "auto" (default): twice the most results that arrived in one proposal round
#                    over the last 5 rounds (the queue must cover the proposal in progress and
#                    the next; scale.R), at most 2 x workers; a number fixes it; 0 proposes for idle
#                    workers only (the behaviour before issue 9).
#
# Accepted and ignored: the names the workflow (emews_py/cli.py) or the farm may put into the
# settings for other purposes (MBO_WORKFLOW_SETTINGS below).

MBO_SETTINGS <- c(
  "param.set.file", "max.budget", "max.iterations", "design.size", "propose.points", "workers",
  "seed", "mode", "minimize", "y.trafo", "y.eps", "log.y", "impute.y", "impute.margin", "lambda",
  "surrogate", "gp.max.n", "gp.restarts", "infill", "liar", "splitrule", "replace", "se.method", "num.trees", "min.node.size", "mtry", "threads",
  "fs.points", "fs.maxit", "fs.restarts", "fs.budget", "local.points", "local.top", "batch.dist",
  "interleave.random.points", "dup.tol", "pending", "min.fit", "verbose", "preset", "design.cap",
  "select", "warm.start", "fit.max", "fit.top", "ahead")

# sent by the workflow for the farm or for Python optimizers, not for mlrMBO
MBO_WORKFLOW_SETTINGS <- c("space", "impute", "keep.models")

# Presets set defaults, never explicit settings. "mlrMBO" switches off the extras that mlrMBO
# does not have, to compare with CANDLE/Supervisor's mlrMBO workflows (docs/mlrmbo.md).
MBO_PRESETS <- list(
  mlrMBO = list(surrogate = "ranger", infill = "cb", local.points = 0L, y.trafo = "none", design.cap = FALSE, batch.dist = 0, select = "lambda"))

# Refuse names that are not settings (a typo would otherwise run silently with the default), in
# one paragraph that suggests the closest known name and lists all of them.
mbo_check_names <- function(s) {
  nm <- names(s)
  if (is.null(nm)) nm <- rep("", length(s))
  bad <- nm[!(nm %in% c(MBO_SETTINGS, MBO_WORKFLOW_SETTINGS))]
  if (!length(bad)) return(invisible(TRUE))
  what <- vapply(bad, function(b) {
    if (!nzchar(b)) return("a value without a name")
    sug <- mbo_suggest(b, MBO_SETTINGS)
    paste0("'", b, "'", if (!is.na(sug)) paste0(" (did you mean '", sug, "'?)") else "")
  }, "")
  stop("mlrMBO: unknown setting", if (length(bad) > 1L) "s " else " ", paste(what, collapse = ", "),
       ". mlrMBO takes: ", paste(sort(MBO_SETTINGS), collapse = ", "),
       " (what each does: r_algorithms/mbo/settings.R; the preset: docs/mlrmbo.md). Correct the name ",
       "in SETTINGS or remove it; settings are written as name = value pairs, e.g. ",
       "SETTINGS=\"propose.points = 8, mode = 'batch'\".", call. = FALSE)
}

# the closest known name to a misspelt one (NA when none is close): edit distance at most 2, or
# a third of the name's length for long names; a unique prefix match counts as well
mbo_suggest <- function(name, known) {
  pre <- known[startsWith(known, name)]
  if (length(pre) == 1L) return(pre)
  d <- drop(utils::adist(name, known, ignore.case = TRUE))
  if (min(d) <= max(2L, nchar(name) %/% 3L)) known[which.min(d)] else NA_character_
}

# The control list: every setting with its default, converted and checked.
mbo_settings <- function(s) {
  `%||%` <- function(a, b) if (is.null(a) || (length(a) == 1L && is.na(a))) b else a
  fail <- function(...) stop(paste0("mlrMBO: ", ...), call. = FALSE)
  mbo_check_names(s)
  if (!is.null(s$preset)) {
    pre <- MBO_PRESETS[[as.character(s$preset)]]
    if (is.null(pre))
      fail("preset = '", s$preset, "' is not known; use preset = '", paste(names(MBO_PRESETS), collapse = "' or '"),
           "' (mlrMBO's own defaults for the extras, see docs/mlrmbo.md) or leave it out.")
    # log.y = TRUE means y.trafo = "log", so it is an explicit choice of y.trafo
    if (isTRUE(as.logical(s$log.y))) pre$y.trafo <- NULL
    for (n in names(pre)) if (is.null(s[[n]]) || (length(s[[n]]) == 1L && is.na(s[[n]]))) s[[n]] <- pre[[n]]
  }
  if (is.null(s$param.set.file))
    fail("no param.set.file in the settings. The runtime passes the SPACE file as ",
         "param.set.file = '/abs/path/space.R'; give SPACE=... to make workflow.")
  ctl <- list(
    param.set.file = s$param.set.file,
    preset = s$preset,
    max.budget = as.numeric(s$max.budget %||% 100),
    max.iterations = as.numeric(s$max.iterations %||% Inf),
    design.size = s$design.size,
    workers = s$workers,
    propose.points = s$propose.points,
    design.cap = as.logical(s$design.cap %||% TRUE),
    seed = s$seed,
    mode = as.character(s$mode %||% "stream"),
    minimize = as.logical(s$minimize %||% TRUE),
    log.y = as.logical(s$log.y %||% FALSE),
    y.trafo = as.character(s$y.trafo %||% (if (isTRUE(as.logical(s$log.y))) "log" else "auto")),
    y.eps = as.numeric(s$y.eps %||% 0.01),
    impute.y = s$impute.y %||% "worst",
    impute.margin = as.numeric(s$impute.margin %||% 0.1),
    lambda = s$lambda %||% "exp",
    surrogate = as.character(s$surrogate %||% "auto"),
    gp.max.n = s$gp.max.n %||% 200,
    gp.restarts = s$gp.restarts %||% 3L,
    infill = as.character(s$infill %||% "auto"),
    liar = as.character(s$liar %||% "auto"),
    num.trees = as.integer(s$num.trees %||% 100L),
    min.node.size = if (is.null(s$min.node.size)) NULL else as.integer(s$min.node.size),
    local.points = as.integer(s$local.points %||% 1000L),
    local.top = as.integer(s$local.top %||% 5L),
    batch.dist = as.numeric(s$batch.dist %||% 0.05),
    interleave.random.points = as.integer(s$interleave.random.points %||% 0L),
    mtry = s$mtry,
    splitrule = as.character(s$splitrule %||% "extratrees"),
    se.method = as.character(s$se.method %||% "total"),
    replace = as.logical(s$replace %||% FALSE),
    threads = as.integer(s$threads %||% 1L),
    fs.points = as.integer(s$fs.points %||% 1000L),
    fs.maxit = as.integer(s$fs.maxit %||% 5L),
    fs.restarts = as.integer(s$fs.restarts %||% 3L),
    fs.budget = as.numeric(s$fs.budget %||% 1e5),
    dup.tol = as.numeric(s$dup.tol %||% 1e-4),
    pending = as.character(s$pending %||% "ignore"),
    select = as.character(s$select %||% "pool"),
    min.fit = s$min.fit,
    warm.start = s$warm.start %||% NULL,
    fit.max = s$fit.max %||% 1000,
    fit.top = s$fit.top %||% 0.25,
    ahead = s$ahead %||% "auto",
    verbose = as.logical(s$verbose %||% TRUE))
  if (!(ctl$mode %in% c("stream", "batch")))
    fail("mode = '", ctl$mode, "' is not supported; use mode = 'stream' (default) or mode = 'batch'.")
  if (!is.finite(ctl$max.budget) || ctl$max.budget < 1)
    fail("max.budget must be a positive number of evaluations (got ", ctl$max.budget, ").")
  ctl$max.budget <- as.integer(ctl$max.budget)
  if (!(ctl$y.trafo %in% c("auto", "none", "slog", "log", "rank")))
    fail("y.trafo = '", ctl$y.trafo, "' is not supported; use 'auto' (default), 'none', 'slog', 'log' or 'rank'.")
  if (!(ctl$surrogate %in% c("auto", "gp", "ranger", "randomForest")))
    fail("surrogate = '", ctl$surrogate, "' is not supported; use 'auto' (default: a Gaussian process ",
         "for numeric spaces while fewer than gp.max.n points are fitted, else the forest), 'gp', ",
         "'ranger' or 'randomForest'.")
  whole <- function(v, lo) length(v) == 1L && is.numeric(v) && is.finite(v) && v == round(v) && v >= lo
  if (!whole(ctl$gp.max.n, 0))
    fail("gp.max.n must be a whole number >= 0 (got ", paste(deparse(ctl$gp.max.n), collapse = " "),
         "): the number of fitted points from which surrogate = 'auto' uses the forest instead of ",
         "the Gaussian process, e.g. gp.max.n = 200 (the default); 0 never uses the GP.")
  if (!whole(ctl$gp.restarts, 1))
    fail("gp.restarts must be a whole number >= 1 (got ", paste(deparse(ctl$gp.restarts), collapse = " "),
         "): the maximum-likelihood restarts of the Gaussian process, e.g. gp.restarts = 3 (the default).")
  ctl$gp.max.n <- as.integer(ctl$gp.max.n); ctl$gp.restarts <- as.integer(ctl$gp.restarts)
  if (!(length(ctl$infill) == 1L && ctl$infill %in% c("auto", "ei", "cb")))
    fail("infill = '", paste(ctl$infill, collapse = "', '"), "' is not supported; use 'auto' (default: ",
         "expected improvement when the GP proposes a single point, else qLCB), 'ei' or 'cb' (qLCB, mlrMBO's ",
         "multi-point criterion).")
  if (!(length(ctl$liar) == 1L && ctl$liar %in% c("auto", "min", "mean", "max", "none")))
    fail("liar = '", paste(ctl$liar, collapse = "', '"), "' is not supported; use 'auto' (default: ",
         "'mean' in batch mode, 'none' in stream mode), 'min' (constant liar at the best value), 'mean' (kriging ",
         "believer, the GP's mean), 'max' (the worst value) or 'none' (no fantasies).")
  if (!(ctl$select %in% c("pool", "lambda")))
    fail("select = '", ctl$select, "' is not supported; use 'pool' (default) or 'lambda' (mlrMBO's choice).")
  if (!(ctl$pending %in% c("believer", "ignore")))
    fail("pending = '", ctl$pending, "' is not supported; use 'believer' or 'ignore'.")
  if (!(identical(ctl$impute.y, "worst") || identical(ctl$impute.y, "median") || is.numeric(ctl$impute.y)))
    fail("impute.y must be 'worst', 'median' or a number (got ", deparse(ctl$impute.y), ").")
  if (!(identical(ctl$lambda, "exp") || (is.numeric(ctl$lambda) && ctl$lambda >= 0)))
    fail("lambda must be 'exp' or a non-negative number (got ", deparse(ctl$lambda), ").")
  if (!is.null(ctl$warm.start)) {
    w <- ctl$warm.start
    ok <- length(w) == 1L && is.numeric(w) && is.finite(w) && w >= 1 && w == round(w)
    if (!ok)
      fail("warm.start must be the id of an earlier experiment of the same store, a positive whole ",
           "number (got ", paste(deparse(w), collapse = " "), "), e.g. SETTINGS=\"warm.start = 12\"; ",
           "`emews sql \"SELECT id, name, status FROM experiments\"` lists the ids.")
    ctl$warm.start <- as.integer(w)
  }
  if (ctl$fs.points < 1 || ctl$fs.maxit < 1 || ctl$fs.restarts < 1)
    fail("fs.points, fs.maxit and fs.restarts must be at least 1.")
  num1 <- function(v) length(v) == 1L && is.numeric(v) && !is.na(v)
  if (!(num1(ctl$fit.max) && ctl$fit.max >= 10 && (is.infinite(ctl$fit.max) || ctl$fit.max == round(ctl$fit.max))))
    fail("fit.max must be a whole number of at least 10, or Inf (got ", paste(deparse(ctl$fit.max), collapse = " "),
         "): the most points the surrogate is fitted on, e.g. fit.max = 1000 (the default) or Inf to fit all.")
  if (!(num1(ctl$fit.top) && ctl$fit.top >= 0 && ctl$fit.top <= 1))
    fail("fit.top must be a number between 0 and 1 (got ", paste(deparse(ctl$fit.top), collapse = " "),
         "): the share of fit.max kept for the best points, e.g. fit.top = 0.25 (the default).")
  if (identical(ctl$ahead, "auto")) {
  } else if (num1(ctl$ahead) && is.finite(ctl$ahead) && ctl$ahead >= 0 && ctl$ahead == round(ctl$ahead)) {
    ctl$ahead <- as.integer(ctl$ahead)
  } else fail("ahead must be 'auto' or a whole number >= 0 (got ", paste(deparse(ctl$ahead), collapse = " "),
              "): the trials stream mode keeps queued beyond the idle workers, e.g. ahead = 'auto' (the ",
              "default) or ahead = 0 to propose only for idle workers.")
  ctl
}
