# eq/R/space.R -- CANDLE/ParamHelpers search spaces for every optimizer and for the Python core.
#
#   eq_space_load(file)               -> ParamSet (sources FILE in a fresh environment)
#   eq_space_json(par.set, source)    -> JSON text, format of docs/eq-protocol.md
#   eq_space_transform(par.set, x)    -> named list of transformed values (what the pilot gets)
#   eq_space_check(par.set, file)     -> stop()s with one paragraph if the space is unusable
#
# Command line (the file is also source()-able; the CLI runs only under Rscript):
#   Rscript eq/R/space.R export FILE              prints the JSON space; exit 1 + one paragraph on stderr
#   Rscript eq/R/space.R transform FILE '[{...}]' prints the JSON array of transformed points
#   Rscript eq/R/space.R serve FILE               loads FILE once, then for each line of stdin (a
#                                                 JSON array of points) prints one line: {"points":
#                                                 [...]} or {"error": "one paragraph"}; ends at EOF
#                                                 (emews_py/space.py keeps one per optimizer, so a
#                                                 trial does not wait for R and ParamHelpers to start)
#
# Supported parameter types: numeric, integer (both with finite bounds and optional trafo),
# discrete (values: scalar strings, numbers or logicals), logical. Vector parameters, untyped,
# character and function parameters are rejected with a message. `requires` is exported as a
# flag; optimizers decide whether they support it (r_algorithms/mlrMBO.R does not).

suppressPackageStartupMessages({
  library(ParamHelpers)
  library(jsonlite)
})

.eq_space_fail <- function(...) {
  msg <- paste0(...)
  msg <- gsub("[[:space:]]*\n[[:space:]]*", " ", msg)   # one paragraph
  stop(structure(class = c("eq_space_error", "error", "condition"),
                 list(message = msg, call = NULL)))
}

.eq_space_example <- paste0(
  "A space file must assign a ParamHelpers parameter set, e.g. ",
  "`param.set <- makeParamSet(makeNumericParam(\"lr\", lower = -5, upper = -1, ",
  "trafo = function(x) 10^x), makeDiscreteParam(\"activation\", values = c(\"relu\", \"tanh\")))`.")

eq_space_load <- function(file) {
  if (!is.character(file) || length(file) != 1L || is.na(file) || !nzchar(file))
    .eq_space_fail("The search space file name must be one non-empty string (got ",
                   paste(deparse(file), collapse = " "), "). Pass the path of a CANDLE ",
                   "ParamHelpers file, e.g. workflows/bench_branin.R.")
  if (!file.exists(file) || dir.exists(file))
    .eq_space_fail("The search space file '", file, "' does not exist",
                   if (!grepl("^/", file)) paste0(" (relative to the working directory '", getwd(), "')") else "",
                   ". Give the path of an existing CANDLE ParamHelpers file that assigns ",
                   "`param.set <- makeParamSet(...)`; an absolute path is safest because optimizers ",
                   "run in the run directory.")
  file <- normalizePath(file)
  if (grepl("\\.json$", file, ignore.case = TRUE)) return(.eq_space_from_json(file))
  exprs <- tryCatch(parse(file = file, keep.source = TRUE), error = function(e) {
    m <- conditionMessage(e)
    lines <- strsplit(m, "\n", fixed = TRUE)[[1]]
    where <- regmatches(lines[1], regexec(":([0-9]+):([0-9]+): (.*)$", lines[1]))[[1]]
    if (length(where) == 4L) {
      ln <- as.integer(where[2])
      src <- tryCatch(readLines(file, warn = FALSE)[ln], error = function(e) NA_character_)
      .eq_space_fail("The search space file '", file, "' is not valid R: ", where[4],
                     " at line ", ln, ", column ", where[3],
                     if (!is.na(src)) paste0(" (`", trimws(src), "`)") else "",
                     ". Fix the R syntax there (check for a missing comma, parenthesis or quote); ",
                     "you can check the file with `Rscript -e 'parse(\"", file, "\")'`.")
    }
    .eq_space_fail("The search space file '", file, "' is not valid R: ", paste(lines, collapse = " "),
                   ". Fix the R syntax of the file.")
  })
  # A fresh environment whose parents are ParamHelpers and the base packages, not the global
  # environment of the optimizer (so a space file cannot see or clobber optimizer state).
  env <- new.env(parent = as.environment("package:ParamHelpers"))
  srcrefs <- attr(exprs, "srcref")
  for (i in seq_along(exprs)) {
    tryCatch(eval(exprs[[i]], envir = env), error = function(e) {
      ln <- if (!is.null(srcrefs)) srcrefs[[i]][1L] else NA
      src <- paste(trimws(as.character(srcrefs[[i]])), collapse = " ")
      if (nchar(src) > 160) src <- paste0(substr(src, 1, 157), "...")
      .eq_space_fail("The search space file '", file, "' failed while being evaluated",
                     if (!is.na(ln)) paste0(" at the expression starting on line ", ln) else "",
                     " (`", src, "`): ", conditionMessage(e),
                     ". Fix that expression; the file is sourced in a fresh environment with only ",
                     "ParamHelpers and the base packages attached, so load any other package it needs ",
                     "with library().")
    })
  }
  if (!exists("param.set", envir = env, inherits = FALSE))
    .eq_space_fail("The search space file '", file, "' defines no `param.set` (it defines: ",
                   if (length(ls(env))) paste(ls(env), collapse = ", ") else "nothing",
                   "). ", .eq_space_example)
  ps <- get("param.set", envir = env, inherits = FALSE)
  eq_space_check(ps, file)
  ps
}

