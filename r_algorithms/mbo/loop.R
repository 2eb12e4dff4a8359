# r_algorithms/mbo/loop.R -- the MBO loop: settings, initial design, then proposal rounds until
# the budget is spent, in one of two strategies chosen by `mode`:
#   batch   propose propose.points points, wait for all of them (eq_batch), refit: the
#           CANDLE/Supervisor behaviour;
#   stream  keep every worker busy: whenever results arrive (eq_results), propose as many points
#           as there are free workers, plus enough to keep `ahead` trials queued in the driver
#           for the workers that finish during the proposal (scale.R); random points until
#           min.fit results are in.
# Ends with eq_done and the final message (see mlrMBO.R).

mbo_log <- function(S, fmt, ...) if (isTRUE(S$ctl$verbose)) message(sprintf(paste0("mlrMBO: ", fmt), ...))

mbo_loop_batch <- function(S, design, q.batch) {
  ctl <- S$ctl; budget <- ctl$max.budget
  iter <- 0L
  if (nrow(design)) {
    rows <- mbo_add(S, design)
    mbo_record(S, eq_batch(mbo_to_farm(S, design)), rows)
  }
  while (mbo_n_new(S) < budget && iter < ctl$max.iterations) {
    q <- min(q.batch, budget - mbo_n_new(S))
    t0 <- proc.time()[["elapsed"]]
    X <- mbo_propose(S, q)
    rows <- mbo_add(S, X)
    tp <- proc.time()[["elapsed"]] - t0
    mbo_record(S, eq_batch(mbo_to_farm(S, X)), rows)
    iter <- iter + 1L
    b <- mbo_best(S)
    mbo_log(S, "batch %d: %d evaluations, best %s, proposal %.2f s", iter, mbo_n_new(S),
            if (is.null(b)) "none" else format(b$value, digits = 6), tp)
  }
  iter
}

mbo_loop_stream <- function(S, design, workers, min.fit) {
  ctl <- S$ctl; budget <- ctl$max.budget
  iter <- 0L
  if (nrow(design)) {
    ids <- eq_submit(mbo_to_farm(S, design))
    mbo_add(S, design, ids)
  }
  repeat {
    npend <- sum(S$status == "pending")
    can <- mbo_n_new(S) < budget && iter < ctl$max.iterations
    if (npend == 0L && !can) break
    free <- NA_integer_; nres <- 0L
    if (npend > 0L) {
      r <- eq_results(min = 1L)
      mbo_record(S, r$results)
      nres <- length(r$results)
      free <- r$free
      if (!is.na(r$workers)) workers <- r$workers
    }
    if (!can) next
    npend <- sum(S$status == "pending")
    if (is.na(free)) free <- if (is.na(workers)) 1L else max(0L, workers - npend)
    if (free <= 0L && npend == 0L) free <- 1L
    # plus the look-ahead (scale.R): trials queued for the workers that finish during the proposal
    q <- min(mbo_stream_q(S, free, npend, workers, nres), budget - mbo_n_new(S))
    if (q <= 0L) next
    iter <- iter + 1L
    t0 <- proc.time()[["elapsed"]]
    nobs <- sum(S$status != "pending")
    X <- if (nobs < min.fit) {
      do.call(rbind, lapply(seq_len(q), function(k) {
        r <- mbo_random_distinct(S, S$N)
        if (is.null(r)) mbo_sample(S$info, mbo_full_box(S$info), 1L) else r$X
      }))
    } else mbo_propose(S, q)
    tp <- proc.time()[["elapsed"]] - t0
    ids <- eq_submit(mbo_to_farm(S, X))
    mbo_add(S, X, ids)
    b <- mbo_best(S)
    mbo_log(S, "round %d: %d submitted, %d returned, best %s, proposed %d in %.2f s", iter, mbo_n_new(S),
            sum(S$status != "pending") - S$nwarm, if (is.null(b)) "none" else format(b$value, digits = 6), q, tp)
  }
  iter
}

