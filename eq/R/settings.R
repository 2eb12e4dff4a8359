# eq/R/settings.R -- user SETTINGS as R argument text (CANDLE style: "design.size = 20,
# mode = 'batch'") to JSON, evaluated by R as EMEWS does (never by Python).
#
#   Rscript --vanilla eq/R/settings.R 'design.size = 20, mode = "batch"'
#     prints one JSON object; exit 1 with one paragraph on stderr if the text is not valid R
#
# Length-1 values become JSON scalars, longer vectors arrays, NA null; integers stay integers.
# The text is evaluated in an environment whose parent is the base environment, so it sees base
# R (c(), 10^-3, seq()) but nothing of the caller.

eq_settings_json <- function(text) {
  x <- eval(parse(text = paste0("list(", text, ")")), envir = new.env(parent = baseenv()))
  nm <- names(x)
  if (length(x) && (is.null(nm) || any(!nzchar(nm))))
    stop("every setting needs a name (name = value)", call. = FALSE)
  as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null"))
}

if (sys.nframe() == 0L && !interactive()) {
  args <- commandArgs(trailingOnly = TRUE)
  status <- tryCatch({
    cat(eq_settings_json(if (length(args)) args[1] else ""), "\n", sep = "")
    0L
  }, error = function(e) {
    cat(gsub("[[:space:]]*\n[[:space:]]*", " ", conditionMessage(e)), "\n", sep = "", file = stderr())
    1L
  })
  quit(status = status, save = "no")
}
