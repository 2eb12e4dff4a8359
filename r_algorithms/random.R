# Random search over a ParamHelpers space, written to the plain EMEWS EQ/R convention
# (OUT_put/IN_get): settings handshake (through eq_settings(), the one settings parser),
# ';'-joined JSON batches, DONE + final message.
#
# Settings: max.budget (evaluations), propose.points (batch size; default: the number of
# workers), seed, param.set.file (the SPACE file).
suppressPackageStartupMessages(library(ParamHelpers))

settings <- eq_settings()   # OUT_put("Params"), then the settings from IN_get()
par.set <- eq_space_load(settings$param.set.file)
budget <- as.integer(settings$max.budget)
q <- as.integer(if (is.null(settings$propose.points)) settings$workers else settings$propose.points)
if (!is.null(settings$seed) && !is.na(settings$seed)) set.seed(settings$seed)

best.y <- Inf
best.x <- NULL
evaluated <- 0L
while (evaluated < budget) {
  n <- min(q, budget - evaluated)
  xs <- sampleValues(par.set, n, discrete.names = FALSE, trafo = TRUE)
  OUT_put(eq_points_json(xs, sep = ";"))   # the plain EMEWS batch: ";"-joined JSON objects
  ys <- suppressWarnings(as.numeric(strsplit(IN_get(), ";", fixed = TRUE)[[1]]))
  i <- which.min(ys)
  if (length(i) && ys[i] < best.y) {
    best.y <- ys[i]
    best.x <- xs[[i]]
  }
  evaluated <- evaluated + n
}
OUT_put("DONE")
OUT_put(paste0('{"algorithm":"random","evaluations":', evaluated,
               ',"best.y":', if (is.finite(best.y)) format(best.y, digits = 15) else "null",
               ',"best.x":', if (is.null(best.x)) "null" else eq_point_json(best.x), "}"))
