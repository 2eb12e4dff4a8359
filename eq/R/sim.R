# eq/R/sim.R -- the simulated farm: an in-process stand-in for the driver side of the EQ
# protocol, so that an optimizer can be run and tested without ZeroMQ, MPI or a real farm.
# `emews simulate ALGO --function branin ...` (emews_py/simulate.py) runs R and Python optimizers
# against it; R code can use it directly as below. It defines the EMEWS globals
# OUT_put(string) / IN_get() and answers exactly as docs/eq-protocol.md says the driver does:
#   * "Params" handshake -> the settings string given by the test;
#   * plain EMEWS batches ('{...};{...}') -> ';'-joined objectives ("NaN" for a failed trial);
#   * extension messages {"eq": "batch" | "submit" | "results" | "status"} with trial ids;
#   * "DONE"/"FINAL" followed by the final message.
# Trials run on a SIMULATED farm of `workers` workers: each trial takes a random duration in
# simulated time (no sleeping), is evaluated with the R function `objective(params)` (params as
# the pilot would receive them, parsed from the JSON the optimizer sent), and finishes in
# simulated-time order. So this measures search quality and protocol behaviour, not dispatch.
#
#   h <- fake_eq_run("r_algorithms/mlrMBO.R", settings = "max.budget = 20, ...",
#                    objective = fake_eq_objective, workers = 4)
#   h$trials (data.frame), h$final (string), h$messages, fake_eq_utilization(h)
#
# `objective` may return a number, or list(objective = , status = "completed"|"failed"|"timeout");
# an R error inside it makes the trial "failed".

suppressPackageStartupMessages(library(jsonlite))

fake_eq_new <- function(settings = "", objective = fake_eq_objective, workers = 4L,
                        duration = function(params) rexp(1, 1) + 0.1, seed = 12345L,
                        envir = globalenv()) {
  h <- new.env()
  h$settings <- settings
  h$objective <- objective
  h$duration <- duration
  h$workers <- as.integer(workers)
  h$now <- 0
  h$trials <- list()        # by id: list(params, json, submit, start, finish, status, objective, returned, worker)
  h$queue <- integer(0)     # ids waiting for a worker
  h$busy <- rep(NA_integer_, h$workers)   # trial id per worker
  h$reply <- NULL
  h$state <- "open"         # open -> final (after DONE) -> closed
  h$final <- NULL
  h$messages <- character(0)
  h$nmsg <- 0L
  h$max_busy <- 0L
  h$t_answer <- NA_real_    # wall clock when the optimizer last received an answer
  h$proposal_s <- numeric(0)  # per request with points: wall time from that answer to the request
  # private RNG stream so simulated durations do not disturb the optimizer's random numbers
  h$rng <- local({
    old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv()) else NULL
    set.seed(seed); s <- get(".Random.seed", globalenv())
    if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, globalenv())
    s
  })
  assign("OUT_put", function(string) fake_eq_out_put(h, string), envir = envir)
  assign("IN_get", function() fake_eq_in_get(h), envir = envir)
  h
}

.fe_with_rng <- function(h, expr) {
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv()) else NULL
  assign(".Random.seed", h$rng, globalenv())
  on.exit({
    h$rng <- get(".Random.seed", globalenv())
    if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, globalenv())
  })
  force(expr)
}

.fe_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, null = "null", na = "null"))

.fe_clock <- function() as.numeric(Sys.time())  # microseconds; proc.time() has only ms

fake_eq_in_get <- function(h) {
  if (is.null(h$reply)) stop("fake_eq: IN_get() called with no request outstanding (the real driver would block forever)")
  r <- h$reply; h$reply <- NULL
  h$t_answer <- .fe_clock()
  r
}

# The optimizer's proposal time for a request that carries points (taken before the simulated
# farm does any work for it).
.fe_proposal <- function(h, t_in) if (!is.na(h$t_answer)) h$proposal_s <- c(h$proposal_s, t_in - h$t_answer)

