# The R side of benchmarks/proposal_cost.py: mlrMBO's proposal time in a 10-D mixed space.
#   Rscript benchmarks/proposal_cost.R REPO "EXTRA SETTINGS" REPS
args <- commandArgs(trailingOnly = TRUE)
home <- args[1]; extra <- args[2]; reps <- as.integer(args[3])
EQ_HOME <- home
options(mlrMBO.source.only = TRUE)
source(file.path(home, "eq", "R", "EQ.R")); source(file.path(home, "eq", "R", "space.R"))
source(file.path(home, "r_algorithms", "mlrMBO.R"))
space <- tempfile(fileext = ".R")
writeLines('param.set <- makeParamSet(
  makeNumericParam("a", 0, 1), makeNumericParam("b", 0, 1), makeNumericParam("c", -5, 5),
  makeNumericParam("d", 0, 1), makeNumericParam("lr", -5, -1, trafo = function(x) 10^x),
  makeIntegerParam("i1", 1, 20), makeIntegerParam("bs", 5, 10, trafo = function(x) 2L^x),
  makeDiscreteParam("f1", values = c("relu", "tanh", "elu", "selu")),
  makeDiscreteParam("f2", values = c(16, 32, 64)), makeLogicalParam("l"))', space)
s <- eval(parse(text = paste0("list(param.set.file = space, mode = 'batch', verbose = FALSE",
                              if (nzchar(extra)) paste0(", ", extra) else "", ")")))
s <- s[!duplicated(names(s), fromLast = TRUE)]
ctl <- mbo_settings(s)
ps <- eq_space_load(space)
f <- function(X) (X$a - .3)^2 + sin(3 * X$b) + X$c * X$d / 5 + 0.01 * (X$i1 - 7)^2 + (X$lr + 3)^2 / 4 +
  match(X$f1, c("relu", "tanh", "elu", "selu")) * 0.2 + (X$l == "TRUE") * 0.1 + 0.02 * X$bs
set.seed(1)
cat(sprintf("%6s %4s %8s %8s %8s %8s %8s %8s %8s %6s\n", "n", "q", "wall_s", "cpu_s", "fit", "predict",
            "search", "select", "preds", "nloc"))
for (n in c(100L, 1000L)) {
  S <- mbo_new_state(ctl, ps)
  X <- mbo_sample(S$info, mbo_full_box(S$info), n)
  mbo_add(S, X)
  S$y <- f(X); S$status[] <- "completed"
  for (q in c(1L, 8L, 64L)) for (r in seq_len(reps)) {
    tim <- new.env()
    t <- system.time(P <- mbo_propose(S, q, tim))
    L <- tim$last
    stopifnot(nrow(P) == q, nrow(unique(mbo_norm(S$info, P))) == q)
    preds <- ctl$fs.restarts * ctl$fs.points + ctl$local.points + q * ctl$fs.restarts * (ctl$fs.maxit - 1) * L$nloc
    cat(sprintf("%6d %4d %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8d %6d\n", n, q, t[["elapsed"]],
                t[["user.self"]] + t[["sys.self"]], L$fit, L$predict, L$search, L$select, as.integer(preds), L$nloc))
  }
}
cat(sprintf("settings: num.trees = %d, se.method = %s, splitrule = %s, fs.points = %d, fs.maxit = %d, fs.restarts = %d, fs.budget = %g, threads = %d\n",
            ctl$num.trees, ctl$se.method, ctl$splitrule, ctl$fs.points, ctl$fs.maxit, ctl$fs.restarts, ctl$fs.budget, ctl$threads))