# A JSON space (docs/eq-protocol.md, what `Rscript eq/R/space.R export` prints) as a ParamSet, so
# that SPACE=file.json reaches R optimizers too. A trafo is R code: JSON can only point to it, so a
# parameter with "trafo": true is read from the R file named in "source".
.eq_space_from_json <- function(file) {
  sp <- tryCatch(jsonlite::fromJSON(file, simplifyVector = FALSE), error = function(e)
    .eq_space_fail("The search space file '", file, "' is not valid JSON: ", conditionMessage(e),
                   ". Fix the JSON (format: docs/eq-protocol.md, `{\"params\": [{\"id\": ...}]}`)."))
  if (!is.list(sp) || !is.list(sp$params) || !length(sp$params))
    .eq_space_fail("The search space file '", file, "' has no \"params\" list; give ",
                   "`{\"params\": [{\"id\": \"x1\", \"type\": \"numeric\", \"lower\": 0, \"upper\": 1}]}` ",
                   "(format: docs/eq-protocol.md).")
  if (any(vapply(sp$params, function(p) isTRUE(p$trafo), logical(1)))) {
    src <- sp$source
    if (!is.character(src) || !file.exists(src))
      .eq_space_fail("The search space file '", file, "' has a parameter with \"trafo\": true but ",
                     "no readable R \"source\" file that defines the transformation; give SPACE as ",
                     "the ParamHelpers R file, or drop the trafo.")
    return(eq_space_load(src))
  }
  pars <- lapply(seq_along(sp$params), function(i) {
    p <- sp$params[[i]]
    id <- p$id; type <- p$type
    if (!is.character(id) || !nzchar(id) || !is.character(type))
      .eq_space_fail("In the search space file '", file, "', parameter ", i, " needs a string ",
                     "\"id\" and a \"type\" (numeric, integer, discrete or logical).")
    tryCatch(switch(type,
      numeric = makeNumericParam(id, lower = as.numeric(p$lower), upper = as.numeric(p$upper)),
      integer = makeIntegerParam(id, lower = as.numeric(p$lower), upper = as.numeric(p$upper)),
      discrete = {
        v <- p$values
        if (all(vapply(v, function(x) length(x) == 1L && !is.list(x), logical(1)))) {
          same <- length(unique(vapply(v, function(x) class(x)[1], ""))) == 1L
          if (same) v <- unlist(v) else names(v) <- vapply(v, as.character, "")
        }
        makeDiscreteParam(id, values = v)
      },
      logical = makeLogicalParam(id),
      .eq_space_fail("In the search space file '", file, "', parameter '", id, "' has type '",
                     type, "'; use numeric, integer, discrete or logical.")),
      eq_space_error = function(e) stop(e),
      error = function(e) .eq_space_fail("In the search space file '", file, "', parameter '", id,
                                         "' is not valid: ", conditionMessage(e), "."))
  })
  ps <- do.call(makeParamSet, pars)
  eq_space_check(ps, file)
  ps
}

