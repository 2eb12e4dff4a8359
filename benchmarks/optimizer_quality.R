# One run for benchmarks/optimizer_quality.py: an unmodified R optimizer against the simulated
# farm of eq/R/sim.R. Prints one line "RESULT {json}" with every objective in order, the wall
# time and the number of distinct points.
#   Rscript benchmarks/optimizer_quality.R REPO ALGO SPACE SEED "EXTRA SETTINGS" BUDGET BATCH
args <- commandArgs(trailingOnly = TRUE)
home <- args[1]; algo <- args[2]; space <- args[3]; seed <- as.integer(args[4]); extra <- args[5]
budget <- as.integer(args[6]); batch <- as.integer(args[7])
EQ_HOME <- home
source(file.path(home, "eq", "R", "sim.R"))
mode <- if (algo == "mbo_stream") "stream" else "batch"
settings <- sprintf("max.budget = %dL, propose.points = %dL, workers = %dL, seed = %d, mode = '%s', verbose = FALSE, param.set.file = '%s'",
                    budget, batch, batch, seed, mode, file.path(home, space))
if (nzchar(extra) && algo != "random") settings <- paste0(settings, ", ", extra)
file <- if (algo == "random") "random" else "mlrMBO"
t0 <- proc.time()[["elapsed"]]
h <- suppressMessages(fake_eq_run(file, settings, workers = batch, seed = seed + 1000L))
tr <- fake_eq_trials(h)
cat("RESULT", jsonlite::toJSON(list(objective = tr$objective, seconds = proc.time()[["elapsed"]] - t0,
    distinct = nrow(unique(do.call(rbind, lapply(tr$params, function(p) as.data.frame(p, optional = TRUE)))))),
    digits = NA, na = "null", auto_unbox = TRUE), "\n")
