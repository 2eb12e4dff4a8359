# pilots/drug/export_expression.R -- export a Bioconductor ExpressionSet in CANDLE NT3's layout.
#   Rscript export_expression.R DATA_SET OUT_CSV PROBES_TXT SAMPLES_TXT
# DATA_SET is bladderbatch (cancer vs not cancer) or all (T-cell vs B-cell ALL); see data.py.
args <- commandArgs(TRUE)
if (length(args) != 4L) stop("usage: Rscript export_expression.R DATA_SET OUT_CSV PROBES_TXT SAMPLES_TXT")
suppressMessages(library(Biobase))
switch(args[1],
  bladderbatch = {
    suppressMessages(library(bladderbatch))
    data(bladderdata)
    e <- bladderEset
    y <- as.integer(pData(e)$cancer == "Cancer")
  },
  all = {
    suppressMessages(library(ALL))
    data(ALL)
    e <- ALL
    y <- as.integer(substr(as.character(ALL$BT), 1, 1) == "T")
  },
  stop("unknown data set '", args[1], "'; known: bladderbatch, all"))
x <- t(exprs(e))
stopifnot(nrow(x) == length(y), !anyNA(y))
write.table(cbind(y, x), file = args[2], sep = ",", row.names = FALSE, col.names = FALSE)
writeLines(colnames(x), args[3])
writeLines(rownames(x), args[4])
