# eq/R/EQ.R -- R helpers for optimizers, built ONLY on the two EMEWS calls OUT_put(string) and
# IN_get(), which the runtime (or eq/R/sim.R) defines as R globals before sourcing this.
# See docs/eq-protocol.md and docs/writing-an-optimizer.md.
#
#   eq_settings()          "Params" handshake; returns the settings as a named list
#   eq_submit(points)      -> integer trial ids (returns at once)
#   eq_results(min = 1)    -> list(results, pending, free, workers)
#   eq_status()            -> list(pending, free, workers, completed)
#   eq_batch(points)       -> list of results, in the order of points (waits for all)
#   eq_history(id)         -> list(experiment, name, space, results): an earlier experiment of the
#                             same store, its finished trials as results (to warm-start from)
#   eq_done(final)         sends "DONE" then the final message (a string, or a list sent as JSON)
#   eq_points_json(points) -> JSON array text (sep = ";": the plain EMEWS batch string)
#   eq_point_json(point)   -> one JSON object
#   eq_plain_results(text) -> numeric vector from the ';'-joined answer to a plain batch
#
# `points` is a list of named lists or a data.frame (one row per point), values already
# transformed (what the pilot receives). A result is a list(id, params, status, objective,
# metrics); objective is NA_real_ when the trial failed or timed out (JSON null), Inf when it
# diverged (JSON "Infinity").

suppressPackageStartupMessages(library(jsonlite))

.eq_fail <- function(...) stop(paste0(...), call. = FALSE)

# --- encoding ---------------------------------------------------------------------------------
# Batches are encoded VECTORISED: every value of every point is classified once, and each type is
# formatted with one vectorised call (jsonlite::toJSON costs ~0.3 ms a call, so one call per value
# made the R path ten times slower than Python's). Semantics, for every entry point alike:
#   * length-1 doubles in the shortest form that reads back to the same double (jsonlite's
#     digits = NA stops at 15 significant digits), Inf/-Inf -> null;
#   * integers stay integers, logicals become true/false, strings are JSON-escaped;
#   * NA (and NULL) values leave the parameter out of the point (inactive under `requires`);
#   * anything else (longer vectors, lists, classed values) goes through jsonlite::toJSON.

.eq_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, null = "null",
                                                        na = "null"))

# JSON string literals for a character vector. Only '\' and '"' need escaping unless a control
# character is present; those (rare) strings go through jsonlite so the escapes are its own.
.eq_str_json <- function(x) {
  x <- enc2utf8(as.character(x))
  out <- paste0('"', gsub('"', '\\"', gsub("\\", "\\\\", x, fixed = TRUE), fixed = TRUE), '"')
  # one byte scan for the whole vector; the regex only when a control character is present
  if (length(x) && any(charToRaw(paste(x, collapse = "")) < as.raw(32L) |
                       charToRaw(paste(x, collapse = "")) == as.raw(127L))) {
    odd <- grepl("[[:cntrl:]]", x)
    out[odd] <- vapply(x[odd], .eq_json, character(1), USE.NAMES = FALSE)
  }
  out
}

# Doubles: %.15g, and more digits only where 15 do not read back to the same double.
.eq_num_json <- function(v) {
  s <- sprintf("%.15g", v)
  bad <- which(as.numeric(s) != v)          # NA (not selected) for NaN; Inf reads back as Inf
  if (length(bad)) {
    s16 <- sprintf("%.16g", v[bad])
    ok <- as.numeric(s16) == v[bad]
    s[bad[ok]] <- s16[ok]
    if (!all(ok)) s[bad[!ok]] <- sprintf("%.17g", v[bad[!ok]])
  }
  s[!is.finite(v)] <- "null"
  s
}

# JSON text for each element of a list of values (no NA/NULL left at this point).
.eq_values_json <- function(vals) {
  out <- character(length(vals))
  if (!length(vals)) return(out)
  plain <- lengths(vals) == 1L & vapply(vals, function(v) is.atomic(v) && is.null(oldClass(v)), NA)
  ty <- ifelse(plain, vapply(vals, typeof, ""), "")
  fmt <- list(double = .eq_num_json,
              integer = function(v) sprintf("%d", v),
              logical = function(v) ifelse(v, "true", "false"),
              character = .eq_str_json)
  for (t in names(fmt)) {
    i <- which(ty == t)
    if (length(i)) out[i] <- fmt[[t]](unlist(vals[i], use.names = FALSE))
  }
  rest <- which(!(ty %in% names(fmt)))
  if (length(rest)) out[rest] <- vapply(vals[rest], .eq_json, character(1), USE.NAMES = FALSE)
  out
}