fake_eq_out_put <- function(h, string) {
  t_in <- .fe_clock()
  if (!is.character(string) || length(string) != 1L) stop("fake_eq: OUT_put() needs one string")
  h$nmsg <- h$nmsg + 1L
  if (length(h$messages) < 2000L) h$messages <- c(h$messages, string)
  if (h$state == "closed") stop("fake_eq: OUT_put() after the final message")
  if (h$state == "final") { h$final <- string; h$state <- "closed"; return(invisible(NULL)) }
  if (!is.null(h$reply)) stop("fake_eq: OUT_put() while a reply is still unread (protocol out of step): ", substr(string, 1, 80))
  if (string %in% c("DONE", "FINAL")) { h$state <- "final"; return(invisible(NULL)) }
  if (identical(string, "Params")) { h$reply <- h$settings; return(invisible(NULL)) }
  msg <- tryCatch(jsonlite::fromJSON(string, simplifyVector = FALSE), error = function(e) NULL)
  if (is.list(msg) && !is.null(names(msg)) && !is.null(msg$eq)) {
    if (msg$eq %in% c("submit", "batch")) .fe_proposal(h, t_in)
    h$reply <- switch(msg$eq,
      submit = { ids <- fake_eq_submit(h, msg$points); .fe_json(list(eq = "submitted", ids = I(ids))) },
      batch = {
        ids <- fake_eq_submit(h, msg$points)
        fake_eq_wait(h, ids)
        .fe_json(list(eq = "results", results = lapply(ids, function(i) fake_eq_result(h, i))))
      },
      results = {
        m <- if (is.null(msg$min)) 1L else as.integer(msg$min)
        done <- fake_eq_collect(h, m)
        st <- fake_eq_counts(h)
        .fe_json(list(eq = "results", results = lapply(done, function(i) fake_eq_result(h, i)),
                      pending = st$pending, free = st$free, workers = h$workers))
      },
      status = { st <- fake_eq_counts(h); .fe_json(c(list(eq = "status"), st, list(workers = h$workers))) },
      stop("fake_eq: unknown extension message '", msg$eq, "'"))
    return(invisible(NULL))
  }
  # plain EMEWS batch: ';'-joined JSON objects
  .fe_proposal(h, t_in)
  parts <- strsplit(string, ";", fixed = TRUE)[[1]]
  pts <- lapply(parts, function(p) {
    x <- tryCatch(jsonlite::fromJSON(p, simplifyVector = FALSE), error = function(e)
      stop("fake_eq: plain batch element is not a JSON object: ", substr(p, 1, 80)))
    x
  })
  ids <- fake_eq_submit(h, pts)
  fake_eq_wait(h, ids)
  h$reply <- paste(vapply(ids, function(i) {
    o <- h$trials[[i]]$objective
    if (is.na(o)) "NaN" else format(o, digits = 17)
  }, character(1)), collapse = ";")
  invisible(NULL)
}

fake_eq_submit <- function(h, points) {
  ids <- integer(0)
  for (p in points) {
    id <- length(h$trials) + 1L
    h$trials[[id]] <- list(params = p, submit = h$now, start = NA_real_, finish = NA_real_,
                           status = "queued", objective = NA_real_, metrics = list(),
                           returned = FALSE, worker = NA_integer_)
    h$queue <- c(h$queue, id)
    ids <- c(ids, id)
  }
  fake_eq_dispatch(h)
  ids
}

fake_eq_dispatch <- function(h) {
  while (length(h$queue) > 0L && any(is.na(h$busy))) {
    w <- which(is.na(h$busy))[1]
    id <- h$queue[1]; h$queue <- h$queue[-1]
    t <- h$trials[[id]]
    t$start <- h$now; t$worker <- w; t$status <- "running"
    t$finish <- h$now + .fe_with_rng(h, h$duration(t$params))
    h$trials[[id]] <- t
    h$busy[w] <- id
  }
  h$max_busy <- max(h$max_busy, sum(!is.na(h$busy)))
}

fake_eq_evaluate <- function(h, id) {
  t <- h$trials[[id]]
  out <- tryCatch(h$objective(t$params), error = function(e) list(objective = NA_real_, status = "failed",
                                                                    error = conditionMessage(e)))
  if (is.list(out)) {
    t$objective <- if (is.null(out$objective)) NA_real_ else as.numeric(out$objective)
    t$status <- if (is.null(out$status)) (if (is.finite(t$objective)) "completed" else "failed") else out$status
  } else {
    t$objective <- as.numeric(out)
    t$status <- if (length(out) == 1L && is.finite(t$objective)) "completed" else "failed"
  }
  if (t$status != "completed") t$objective <- NA_real_
  h$trials[[id]] <- t
}

