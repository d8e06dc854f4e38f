# Error against time of RcppML's nmf (alternating least squares with exact
# NNLS), for `cargo xtask bench --time-to-error`.
#
#   Rscript benches/rcppml_trace.R DIR K MAXITS
#
# DIR holds the matrix as `benches/peers_trace.py export` writes it; RcppML
# factorizes Xᵀ (genes × cells, its orientation). RcppML has no per-iteration
# callback, so every point is its own run from the same seed with maxit = N
# (MAXITS, comma-separated): the seconds are that whole call's, the error is
# ‖A − W diag(d) H‖_F / ‖A‖_F of its result (computed outside the timing).
# The first call is made once untimed. The seconds that reading the matrix
# took are given apart (`load_seconds`). Prints one JSON object.
suppressPackageStartupMessages({
  library(Matrix)
  library(RcppML)
})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
k <- as.integer(args[2])
maxits <- as.integer(strsplit(args[3], ",")[[1]])
shape <- scan(file.path(dir, "shape.txt"), quiet = TRUE)
n_cells <- shape[1]
n_genes <- shape[2]
read_bin <- function(name, what, size, n) {
  con <- file(file.path(dir, name), "rb")
  on.exit(close(con))
  readBin(con, what = what, size = size, n = n)
}
load_began <- proc.time()[["elapsed"]]
if (file.exists(file.path(dir, "dense.f64"))) {
  a <- matrix(read_bin("dense.f64", "double", 8, n_cells * n_genes), nrow = n_genes, ncol = n_cells)
} else {
  p <- read_bin("indptr.i32", "integer", 4, n_cells + 1)
  nnz <- p[length(p)]
  a <- new("dgCMatrix", i = read_bin("indices.i32", "integer", 4, nnz), p = p,
           x = read_bin("data.f64", "double", 8, nnz), Dim = c(as.integer(n_genes), as.integer(n_cells)))
}
load_seconds <- proc.time()[["elapsed"]] - load_began
a_sq <- sum(if (is(a, "sparseMatrix")) a@x^2 else a^2)
rel_error <- function(model) {
  w <- model$w %*% diag(model$d, nrow = length(model$d))
  h <- model$h
  cross <- sum(as.matrix(a %*% t(h)) * w)
  fit <- sum(crossprod(w) * tcrossprod(h))
  sqrt(max(a_sq - 2 * cross + fit, 0) / a_sq)
}
# One untimed call first: RcppML's first call pays for starting its threads.
invisible(RcppML::nmf(a, k, tol = 1e-12, maxit = 1, verbose = FALSE, seed = 0))
seconds <- numeric(0)
errors <- numeric(0)
for (maxit in maxits) {
  began <- proc.time()[["elapsed"]]
  model <- RcppML::nmf(a, k, tol = 1e-12, maxit = maxit, verbose = FALSE, seed = 0)
  seconds <- c(seconds, proc.time()[["elapsed"]] - began)
  errors <- c(errors, rel_error(model))
}
peak <- as.numeric(sub("VmHWM:\\s+(\\d+) kB", "\\1",
                       grep("VmHWM", readLines("/proc/self/status"), value = TRUE))) * 1024
cat(sprintf('{"solver": "rcppml", "iterations": [%s], "seconds": [%s], "load_seconds": %.6f, "rel_error": [%s], "peak_rss_bytes": %.0f, "version": "%s"}\n',
            paste(maxits, collapse = ", "), paste(sprintf("%.6f", seconds), collapse = ", "), load_seconds,
            paste(sprintf("%.9f", errors), collapse = ", "), peak, as.character(packageVersion("RcppML"))))