eq_space_check <- function(ps, file = "<space>") {
  if (!inherits(ps, "ParamSet"))
    .eq_space_fail("In the search space file '", file, "', `param.set` is a ",
                   paste(class(ps), collapse = "/"), ", not a ParamHelpers ParamSet. ", .eq_space_example)
  if (length(ps$pars) == 0L)
    .eq_space_fail("In the search space file '", file, "', `param.set` is empty: makeParamSet() was ",
                   "called with no parameters, so there is nothing to search. Add at least one ",
                   "parameter, e.g. `makeNumericParam(\"lr\", lower = 0.0001, upper = 0.1)`.")
  ok.types <- c("numeric", "integer", "discrete", "logical")
  for (p in ps$pars) {
    if (!(p$type %in% ok.types))
      .eq_space_fail("In the search space file '", file, "', parameter '", p$id, "' has type '", p$type,
                     "', which is not supported (supported: numeric, integer, discrete, logical). ",
                     if (grepl("vector$", p$type))
                       paste0("Replace the vector parameter by one scalar parameter per element (e.g. '",
                              p$id, "1', '", p$id, "2') or by a discrete parameter whose values ",
                              "the pilot splits.") else
                       "Use one of the supported types.")
    if (p$type %in% c("numeric", "integer")) {
      if (!is.finite(p$lower) || !is.finite(p$upper))
        .eq_space_fail("In the search space file '", file, "', ", p$type, " parameter '", p$id,
                       "' has an infinite bound (lower = ", p$lower, ", upper = ", p$upper,
                       "). Give finite `lower` and `upper`; use a trafo such as ",
                       "`trafo = function(x) 10^x` for wide ranges.")
      if (p$lower > p$upper)
        .eq_space_fail("In the search space file '", file, "', parameter '", p$id, "' has lower (",
                       p$lower, ") > upper (", p$upper, "). Swap the bounds.")
    }
    if (p$type == "discrete") {
      if (length(p$values) == 0L)
        .eq_space_fail("In the search space file '", file, "', discrete parameter '", p$id,
                       "' has no values. Give at least one, e.g. `values = c(\"relu\", \"tanh\")`.")
      bad <- !vapply(p$values, function(v) is.atomic(v) && length(v) == 1L && !is.na(v), logical(1))
      if (any(bad))
        .eq_space_fail("In the search space file '", file, "', discrete parameter '", p$id,
                       "' has values that are not single strings, numbers or logicals (",
                       paste(names(p$values)[bad], collapse = ", "), "). Only scalar values can be ",
                       "sent to a pilot as JSON; encode others as strings the pilot decodes.")
    }
  }
  invisible(TRUE)
}

# Discrete values as JSON values "as written": strings stay strings, numbers stay numbers.
.eq_scalar <- function(v) if (is.factor(v)) as.character(v) else v

eq_space_list <- function(par.set, source = NULL) {
  params <- lapply(par.set$pars, function(p) {
    out <- list(id = p$id, type = p$type)
    if (p$type %in% c("numeric", "integer")) {
      out$lower <- if (p$type == "integer") as.integer(p$lower) else p$lower
      out$upper <- if (p$type == "integer") as.integer(p$upper) else p$upper
      out$trafo <- !is.null(p$trafo)
    } else if (p$type == "discrete") {
      out$values <- unname(lapply(p$values, .eq_scalar))
    }
    out$requires <- !is.null(p$requires)
    if (isTRUE(p$has.default)) out$default <- p$default
    out
  })
  list(source = source, params = unname(params))
}

eq_space_json <- function(par.set, source = NULL) {
  lst <- eq_space_list(par.set, source)
  if (is.null(source)) lst$source <- NULL
  as.character(jsonlite::toJSON(lst, auto_unbox = TRUE, digits = NA, null = "null"))
}

# Look up a discrete parameter's value from a label (name) or a value; returns the value.
.eq_discrete_value <- function(p, v) {
  if (is.factor(v)) v <- as.character(v)
  if (is.list(v) && length(v) == 1L) v <- v[[1]]
  nm <- names(p$values)
  if (is.character(v) && v %in% nm) return(p$values[[match(v, nm)]])
  for (k in seq_along(p$values)) {
    pv <- p$values[[k]]
    if (identical(class(pv), class(v)) && isTRUE(all.equal(pv, v))) return(pv)
    if (is.numeric(pv) && is.numeric(v) && isTRUE(all.equal(as.numeric(pv), as.numeric(v)))) return(pv)
    if (is.logical(pv) && is.character(v) && toupper(v) == as.character(pv)) return(pv)
  }
  .eq_space_fail("Value '", paste(format(v), collapse = " "), "' is not one of the values of discrete ",
                 "parameter '", p$id, "' (", paste(nm, collapse = ", "), ").")
}