# Points -> one JSON object per point. `points` is a data.frame (one row per point) or a list of
# named lists (a single named list is one point).
.eq_objects_json <- function(points) {
  if (is.data.frame(points)) {
    n <- nrow(points)
    if (n == 0L) return(character(0))
    cols <- lapply(points, function(col) if (is.factor(col)) as.character(col) else col)
    keys <- rep(names(points), each = n)
    pid <- rep(seq_len(n), times = length(cols))
    vals <- unlist(lapply(cols, as.list), recursive = FALSE, use.names = FALSE)
  } else {
    if (!is.list(points))
      .eq_fail("eq: points must be a list of named lists or a data.frame, not a ", class(points)[1], ".")
    if (length(points) > 0L && !is.null(names(points)) && all(nzchar(names(points))) &&
        !all(vapply(points, is.list, logical(1))))
      points <- list(points)
    n <- length(points)
    if (n == 0L) return(character(0))
    ok <- vapply(points, function(pt) is.list(pt) && (length(pt) == 0L || !is.null(names(pt))), NA)
    if (!all(ok))
      .eq_fail("eq: each point must be a named list (parameter = value), got ",
               class(points[[which(!ok)[1]]])[1], ".")
    keys <- unlist(lapply(points, names), use.names = FALSE)
    if (is.null(keys)) keys <- character(0)
    pid <- rep(seq_len(n), lengths(points))
    vals <- unlist(lapply(points, function(pt) unname(as.list(pt))),
                   recursive = FALSE, use.names = FALSE)
  }
  if (length(vals)) {
    # factors as their labels, and a one-element unnamed list as its element
    f <- vapply(vals, is.factor, NA)
    if (any(f)) vals[f] <- lapply(vals[f], as.character)
    w <- vapply(vals, function(v) is.list(v) && length(v) == 1L && is.null(names(v)), NA)
    if (any(w)) vals[w] <- lapply(vals[w], `[[`, 1L)
    keep <- !vapply(vals, function(v) is.null(v) || (length(v) == 1L && isTRUE(is.na(v))), NA)
  } else keep <- logical(0)
  ukeys <- unique(keys)
  pieces <- if (any(keep))
    paste0(.eq_str_json(ukeys)[match(keys[keep], ukeys)], ":", .eq_values_json(vals[keep])) else character(0)
  if (n == 1L) return(paste0("{", paste(pieces, collapse = ","), "}"))
  by_point <- split(pieces, factor(pid[keep], levels = seq_len(n)))
  vapply(by_point, function(x) paste0("{", paste(x, collapse = ","), "}"), character(1),
         USE.NAMES = FALSE)
}

# One point as a JSON object ({} for an empty point). Optimizers written to the plain EMEWS
# convention call this once per point, so the common case (a named list of single, unclassed,
# non-NA numbers, strings and logicals) takes a short path with the same output.
eq_point_json <- function(point) {
  nm <- names(point)
  if (is.list(point) && !is.data.frame(point) && length(point) && !is.null(nm) &&
      all(lengths(point) == 1L) && !anyNA(point) && is.null(unlist(lapply(point, attributes)))) {
    ty <- vapply(point, typeof, "", USE.NAMES = FALSE)
    if (all(ty %in% c("double", "integer", "logical", "character"))) {
      vals <- character(length(point))
      for (t in unique(ty)) {
        i <- ty == t
        v <- unlist(point[i], use.names = FALSE)
        vals[i] <- switch(t, double = .eq_num_json(v), integer = sprintf("%d", v),
                          logical = ifelse(v, "true", "false"), character = .eq_str_json(v))
      }
      return(paste0("{", paste0(.eq_str_json(nm), ":", vals, collapse = ","), "}"))
    }
  }
  .eq_objects_json(list(point))
}

# A batch as a JSON array; eq_points_json(points, sep = ";") gives the plain EMEWS batch string.
eq_points_json <- function(points, sep = NULL) {
  obj <- .eq_objects_json(points)
  if (!is.null(sep)) return(paste(obj, collapse = sep))
  paste0("[", paste(obj, collapse = ","), "]")
}

# --- transport --------------------------------------------------------------------------------

.eq_check_transport <- function() {
  if (!exists("OUT_put", mode = "function") || !exists("IN_get", mode = "function"))
    .eq_fail("eq: OUT_put()/IN_get() are not defined. The EMEWS runtime defines them before it ",
             "sources the optimizer; to run an optimizer without the runtime use eq/R/sim.R.")
}

.eq_get_json <- function(expect) {
  reply <- IN_get()
  if (!is.character(reply) || length(reply) != 1L)
    .eq_fail("eq: IN_get() returned a ", class(reply)[1], " where a JSON '", expect, "' reply was expected.")
  if (reply %in% c("EQ_ABORT", "EQ_STOP", "ABORT"))
    .eq_fail("eq: the driver aborted the experiment (received '", reply, "' while waiting for '", expect, "').")
  obj <- tryCatch(jsonlite::fromJSON(reply, simplifyVector = FALSE), error = function(e) NULL)
  if (!is.list(obj) || is.null(obj$eq)) {
    shown <- if (nchar(reply) > 200) paste0(substr(reply, 1, 200), "...") else reply
    .eq_fail("eq: expected a JSON reply {\"eq\": \"", expect, "\", ...} from the driver, got: ", shown)
  }
  if (identical(obj$eq, "error"))
    .eq_fail("eq: the driver reported an error: ", if (is.null(obj$message)) .eq_json(obj) else obj$message)
  if (!identical(obj$eq, expect))
    .eq_fail("eq: expected a '", expect, "' reply from the driver, got '", obj$eq, "'.")
  obj
}

