# The R side of benchmarks/farm_model.py --measure-cpu: mlrMBO's proposal CPU time in the space of
# benchmarks/utilization.py's runs (the bench pilot's Branin, x1 and x2 searched: the Gaussian
# process below gp.max.n fitted points, the forest above), for the pooled cost model of the farm
# simulator. proposal_cost.R measures the 10-D mixed space instead (the forest at every n).
#   Rscript benchmarks/farm_model.R REPO SPACE.R MODE "N,N,..." "Q,Q,..." PENDING
# prints "n q cpu_s" rows; PENDING trials are marked pending (stream mode keeps proposals
# distinct from them).
args <- commandArgs(trailingOnly = TRUE)
home <- args[1]; space <- args[2]; mode <- args[3]
ns <- as.integer(strsplit(args[4], ",")[[1]]); qs <- as.integer(strsplit(args[5], ",")[[1]])
npend <- as.integer(args[6])
EQ_HOME <- home
options(mlrMBO.source.only = TRUE)
source(file.path(home, "eq", "R", "EQ.R")); source(file.path(home, "eq", "R", "space.R"))
source(file.path(home, "r_algorithms", "mlrMBO.R"))
ctl <- mbo_settings(list(param.set.file = space, mode = mode, verbose = FALSE))
ps <- eq_space_load(space)
branin <- function(x1, x2) (x2 - 5.1 / (4 * pi^2) * x1^2 + 5 / pi * x1 - 6)^2 + 10 * (1 - 1 / (8 * pi)) * cos(x1) + 10
set.seed(1)
cat(sprintf("%6s %4s %8s\n", "n", "q", "cpu_s"))
for (n in ns) {
  S <- mbo_new_state(ctl, ps)
  X <- mbo_sample(S$info, mbo_full_box(S$info), n + npend)
  mbo_add(S, X)
  S$y <- branin(X$x1, X$x2)
  S$status[] <- "completed"
  if (npend > 0L) { S$status[n + seq_len(npend)] <- "pending"; S$y[n + seq_len(npend)] <- NA }
  for (q in qs) {
    t <- system.time(P <- mbo_propose(S, q))
    stopifnot(nrow(P) == q)
    cat(sprintf("%6d %4d %8.3f\n", n, q, t[["user.self"]] + t[["sys.self"]]))
  }
}