# Transform ONE point (named list, untransformed values) into what the pilot receives.
# Integer parameters stay integer (also after a trafo whose result is whole, e.g. 2L^x),
# discrete parameters give their value (numbers as numbers), logicals give TRUE/FALSE.
# Parameters absent from x or NA (inactive under `requires`) are left out.
eq_space_transform <- function(par.set, x) {
  out <- list()
  for (p in par.set$pars) {
    v <- x[[p$id]]
    if (is.null(v) || (length(v) == 1L && !is.list(v) && is.na(v))) next
    if (p$type %in% c("numeric", "integer")) {
      v <- as.numeric(v)
      if (p$type == "integer") v <- as.integer(round(v))
      if (!is.null(p$trafo)) v <- p$trafo(v)
      if (p$type == "integer" && is.numeric(v) && all(is.finite(v)) && all(v == round(v)) &&
          all(abs(v) <= .Machine$integer.max))
        v <- as.integer(v)
    } else if (p$type == "discrete") {
      v <- .eq_discrete_value(p, v)
    } else if (p$type == "logical") {
      if (is.character(v) || is.factor(v)) v <- as.logical(toupper(as.character(v)))
      v <- as.logical(v)
    }
    out[[p$id]] <- v
  }
  out
}

# A JSON array of untransformed points (or one point) -> the JSON array of transformed ones.
.eq_space_transform_json <- function(ps, text) {
  pts <- tryCatch(jsonlite::fromJSON(text, simplifyVector = FALSE),
                  error = function(e) .eq_space_fail("The points to transform are not valid JSON (",
                                                     conditionMessage(e), "). Pass a JSON array of objects."))
  if (is.list(pts) && !is.null(names(pts))) pts <- list(pts)
  out <- lapply(pts, function(x) eq_space_transform(ps, x))
  as.character(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
}

# One request per line of stdin, one answer per line of stdout, until stdin closes (its parent
# ended). A bad request gets {"error": ...} and the loop goes on.
.eq_space_serve <- function(ps) {
  con <- file("stdin", open = "r")
  on.exit(close(con))
  repeat {
    line <- readLines(con, n = 1L, warn = FALSE)
    if (length(line) == 0L) break
    if (!nzchar(trimws(line))) next
    # what a trafo prints goes to stderr: stdout carries only the answers
    said <- utils::capture.output(
      answer <- tryCatch(paste0("{\"points\":", .eq_space_transform_json(ps, line), "}"),
                         error = function(e) as.character(jsonlite::toJSON(
                           list(error = conditionMessage(e)), auto_unbox = TRUE))))
    if (length(said)) cat(said, sep = "\n", file = stderr())
    cat(answer, "\n", sep = "")
    flush(stdout())
  }
}

.eq_space_cli <- function(args) {
  usage <- paste("usage: Rscript eq/R/space.R export FILE | Rscript eq/R/space.R transform FILE",
                 "'[{...untransformed point...}, ...]' | Rscript eq/R/space.R serve FILE")
  res <- tryCatch({
    if (length(args) < 2L || !(args[1] %in% c("export", "transform", "serve")))
      .eq_space_fail(usage)
    file <- args[2]
    ps <- eq_space_load(file)
    if (args[1] == "export") {
      cat(eq_space_json(ps, normalizePath(file)), "\n", sep = "")
    } else if (args[1] == "serve") {
      .eq_space_serve(ps)
    } else {
      if (length(args) < 3L) .eq_space_fail(usage)
      cat(.eq_space_transform_json(ps, args[3]), "\n", sep = "")
    }
    0L
  }, error = function(e) {
    cat(conditionMessage(e), "\n", sep = "", file = stderr())
    1L
  })
  res
}

if (sys.nframe() == 0L && !interactive()) {
  .eq_args <- commandArgs(trailingOnly = TRUE)
  if (length(.eq_args) > 0L) quit(status = .eq_space_cli(.eq_args), save = "no")
}