# advance simulated time to the next trial completion; returns FALSE if nothing is running
fake_eq_step <- function(h) {
  running <- h$busy[!is.na(h$busy)]
  if (length(running) == 0L) return(FALSE)
  fin <- vapply(running, function(i) h$trials[[i]]$finish, numeric(1))
  id <- running[which.min(fin)]
  h$now <- max(h$now, min(fin))
  fake_eq_evaluate(h, id)
  h$busy[h$busy == id & !is.na(h$busy)] <- NA_integer_
  fake_eq_dispatch(h)
  TRUE
}

.fe_finished_unreturned <- function(h) {
  ids <- seq_along(h$trials)
  ids[vapply(h$trials, function(t) !t$returned && t$status %in% c("completed", "failed", "timeout"), logical(1))]
}

fake_eq_wait <- function(h, ids) {
  while (!all(vapply(ids, function(i) h$trials[[i]]$status %in% c("completed", "failed", "timeout"), logical(1))))
    if (!fake_eq_step(h)) stop("fake_eq: waiting for trials that are not running")
  for (i in ids) h$trials[[i]]$returned <- TRUE
}

fake_eq_collect <- function(h, m) {
  pending <- sum(!vapply(h$trials, function(t) t$returned, logical(1)))
  m <- min(m, pending)
  while (length(.fe_finished_unreturned(h)) < m)
    if (!fake_eq_step(h)) break
  done <- .fe_finished_unreturned(h)
  done <- done[order(vapply(done, function(i) h$trials[[i]]$finish, numeric(1)))]
  for (i in done) h$trials[[i]]$returned <- TRUE
  done
}

fake_eq_counts <- function(h) {
  returned <- vapply(h$trials, function(t) t$returned, logical(1))
  status <- vapply(h$trials, function(t) t$status, character(1))
  list(pending = sum(!returned), free = max(0L, sum(is.na(h$busy)) - length(h$queue)),
       completed = sum(status == "completed"))
}

fake_eq_result <- function(h, id) {
  t <- h$trials[[id]]
  list(id = id, params = if (length(t$params)) t$params else structure(list(), names = character(0)),
       status = t$status, objective = if (is.na(t$objective)) NULL else t$objective,
       metrics = structure(list(), names = character(0)))
}

# All trials as a data.frame (params as JSON text plus, for convenience, one column per parameter).
fake_eq_trials <- function(h) {
  if (length(h$trials) == 0L) return(data.frame())
  base <- data.frame(
    id = seq_along(h$trials),
    status = vapply(h$trials, function(t) t$status, character(1)),
    objective = vapply(h$trials, function(t) t$objective, numeric(1)),
    submit = vapply(h$trials, function(t) t$submit, numeric(1)),
    start = vapply(h$trials, function(t) t$start, numeric(1)),
    finish = vapply(h$trials, function(t) t$finish, numeric(1)),
    stringsAsFactors = FALSE)
  base$params <- lapply(h$trials, function(t) t$params)
  base
}

# Fraction of worker-time busy between time 0 and the last finish.
fake_eq_utilization <- function(h) {
  tr <- fake_eq_trials(h)
  ok <- is.finite(tr$finish)
  sum(tr$finish[ok] - tr$start[ok]) / (h$workers * max(tr$finish[ok]))
}

# What `emews simulate` prints, as JSON: every trial (id, status, objective, simulated start and
# finish), the proposal times, utilization, whether the optimizer ended with DONE + final message.
fake_eq_report <- function(h) {
  tr <- fake_eq_trials(h)
  num <- function(x) if (length(x)) x else numeric(0)
  .fe_json(list(
    trials = list(id = I(num(tr$id)), status = I(if (length(tr)) tr$status else character(0)),
                  objective = I(num(tr$objective)), start = I(num(tr$start)), finish = I(num(tr$finish))),
    proposal_s = I(h$proposal_s), workers = h$workers, max_busy = h$max_busy,
    utilization = if (length(tr) && any(is.finite(tr$finish))) fake_eq_utilization(h) else NULL,
    makespan = if (length(tr) && any(is.finite(tr$finish))) max(tr$finish[is.finite(tr$finish)]) else NULL,
    state = h$state, final = h$final, messages = h$nmsg))
}

