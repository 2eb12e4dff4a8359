# The R side of benchmarks/proposal_cost.py: mlrMBO's proposal time in a 10-D mixed space.
#   Rscript benchmarks/proposal_cost.R REPO "EXTRA SETTINGS" REPS "N,N,..." "Q,Q,..."
args <- commandArgs(trailingOnly = TRUE)
home <- args[1]; extra <- args[2]; reps <- as.integer(args[3])
ns <- as.integer(strsplit(if (length(args) >= 4L) args[4] else "100,1000", ",")[[1]])
qs <- as.integer(strsplit(if (length(args) >= 5L) args[5] else "1,8,64", ",")[[1]])
EQ_HOME <- home
# The split (fit/predict/search/select) is timed inside mbo_propose with proc.time()'s elapsed
# time; on a shared machine that mostly measures the other processes, so here it reads CPU time
# (user + system) instead: the optimizer's functions, defined in this global environment, find
# this proc.time first. system.time() (the cpu_s column, wall_s) uses base's own.
proc.time <- function() {
  t <- base::proc.time()
  t[["elapsed"]] <- t[["user.self"]] + t[["sys.self"]]
  t
}
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
cat(sprintf("%6s %4s %8s %8s %9s %8s %8s %8s %8s %7s %6s\n", "n", "q", "wall_s", "cpu_s", "cpu_ms_pt",
            "fit", "predict", "search", "select", "fitted", "nloc"))
for (n in ns) {
  S <- mbo_new_state(ctl, ps)
  X <- mbo_sample(S$info, mbo_full_box(S$info), n)
  mbo_add(S, X)
  S$y <- f(X); S$status[] <- "completed"
  for (q in qs) for (r in seq_len(reps)) {
    tim <- new.env()
    t <- system.time(P <- mbo_propose(S, q, tim))
    L <- tim$last
    stopifnot(nrow(P) == q, nrow(unique(mbo_norm(S$info, P))) == q)
    cat(sprintf("%6d %4d %8.2f %8.2f %9.1f %8.2f %8.2f %8.2f %8.2f %7s %6d\n", n, q, t[["elapsed"]],
                t[["user.self"]] + t[["sys.self"]], 1000 * (t[["user.self"]] + t[["sys.self"]]) / q, L$fit, L$predict, L$search,
                L$select, if (is.null(L$fitted)) "all" else as.character(L$fitted), L$nloc))
  }
}
cat(sprintf("settings: num.trees = %d, se.method = %s, splitrule = %s, fs.points = %d, fs.maxit = %d, fs.restarts = %d, fs.budget = %g, threads = %d\n",
            ctl$num.trees, ctl$se.method, ctl$splitrule, ctl$fs.points, ctl$fs.maxit, ctl$fs.restarts, ctl$fs.budget, ctl$threads))