.eq_norm_result <- function(r) {
  obj <- r$objective
  # a diverged objective comes as "Infinity"/"-Infinity" (JSON has no infinity): Inf/-Inf
  if (is.character(obj) && length(obj) == 1L && obj %in% c("Infinity", "-Infinity")) obj <- as.numeric(obj)
  r$objective <- if (is.null(obj) || !is.numeric(obj) || length(obj) != 1L) NA_real_ else as.numeric(obj)
  if (is.null(r$status)) r$status <- if (is.na(r$objective)) "failed" else "completed"
  if (!is.null(r$id)) r$id <- as.integer(r$id)
  if (is.null(r$params)) r$params <- list()
  if (is.null(r$metrics)) r$metrics <- list()
  r
}

# The answer to a plain EMEWS batch: ';'-joined objectives in the order of the points, NaN (or
# the workflow's impute value) for a failed trial. One strsplit and one conversion per batch.
eq_plain_results <- function(text) {
  v <- strsplit(paste(text, collapse = ""), ";", fixed = TRUE)[[1]]
  out <- suppressWarnings(as.numeric(v))
  bad <- is.na(out) & !(tolower(trimws(v)) %in% c("nan", "na", "null", ""))
  if (any(bad))
    .eq_fail("eq: the answer to a plain batch has values that are not numbers: ",
             paste(utils::head(v[bad], 3), collapse = ", "), ".")
  out
}

.eq_int <- function(x, default = NA_integer_) if (is.null(x)) default else as.integer(x)

# --- public helpers ---------------------------------------------------------------------------

# Settings handshake. R argument text ("max.budget = 100, seed = 1, ...") is parsed with
# eval(parse(text = paste0("list(", s, ")"))); a JSON object is accepted as well.
eq_settings <- function() {
  .eq_check_transport()
  OUT_put("Params")
  s <- IN_get()
  if (is.null(s) || length(s) == 0L) return(list())
  s <- paste(s, collapse = " ")
  if (!nzchar(trimws(s))) return(list())
  if (grepl("^[[:space:]]*\\{", s)) {
    out <- tryCatch(jsonlite::fromJSON(s, simplifyVector = TRUE), error = function(e) NULL)
    if (is.list(out)) return(out)
  }
  out <- tryCatch(eval(parse(text = paste0("list(", s, ")")), envir = new.env(parent = baseenv())),
                  error = function(e)
                    .eq_fail("eq: the algorithm settings are not valid R argument text (",
                             gsub("\n", " ", conditionMessage(e)), "). They were: ", s,
                             ". Write them as name = value pairs separated by commas, e.g. ",
                             "SETTINGS=\"design.size = 20, mode = 'batch'\"."))
  # user SETTINGS are appended to the runtime's: the last value of a repeated name wins
  nm <- names(out)
  if (!is.null(nm)) out <- out[!(duplicated(nm, fromLast = TRUE) & nzchar(nm))]
  out
}

eq_submit <- function(points) {
  .eq_check_transport()
  OUT_put(paste0('{"eq":"submit","points":', eq_points_json(points), "}"))
  rep <- .eq_get_json("submitted")
  as.integer(unlist(rep$ids))
}

eq_results <- function(min = 1L) {
  .eq_check_transport()
  OUT_put(paste0('{"eq":"results","min":', as.integer(min), "}"))
  rep <- .eq_get_json("results")
  list(results = lapply(rep$results, .eq_norm_result),
       pending = .eq_int(rep$pending), free = .eq_int(rep$free), workers = .eq_int(rep$workers))
}

eq_status <- function() {
  .eq_check_transport()
  OUT_put('{"eq":"status"}')
  rep <- .eq_get_json("status")
  list(pending = .eq_int(rep$pending), free = .eq_int(rep$free), workers = .eq_int(rep$workers),
       completed = .eq_int(rep$completed))
}

eq_batch <- function(points) {
  .eq_check_transport()
  OUT_put(paste0('{"eq":"batch","points":', eq_points_json(points), "}"))
  rep <- .eq_get_json("results")
  lapply(rep$results, .eq_norm_result)
}

eq_history <- function(experiment) {
  .eq_check_transport()
  id <- suppressWarnings(as.numeric(experiment))
  if (length(experiment) != 1L || is.logical(experiment) || !is.finite(id) || id < 1 || id != round(id))
    .eq_fail("eq: eq_history() takes the id of an experiment of the store, a positive whole number ",
             "(got ", paste(deparse(experiment), collapse = " "), ").")
  OUT_put(sprintf('{"eq":"history","experiment":%.0f}', id))
  rep <- .eq_get_json("history")
  list(experiment = .eq_int(rep$experiment), name = rep$name, space = rep$space,
       results = lapply(rep$results, .eq_norm_result))
}

eq_done <- function(final_message = "") {
  .eq_check_transport()
  if (!is.character(final_message) || length(final_message) != 1L)
    final_message <- .eq_json(final_message)
  OUT_put("DONE")
  OUT_put(final_message)
  invisible(NULL)
}