# Run an R optimizer as the runtime does: define OUT_put/IN_get and EQ_HOME, source eq/R/EQ.R,
# eq/R/space.R and the algorithm in the global environment. Errors from the algorithm propagate
# (with the harness available as attr(error, "harness") through fake_eq_last()).
fake_eq_run <- function(algo, settings, objective = fake_eq_objective, workers = 4L, ...,
                        eq_home = fake_eq_home()) {
  h <- fake_eq_new(settings = settings, objective = objective, workers = workers, ...)
  assign(".fake_eq_last", h, envir = globalenv())
  assign("EQ_HOME", eq_home, envir = globalenv())
  source(file.path(eq_home, "eq", "R", "EQ.R"), local = globalenv())
  source(file.path(eq_home, "eq", "R", "space.R"), local = globalenv())
  if (!grepl("/", algo)) algo <- file.path(eq_home, "r_algorithms", paste0(algo, ".R"))
  source(algo, local = globalenv())
  h
}

fake_eq_last <- function() get(".fake_eq_last", envir = globalenv())

fake_eq_home <- function() {
  if (exists("EQ_HOME", envir = globalenv())) return(get("EQ_HOME", envir = globalenv()))
  d <- Sys.getenv("EQ_HOME", "")
  if (nzchar(d)) return(normalizePath(d))
  # eq/R/sim.R -> repository root
  f <- tryCatch(normalizePath(sys.frame(1)$ofile), error = function(e) NULL)
  if (!is.null(f)) return(dirname(dirname(dirname(f))))
  normalizePath(".")
}

# --- objectives of the analytic bench pilot (same definitions as pilots/bench) -----------------

fake_eq_branin <- function(x1, x2) {
  a <- 1; b <- 5.1 / (4 * pi^2); c <- 5 / pi; r <- 6; s <- 10; t <- 1 / (8 * pi)
  a * (x2 - b * x1^2 + c * x1 - r)^2 + s * (1 - t) * cos(x1) + s
}

fake_eq_hartmann6 <- function(x) {
  alpha <- c(1.0, 1.2, 3.0, 3.2)
  A <- matrix(c(10, 3, 17, 3.5, 1.7, 8,
                0.05, 10, 17, 0.1, 8, 14,
                3, 3.5, 1.7, 10, 17, 8,
                17, 8, 0.05, 10, 0.1, 14), 4, 6, byrow = TRUE)
  P <- 1e-4 * matrix(c(1312, 1696, 5569, 124, 8283, 5886,
                       2329, 4135, 8307, 3736, 1004, 9991,
                       2348, 1451, 3522, 2883, 3047, 6650,
                       4047, 8828, 8732, 5743, 1091, 381), 4, 6, byrow = TRUE)
  -sum(alpha * exp(-rowSums(A * (matrix(x, 4, 6, byrow = TRUE) - P)^2)))
}

fake_eq_mixed <- function(x1, x2, n, cat) {
  (x1 - 0.3)^2 + (x2 + 0.1)^2 + 0.05 * (n - 7)^2 + c(a = 0, b = 0.3, c = 0.6, d = 1.0)[[cat]]
}

fake_eq_minima <- c(branin = 0.397887357729739, hartmann6 = -3.32236801141551, mixed = 0)

# Dispatch on params$`function` like the bench pilot (default branin).
fake_eq_objective <- function(params) {
  f <- params[["function"]]
  if (is.null(f)) f <- "branin"
  switch(f,
    branin = fake_eq_branin(params$x1, params$x2),
    hartmann6 = fake_eq_hartmann6(unlist(params[paste0("x", 1:6)])),
    mixed = fake_eq_mixed(params$x1, params$x2, params$n, params$cat),
    stop("unknown function ", f))
}
