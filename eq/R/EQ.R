# eq/R/EQ.R -- R helpers for optimizers, built ONLY on the two EMEWS calls OUT_put(string) and
# IN_get(), which the runtime (or eq/R/sim.R) defines as R globals before sourcing this.
# See docs/eq-protocol.md and docs/writing-an-optimizer.md.
#
#   eq_settings()          "Params" handshake; returns the settings as a named list
#   eq_submit(points)      -> integer trial ids (returns at once)
#   eq_results(min = 1)    -> list(results, pending, free, workers)
#   eq_status()            -> list(pending, free, workers, completed)
#   eq_batch(points)       -> list of results, in the order of points (waits for all)
#   eq_done(final)         sends "DONE" then the final message (a string, or a list sent as JSON)
#   eq_points_json(points) -> JSON array text; eq_point_json(point) -> one JSON object
#
# `points` is a list of named lists or a data.frame (one row per point), values already
# transformed (what the pilot receives). A result is a list(id, params, status, objective,
# metrics); objective is NA_real_ when the trial failed or timed out (JSON null).

suppressPackageStartupMessages(library(jsonlite))

.eq_fail <- function(...) stop(paste0(...), call. = FALSE)

# --- encoding ---------------------------------------------------------------------------------

.eq_value <- function(v) {
  if (is.factor(v)) v <- as.character(v)
  if (is.list(v) && length(v) == 1L && is.null(names(v))) v <- v[[1]]
  v
}

.eq_as_point_list <- function(points) {
  if (is.data.frame(points)) {
    if (nrow(points) == 0L) return(list())
    cols <- lapply(points, function(col) if (is.factor(col)) as.character(col) else col)
    return(lapply(seq_len(nrow(points)), function(i) {
      pt <- lapply(cols, function(col) if (is.list(col)) col[[i]] else col[i])
      pt[!vapply(pt, function(v) length(v) == 1L && !is.list(v) && is.na(v), logical(1))]
    }))
  }
  if (!is.list(points))
    .eq_fail("eq: points must be a list of named lists or a data.frame, not a ", class(points)[1], ".")
  # a single named list is one point
  if (length(points) > 0L && !is.null(names(points)) && all(nzchar(names(points))) &&
      !all(vapply(points, is.list, logical(1))))
    points <- list(points)
  lapply(points, function(pt) {
    if (is.list(pt) && length(pt) == 0L) return(list())
    if (!is.list(pt) || is.null(names(pt)))
      .eq_fail("eq: each point must be a named list (parameter = value), got ", class(pt)[1], ".")
    pt <- lapply(pt, .eq_value)
    pt[!vapply(pt, function(v) is.null(v) || (length(v) == 1L && is.na(v)), logical(1))]
  })
}

.eq_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, null = "null",
                                                        na = "null"))

# A double in the shortest form that reads back to the same double (jsonlite's digits = NA
# stops at 15 significant digits, so 0.1 + 0.2 would come back as 0.3).
.eq_num <- function(v) {
  if (!is.finite(v)) return("null")
  s <- sprintf("%.15g", v)
  if (as.numeric(s) != v) s <- sprintf("%.16g", v)
  if (as.numeric(s) != v) s <- sprintf("%.17g", v)
  s
}

.eq_scalar_json <- function(v) {
  if (is.double(v) && length(v) == 1L) return(.eq_num(v))
  .eq_json(v)  # strings (escaped), integers, logicals, and anything longer as a JSON array
}

# One point as a JSON object. Length-1 values are unboxed (a one-character string stays a
# string, integers stay integers, logicals become true/false); an empty point gives {}.
eq_point_json <- function(point) {
  pt <- .eq_as_point_list(list(point))[[1]]
  if (length(pt) == 0L) return("{}")
  keys <- vapply(names(pt), function(k) .eq_json(k), character(1))
  vals <- vapply(pt, .eq_scalar_json, character(1))
  paste0("{", paste0(keys, ":", vals, collapse = ","), "}")
}

eq_points_json <- function(points) {
  pts <- .eq_as_point_list(points)
  if (length(pts) == 0L) return("[]")
  paste0("[", paste(vapply(pts, eq_point_json, character(1)), collapse = ","), "]")
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
  r$objective <- if (is.null(obj) || !is.numeric(obj) || length(obj) != 1L) NA_real_ else as.numeric(obj)
  if (is.null(r$status)) r$status <- if (is.na(r$objective)) "failed" else "completed"
  if (!is.null(r$id)) r$id <- as.integer(r$id)
  if (is.null(r$params)) r$params <- list()
  if (is.null(r$metrics)) r$metrics <- list()
  r
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

eq_done <- function(final_message = "") {
  .eq_check_transport()
  if (!is.character(final_message) || length(final_message) != 1L)
    final_message <- .eq_json(final_message)
  OUT_put("DONE")
  OUT_put(final_message)
  invisible(NULL)
}