# the final message, as JSON text; counts are of this run's trials (warm-start points apart)
mbo_final_json <- function(S, iter) {
  b <- mbo_best(S)
  st <- S$status[S$nwarm + seq_len(mbo_n_new(S))]
  w <- S$warm
  paste0("{", paste(c(
    '"algorithm":"mlrMBO"',
    paste0('"best":', if (is.null(b)) "null" else eq_point_json(b$params)),
    paste0('"value":', if (is.null(b)) "null" else mbo_json_number(b$value)),
    paste0('"id":', if (is.null(b) || is.na(b$id)) "null" else b$id),
    paste0('"evaluations":', mbo_n_new(S)),
    paste0('"completed":', sum(st == "completed")),
    paste0('"failed":', sum(st != "completed" & st != "pending")),
    paste0('"iterations":', iter),
    paste0('"mode":"', S$ctl$mode, '"'),
    if (!is.null(w)) sprintf('"warm":{"experiment":%d,"points":%d,"completed":%d,"dropped":%d,"best":%s}',
                             w$experiment, w$points, w$completed, w$dropped,
                             if (!is.null(b) && isTRUE(b$warm)) "true" else "false")), collapse = ","), "}")
}

# one number as JSON in the shortest form that reads back to the same double (the encoding of
# eq_point_json, eq/R/EQ.R's public helper)
mbo_json_number <- function(v) sub('^\\{"v":(.*)\\}$', "\\1", eq_point_json(list(v = v)))

mbo_main <- function(settings = eq_settings()) {
  ctl <- mbo_settings(settings)
  if (!is.null(ctl$seed) && !is.na(ctl$seed)) set.seed(as.integer(ctl$seed))
  file <- ctl$param.set.file
  if (!grepl("^/", file) && exists("EQ_HOME") && !file.exists(file) && file.exists(file.path(EQ_HOME, file)))
    file <- file.path(EQ_HOME, file)
  ps <- eq_space_load(file)
  S <- mbo_new_state(ctl, ps)
  if (!is.null(ctl$warm.start)) mbo_warm_start(S, ctl$warm.start)
  d <- length(S$act)
  maxlev <- max(c(1L, vapply(S$info, function(p) if (is.null(p$levels) || p$const) 1L else length(p$levels), 1L)))
  n0 <- mbo_design_size(ctl, d, maxlev, S$nwarm, gp = mbo_use_gp(S, 0L))   # design.R: 2 d for the GP
  n.run <- max(0L, n0 - S$nwarm)   # warm-start points take the place of design points
  workers <- if (is.null(ctl$workers)) NA_integer_ else as.integer(ctl$workers)
  mbo_log(S, "%d parameters (%d searched), budget %d, design %d%s, mode %s%s", length(S$info), d, ctl$max.budget,
          n.run, if (S$nwarm > 0L) sprintf(" (+ %d warm-start points)", S$nwarm) else "",
          ctl$mode, if (is.null(ctl$preset)) "" else paste0(", preset ", ctl$preset))
  design <- if (n.run > 0L) mbo_design(S, n.run) else S$X[0, , drop = FALSE]
  iter <- if (ctl$mode == "batch") {
    q.batch <- as.integer(if (!is.null(ctl$propose.points)) ctl$propose.points else if (!is.na(workers)) workers else 8L)
    mbo_loop_batch(S, design, q.batch)
  } else {
    min.fit <- if (is.null(ctl$min.fit)) max(2L, ceiling(n0 / 2)) else as.integer(ctl$min.fit)
    mbo_loop_stream(S, design, workers, min.fit)
  }
  final.json <- mbo_final_json(S, iter)
  mbo_log(S, "done: %s", final.json)
  eq_done(final.json)
  assign("mbo_last_state", S, envir = globalenv())
  invisible(S)
}
