//! Bad input by the table: every case runs the real binary in a folder of
//! its own and asserts the exit code, a message naming what is at fault,
//! no panic, no output or temporary file left behind, and every file that
//! was there before unchanged (byte for byte).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::util::*;

/// A case: its fixtures are made in `dir`; it returns the arguments.
struct Case {
    name: &'static str,
    setup: fn(&Path) -> Vec<String>,
    code: i32,
    needles: &'static [&'static str],
    /// Files the case may leave (a successful run's outputs).
    outputs: &'static [&'static str],
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// `fit INPUT -k K -o DIR/out.h5 -q --max-iter 5` plus `extra`.
fn fit(dir: &Path, input: &Path, k: &str, extra: &[&str]) -> Vec<String> {
    let mut v = args(&[
        "fit",
        &s(input),
        "-k",
        k,
        "-o",
        &s(&dir.join("out.h5")),
        "-q",
    ]);
    v.extend(args(&["--max-iter", "5"]));
    v.extend(args(extra));
    v
}

fn dense(dir: &Path, name: &str, edit: impl Fn(&mut Array2<f32>)) -> PathBuf {
    let mut x = seed_matrix(40, 9, 2);
    edit(&mut x);
    let path = dir.join(name);
    if name.ends_with(".npy") {
        write_npy(&path, &x);
    } else {
        write_h5(&path, "X", &x);
    }
    path
}

/// An h5ad with CSR X from raw arrays, names of the given lengths.
fn csr_h5ad(
    dir: &Path,
    shape: [i64; 2],
    data: &[f32],
    indices: &[i64],
    indptr: &[i64],
    n_var_names: usize,
) -> PathBuf {
    let path = dir.join("cells.h5ad");
    sparse_h5ad(
        &path,
        "X",
        "csr_matrix",
        Some(&shape),
        data,
        indices,
        indptr,
    );
    let obs: Vec<String> = (0..shape[0]).map(|i| format!("c{i}")).collect();
    let var: Vec<String> = (0..n_var_names).map(|i| format!("g{i}")).collect();
    let file = hdf5::File::append(&path).expect("open");
    for (frame, names) in [("obs", obs), ("var", var)] {
        let names: Vec<hdf5::types::VarLenUnicode> =
            names.iter().map(|n| n.parse().expect("str")).collect();
        file.group(frame)
            .expect("frame")
            .new_dataset_builder()
            .with_data(&names)
            .create("_index")
            .expect("index");
    }
    path
}

/// A valid CSR h5ad of the counts of 30 cells × 8 genes.
fn good_h5ad(dir: &Path) -> PathBuf {
    let x = seed_matrix(30, 8, 2).mapv(|v| (v * 4.0).round());
    let (data, indices, indptr) = compressed(&x, false);
    csr_h5ad(dir, [30, 8], &data, &indices, &indptr, 8)
}

/// A minimal Cell Ranger 3 file, 12 genes × 20 barcodes.
fn tenx(dir: &Path, shape: [i64; 2], names: Option<&[&[u8]]>) -> PathBuf {
    let x = seed_matrix(20, 12, 2).mapv(|v| (v * 4.0).round());
    let (data, indices, indptr) = compressed(&x, false); // CSR cells × genes = CSC genes × cells
    let path = dir.join("filtered_feature_bc_matrix.h5");
    let file = hdf5::File::create(&path).expect("create");
    let g = file.create_group("matrix").expect("matrix");
    g.new_dataset_builder()
        .with_data(&data)
        .create("data")
        .expect("data");
    g.new_dataset_builder()
        .with_data(&indices)
        .create("indices")
        .expect("indices");
    g.new_dataset_builder()
        .with_data(&indptr)
        .create("indptr")
        .expect("indptr");
    g.new_dataset_builder()
        .with_data(&shape)
        .create("shape")
        .expect("shape");
    let barcodes: Vec<hdf5::types::VarLenUnicode> = (0..20)
        .map(|i| format!("BC{i}").parse().expect("str"))
        .collect();
    g.new_dataset_builder()
        .with_data(&barcodes)
        .create("barcodes")
        .expect("barcodes");
    let f = g.create_group("features").expect("features");
    let text = |prefix: &str| -> Vec<hdf5::types::VarLenUnicode> {
        (0..12)
            .map(|i| format!("{prefix}{i}").parse().expect("str"))
            .collect()
    };
    f.new_dataset_builder()
        .with_data(&text("ENSG"))
        .create("id")
        .expect("id");
    let types: Vec<hdf5::types::VarLenUnicode> = (0..12)
        .map(|_| "Gene Expression".parse().expect("str"))
        .collect();
    f.new_dataset_builder()
        .with_data(&types)
        .create("feature_type")
        .expect("types");
    drop(file);
    match names {
        Some(raw) => write_raw_vlen_strings(&path, "matrix/features/name", raw),
        None => {
            let file = hdf5::File::append(&path).expect("open");
            file.group("matrix/features")
                .expect("features")
                .new_dataset_builder()
                .with_data(&text("G"))
                .create("name")
                .expect("name");
        }
    }
    path
}

/// A loom file (genes × cells) whose Gene attribute has `n_genes` entries.
fn loom(dir: &Path, n_genes: usize, negative: bool) -> PathBuf {
    let mut x = seed_matrix(10, 25, 2); // genes × cells
    if negative {
        x[(3, 4)] = -1.0;
    }
    let path = dir.join("cells.loom");
    write_h5(&path, "matrix", &x);
    let file = hdf5::File::append(&path).expect("open");
    file.create_group("row_attrs").expect("row_attrs");
    file.create_group("col_attrs").expect("col_attrs");
    file.create_group("layers").expect("layers");
    drop(file);
    let genes: Vec<hdf5::types::VarLenUnicode> = (0..n_genes)
        .map(|i| format!("G{i}").parse().expect("str"))
        .collect();
    let cells: Vec<hdf5::types::VarLenUnicode> = (0..25)
        .map(|i| format!("C{i}").parse().expect("str"))
        .collect();
    let file = hdf5::File::append(&path).expect("open");
    file.new_dataset_builder()
        .with_data(&genes)
        .create("row_attrs/Gene")
        .expect("genes");
    file.new_dataset_builder()
        .with_data(&cells)
        .create("col_attrs/CellID")
        .expect("cells");
    path
}

/// A plain result of a small fit, made by nmflow itself.
fn result(dir: &Path) -> PathBuf {
    let data = dense(dir, "data.h5", |_| {});
    let out = dir.join("result.h5");
    let run = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "-q",
        "--max-iter",
        "5",
        "-o",
        path_str(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    out
}

fn sweep(dir: &Path, input: &Path, ks: &str, extra: &[&str]) -> Vec<String> {
    let mut v = args(&[
        "sweep",
        &s(input),
        "-k",
        ks,
        "--restarts",
        "2",
        "--max-iter",
        "5",
        "-q",
    ]);
    v.extend(args(&["-o", &s(&dir.join("sweep"))]));
    v.extend(args(extra));
    v
}

fn cases() -> Vec<Case> {
    vec![
        // Dense values and files.
        Case {
            name: "negative value in HDF5",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x[(17, 4)] = -3.0);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.h5", "negative value -3", "row 17, column 4"],
            outputs: &[],
        },
        Case {
            name: "NaN in npy",
            setup: |d| {
                let p = dense(d, "x.npy", |x| x[(2, 8)] = f32::NAN);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.npy", "non-finite value NaN", "row 2, column 8"],
            outputs: &[],
        },
        Case {
            name: "infinity in HDF5",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x[(39, 0)] = f32::INFINITY);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["row 39, column 0", "inf"],
            outputs: &[],
        },
        Case {
            name: "all zero",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x.fill(0.0));
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.h5", "every entry of the matrix is zero"],
            outputs: &[],
        },
        Case {
            name: "values near f32's largest",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x.mapv_inplace(|v| v * 1e37));
                fit(d, &p, "2", &["--scale", "none"])
            },
            code: 1,
            needles: &["x.h5", "column", "divide the data"],
            outputs: &[],
        },
        Case {
            name: "one value of 3e38",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x[(5, 5)] = 3e38);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["column 5", "3e38"],
            outputs: &[],
        },
        Case {
            name: "all subnormal",
            setup: |d| {
                let p = dense(d, "x.h5", |x| x.mapv_inplace(|v| v * 1e-43));
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.h5", "too small", "multiply the data"],
            outputs: &[],
        },
        Case {
            name: "truncated HDF5",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let n = std::fs::metadata(&p).expect("m").len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_len(n / 2))
                    .expect("cut");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.h5"],
            outputs: &[],
        },
        Case {
            name: "truncated npy",
            setup: |d| {
                let p = dense(d, "x.npy", |_| {});
                let n = std::fs::metadata(&p).expect("m").len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_len(n - 7))
                    .expect("cut");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.npy", "truncated"],
            outputs: &[],
        },
        Case {
            name: "random bytes",
            setup: |d| {
                let p = d.join("x.h5");
                std::fs::write(
                    &p,
                    (0..5000u32)
                        .map(|i| (i * 7919 % 251) as u8)
                        .collect::<Vec<_>>(),
                )
                .expect("w");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.h5", "not an HDF5 file or a .npy file"],
            outputs: &[],
        },
        Case {
            name: "empty file",
            setup: |d| {
                let p = d.join("x.npy");
                std::fs::write(&p, b"").expect("w");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["x.npy", "not an HDF5 file"],
            outputs: &[],
        },
        Case {
            name: "a directory as input",
            setup: |d| {
                let p = d.join("folder");
                std::fs::create_dir(&p).expect("mkdir");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["folder", "is a directory"],
            outputs: &[],
        },
        Case {
            name: "missing input",
            setup: |d| fit(d, &d.join("nope.h5"), "2", &[]),
            code: 1,
            needles: &["nope.h5", "no such file"],
            outputs: &[],
        },
        Case {
            name: "npy with a broken header",
            setup: |d| {
                let p = d.join("x.npy");
                let mut b =
                    b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (3, }   \n".to_vec();
                b.extend([0u8; 64]);
                std::fs::write(&p, b).expect("w");
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["x.npy"],
            outputs: &[],
        },
        Case {
            name: "npy of complex numbers",
            setup: |d| {
                let p = d.join("x.npy");
                let mut b = nmflow_io::npy::header_bytes("<c8", &[2, 2]);
                b.extend([0u8; 32]);
                std::fs::write(&p, b).expect("w");
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["x.npy", "<c8"],
            outputs: &[],
        },
        Case {
            name: "one-dimensional dataset",
            setup: |d| {
                let p = d.join("x.h5");
                write_h5_1d(&p, "X", &[1.0f32, 2.0, 3.0]);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["x.h5", "2-D"],
            outputs: &[],
        },
        Case {
            name: "a dataset path that does not exist",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, Path::new(&format!("{}:/nope", p.display())), "2", &[])
            },
            code: 1,
            needles: &["x.h5", "/nope", "/X"],
            outputs: &[],
        },
        // Sparse h5ad.
        Case {
            name: "CSR indptr decreasing",
            setup: |d| {
                let p = csr_h5ad(d, [3, 4], &[1.0, 2.0, 3.0], &[0, 1, 2], &[0, 2, 1, 3], 4);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "indptr"],
            outputs: &[],
        },
        Case {
            name: "CSR index beyond the columns",
            setup: |d| {
                let p = csr_h5ad(d, [3, 4], &[1.0, 2.0, 3.0], &[0, 9, 2], &[0, 1, 2, 3], 4);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "9"],
            outputs: &[],
        },
        Case {
            name: "CSR data and indices of different lengths",
            setup: |d| {
                let p = csr_h5ad(d, [3, 4], &[1.0, 2.0], &[0, 1, 2], &[0, 1, 2, 3], 4);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad"],
            outputs: &[],
        },
        Case {
            name: "CSR column stored twice in a row",
            setup: |d| {
                let p = csr_h5ad(
                    d,
                    [3, 4],
                    &[1.0, 2.0, 3.0, 1.0],
                    &[0, 2, 2, 1],
                    &[0, 1, 3, 4],
                    4,
                );
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "row 1 stores column 2 twice"],
            outputs: &[],
        },
        Case {
            name: "CSR negative value",
            setup: |d| {
                let p = csr_h5ad(d, [3, 4], &[1.0, -2.0, 3.0], &[0, 1, 2], &[0, 1, 2, 3], 4);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "negative value -2", "row 1, column 1"],
            outputs: &[],
        },
        Case {
            name: "CSR indptr shorter than the rows",
            setup: |d| {
                let p = csr_h5ad(d, [5, 4], &[1.0, 2.0, 3.0], &[0, 1, 2], &[0, 1, 2, 3], 4);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "indptr"],
            outputs: &[],
        },
        Case {
            name: "h5ad var names fewer than columns",
            setup: |d| {
                let x = seed_matrix(30, 8, 2);
                let (a, b, c) = compressed(&x, false);
                let p = csr_h5ad(d, [30, 8], &a, &b, &c, 6);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "var", "holds 6 names", "8 columns"],
            outputs: &[],
        },
        Case {
            name: "h5ad shape wider than its names",
            setup: |d| {
                let x = seed_matrix(30, 8, 2);
                let (a, b, c) = compressed(&x, false);
                let p = csr_h5ad(d, [30, 11], &a, &b, &c, 8);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "holds 8 names", "11 columns"],
            outputs: &[],
        },
        Case {
            name: "sparse group without a shape",
            setup: |d| {
                let p = d.join("cells.h5ad");
                sparse_h5ad(&p, "X", "csr_matrix", None, &[1.0f32], &[0i64], &[0, 1]);
                fit(d, &p, "1", &[])
            },
            code: 1,
            needles: &["cells.h5ad", "shape"],
            outputs: &[],
        },
        Case {
            name: "negative X beside counts",
            setup: |d| {
                let x = seed_matrix(30, 8, 2).mapv(|v| v - 0.5);
                let p = d.join("cells.h5ad");
                let (a, b, c) = compressed(&x, false);
                sparse_h5ad(&p, "X", "csr_matrix", Some(&[30, 8]), &a, &b, &c);
                let f = hdf5::File::append(&p).expect("open");
                f.create_group("layers").expect("layers");
                drop(f);
                let counts = seed_matrix(30, 8, 2).mapv(|v| (v * 4.0).round());
                let (a, b, c) = compressed(&counts, false);
                sparse_h5ad(
                    &p,
                    "layers/counts",
                    "csr_matrix",
                    Some(&[30, 8]),
                    &a,
                    &b,
                    &c,
                );
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &[
                "cells.h5ad",
                "X holds negative values",
                "layers/counts (--layer counts)",
            ],
            outputs: &[],
        },
        Case {
            name: "a layer that does not exist",
            setup: |d| {
                let p = good_h5ad(d);
                fit(d, &p, "2", &["--layer", "counts"])
            },
            code: 1,
            needles: &["cells.h5ad", "no layer 'counts'"],
            outputs: &[],
        },
        Case {
            name: "--raw without raw",
            setup: |d| {
                let p = good_h5ad(d);
                fit(d, &p, "2", &["--raw"])
            },
            code: 1,
            needles: &["cells.h5ad", "no raw/X"],
            outputs: &[],
        },
        Case {
            name: "obs names of invalid UTF-8",
            setup: |d| {
                let x = seed_matrix(3, 4, 1);
                let (a, b, c) = compressed(&x, false);
                let p = d.join("cells.h5ad");
                sparse_h5ad(&p, "X", "csr_matrix", Some(&[3, 4]), &a, &b, &c);
                write_raw_vlen_strings(&p, "obs/_index", &[b"c0", b"c\xff1", b"c2"]);
                let mut v = args(&[
                    "fit",
                    &s(&p),
                    "-k",
                    "1",
                    "-q",
                    "-o",
                    &s(&d.join("out.h5ad")),
                ]);
                v.extend(args(&["--max-iter", "3"]));
                v
            },
            code: 1,
            needles: &["cells.h5ad", "obs", "entry 1 is not valid UTF-8"],
            outputs: &[],
        },
        // 10x.
        Case {
            name: "10x shape disagreeing with the features",
            setup: |d| {
                let p = tenx(d, [15, 20], None);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &[
                "filtered_feature_bc_matrix.h5",
                "/matrix/shape",
                "says 15 features",
                "lists 12",
            ],
            outputs: &[],
        },
        Case {
            name: "10x gene names of invalid UTF-8",
            setup: |d| {
                let names: Vec<&[u8]> = vec![
                    b"A", b"B", b"C\xc3", b"D", b"E", b"F", b"G", b"H", b"I", b"J", b"K", b"L",
                ];
                let p = tenx(d, [12, 20], Some(&names));
                let mut v = fit(d, &p, "2", &[]);
                v[5] = s(&d.join("out.h5ad"));
                v
            },
            code: 1,
            needles: &[
                "filtered_feature_bc_matrix.h5",
                "features/name",
                "entry 2 is not valid UTF-8",
            ],
            outputs: &[],
        },
        Case {
            name: "10x without indptr",
            setup: |d| {
                let p = tenx(d, [12, 20], None);
                let f = hdf5::File::append(&p).expect("open");
                f.group("matrix")
                    .expect("g")
                    .unlink("indptr")
                    .expect("unlink");
                drop(f);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["filtered_feature_bc_matrix.h5", "indptr"],
            outputs: &[],
        },
        // Loom.
        Case {
            name: "loom gene attribute of the wrong length",
            setup: |d| {
                let p = loom(d, 9, false);
                fit(d, &p, "2", &["--transpose"])
            },
            code: 1,
            needles: &["cells.loom", "row_attrs/Gene", "holds 9 names", "10 rows"],
            outputs: &[],
        },
        Case {
            name: "loom negative value",
            setup: |d| {
                let p = loom(d, 10, true);
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["cells.loom", "negative value -1"],
            outputs: &[],
        },
        // Options.
        Case {
            name: "k of zero",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "0", &[])
            },
            code: 2,
            needles: &["k must be at least 1"],
            outputs: &[],
        },
        Case {
            name: "a range of k for fit",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2..8", &[])
            },
            code: 2,
            needles: &["2..8", "nmflow sweep"],
            outputs: &[],
        },
        Case {
            name: "k above the matrix",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "10", &[])
            },
            code: 1,
            needles: &["x.h5", "k = 10", "40 × 9"],
            outputs: &[],
        },
        Case {
            name: "the largest max-iter",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &[]);
                v.truncate(v.len() - 2);
                v.extend(args(&[
                    "--max-iter",
                    "18446744073709551615",
                    "--tol",
                    "0.01",
                ]));
                v
            },
            code: 0,
            needles: &[],
            outputs: &["out.h5"],
        },
        Case {
            name: "a max-iter of 10^12",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &[]);
                v.truncate(v.len() - 2);
                v.extend(args(&["--max-iter", "1000000000000", "--tol", "0.01"]));
                v
            },
            code: 0,
            needles: &[],
            outputs: &["out.h5"],
        },
        Case {
            name: "negative tol",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--tol=-1"])
            },
            code: 2,
            needles: &["--tol", "non-negative"],
            outputs: &[],
        },
        Case {
            name: "NaN tol",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--tol", "nan"])
            },
            code: 2,
            needles: &["--tol"],
            outputs: &[],
        },
        Case {
            name: "zero threads",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--threads", "0"])
            },
            code: 2,
            needles: &["--threads", "at least 1"],
            outputs: &[],
        },
        Case {
            name: "zero block rows",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--block-rows", "0"])
            },
            code: 2,
            needles: &["--block-rows"],
            outputs: &[],
        },
        Case {
            name: "zero restarts",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--restarts", "0"])
            },
            code: 2,
            needles: &["--restarts"],
            outputs: &[],
        },
        Case {
            name: "a memory size that is not one",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--memory", "lots"])
            },
            code: 2,
            needles: &["--memory", "lots"],
            outputs: &[],
        },
        Case {
            name: "a memory budget below the minimum",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--memory", "1MiB"])
            },
            code: 1,
            needles: &["x.h5", "1.0 MiB is too small", "give --memory"],
            outputs: &[],
        },
        Case {
            name: "an output named .npy",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &[]);
                v[5] = s(&d.join("out.npy"));
                v
            },
            code: 2,
            needles: &["out.npy", ".h5ad"],
            outputs: &[],
        },
        Case {
            name: "an output without extension",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &[]);
                v[5] = s(&d.join("out"));
                v
            },
            code: 2,
            needles: &["out", ".h5 or .hdf5"],
            outputs: &[],
        },
        Case {
            name: "the input as output, forced",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &["--force"]);
                v[5] = s(&p);
                v
            },
            code: 1,
            needles: &["x.h5", "is the input file"],
            outputs: &[],
        },
        Case {
            name: "a hard link of the input as output",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                std::fs::hard_link(&p, d.join("link.h5")).expect("link");
                let mut v = fit(d, &p, "2", &["--force"]);
                v[5] = s(&d.join("link.h5"));
                v
            },
            code: 1,
            needles: &["link.h5", "is the input file"],
            outputs: &[],
        },
        Case {
            name: "an output in a missing folder",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let mut v = fit(d, &p, "2", &[]);
                v[5] = s(&d.join("no/out.h5"));
                v
            },
            code: 1,
            needles: &["no"],
            outputs: &[],
        },
        Case {
            name: "an existing output without --force",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                std::fs::write(d.join("out.h5"), b"mine").expect("w");
                fit(d, &p, "2", &[])
            },
            code: 1,
            needles: &["out.h5", "exists", "--force"],
            outputs: &[],
        },
        Case {
            name: "--write-into another file",
            setup: |d| {
                let p = good_h5ad(d);
                std::fs::copy(&p, d.join("other.h5ad")).expect("copy");
                args(&[
                    "fit",
                    &s(&p),
                    "-k",
                    "2",
                    "-q",
                    "--write-into",
                    &s(&d.join("other.h5ad")),
                ])
            },
            code: 2,
            needles: &["--write-into must name the input file"],
            outputs: &[],
        },
        Case {
            name: "--write-into a read-only file",
            setup: |d| {
                let p = good_h5ad(d);
                let mut perm = std::fs::metadata(&p).expect("m").permissions();
                perm.set_readonly(true);
                std::fs::set_permissions(&p, perm).expect("chmod");
                args(&["fit", &s(&p), "-k", "2", "-q", "--write-into", &s(&p)])
            },
            code: 1,
            needles: &["cells.h5ad", "read-only", "-o result.h5ad"],
            outputs: &[],
        },
        Case {
            name: "--write-into a file of anndata < 0.7",
            setup: |d| {
                let p = good_h5ad(d);
                write_h5(&p, "obsm", &Array2::<f32>::zeros((30, 2)));
                args(&["fit", &s(&p), "-k", "2", "-q", "--write-into", &s(&p)])
            },
            code: 1,
            needles: &["cells.h5ad", "anndata < 0.7", "-o result.h5ad"],
            outputs: &[],
        },
        Case {
            name: "--write-into a plain HDF5 file",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                args(&["fit", &s(&p), "-k", "2", "-q", "--write-into", &s(&p)])
            },
            code: 2,
            needles: &["--write-into needs an h5ad input"],
            outputs: &[],
        },
        Case {
            name: "--init custom without starts",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--init", "custom"])
            },
            code: 2,
            needles: &["--w0 FILE and --h0 FILE"],
            outputs: &[],
        },
        Case {
            name: "--w0 without --init custom",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--w0", &s(&p)])
            },
            code: 2,
            needles: &["--init custom"],
            outputs: &[],
        },
        Case {
            name: "--w0 from a file without /W",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                write_h5(&d.join("start.h5"), "Z", &Array2::<f32>::ones((40, 2)));
                fit(
                    d,
                    &p,
                    "2",
                    &[
                        "--init",
                        "custom",
                        "--w0",
                        &s(&d.join("start.h5")),
                        "--h0",
                        &s(&d.join("start.h5")),
                    ],
                )
            },
            code: 1,
            needles: &["start.h5", "holds no /W nor /obsm/X_nmf"],
            outputs: &[],
        },
        Case {
            name: "--w0 of the wrong shape",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let st = d.join("start.h5");
                write_h5(&st, "W", &Array2::<f32>::ones((39, 2)));
                write_h5(&st, "H", &Array2::<f32>::ones((2, 9)));
                fit(
                    d,
                    &p,
                    "2",
                    &["--init", "custom", "--w0", &s(&st), "--h0", &s(&st)],
                )
            },
            code: 1,
            needles: &["W0 has shape (39, 2), expected (40, 2)"],
            outputs: &[],
        },
        Case {
            name: "--h0 with a negative value",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                let st = d.join("start.h5");
                write_h5(&st, "W", &Array2::<f32>::ones((40, 2)));
                let mut h = Array2::<f32>::ones((2, 9));
                h[(1, 3)] = -1.0;
                write_h5(&st, "H", &h);
                fit(
                    d,
                    &p,
                    "2",
                    &["--init", "custom", "--w0", &s(&st), "--h0", &s(&st)],
                )
            },
            code: 1,
            needles: &["H0 has the value -1 at row 1, column 3"],
            outputs: &[],
        },
        Case {
            name: "a --cache folder that does not exist",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--cache", &s(&d.join("nocache"))])
            },
            code: 1,
            needles: &["nocache", "--cache"],
            outputs: &[],
        },
        Case {
            name: "a checkpoint left without --resume",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                std::fs::write(d.join("c.h5"), b"state").expect("w");
                fit(d, &p, "2", &["--checkpoint", &s(&d.join("c.h5"))])
            },
            code: 2,
            needles: &["c.h5", "--resume"],
            outputs: &[],
        },
        Case {
            name: "--resume without --checkpoint",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                fit(d, &p, "2", &["--resume"])
            },
            code: 2,
            needles: &["--checkpoint"],
            outputs: &[],
        },
        Case {
            name: "a checkpoint that is not one",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                write_h5(&d.join("c.h5"), "X", &Array2::<f32>::ones((2, 2)));
                fit(
                    d,
                    &p,
                    "2",
                    &["--checkpoint", &s(&d.join("c.h5")), "--resume"],
                )
            },
            code: 1,
            needles: &["c.h5", "not an nmflow checkpoint"],
            outputs: &[],
        },
        // Sweep.
        Case {
            name: "sweep over an astronomical range of k",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                sweep(d, &p, "1..18446744073709551615", &[])
            },
            code: 2,
            needles: &["at most 1000"],
            outputs: &[],
        },
        Case {
            name: "sweep over an empty range",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                sweep(d, &p, "5..2", &[])
            },
            code: 2,
            needles: &["5..2", "empty"],
            outputs: &[],
        },
        Case {
            name: "sweep labels that do not exist",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                sweep(d, &p, "2..3", &["--labels", "kinds"])
            },
            code: 1,
            needles: &["x.h5", "kinds", "available"],
            outputs: &[],
        },
        Case {
            name: "sweep labels of the wrong length",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                write_h5_1d(&p, "kinds", &[1u32, 2, 3]);
                sweep(d, &p, "2..3", &["--labels", "/kinds"])
            },
            code: 1,
            needles: &["/kinds", "3 labels", "40 rows"],
            outputs: &[],
        },
        Case {
            name: "sweep labels with a code beyond the categories",
            setup: |d| {
                let p = good_h5ad(d);
                let f = hdf5::File::append(&p).expect("open");
                let g = f.create_group("obs/kind").expect("g");
                attr_str(&g, "encoding-type", "categorical");
                drop(f);
                let codes: Vec<i8> = (0..30)
                    .map(|i| if i == 7 { 5 } else { (i % 2) as i8 })
                    .collect();
                write_h5_1d(&p, "obs/kind/codes", &codes);
                let cats: Vec<hdf5::types::VarLenUnicode> =
                    vec!["a".parse().expect("s"), "b".parse().expect("s")];
                write_h5_1d(&p, "obs/kind/categories", &cats);
                sweep(d, &p, "2..3", &["--labels", "kind"])
            },
            code: 1,
            needles: &["cells.h5ad", "row 7 has code 5"],
            outputs: &[],
        },
        Case {
            name: "sweep with k above the matrix",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                sweep(d, &p, "8..10", &[])
            },
            code: 1,
            needles: &["x.h5", "k = 10"],
            outputs: &[],
        },
        Case {
            name: "sweep into a file",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                std::fs::write(d.join("sweep"), b"a file").expect("w");
                sweep(d, &p, "2..3", &[])
            },
            code: 2,
            needles: &["sweep", "is a file"],
            outputs: &[],
        },
        Case {
            name: "sweep with --resume and --force",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                sweep(d, &p, "2..3", &["--resume", "--force"])
            },
            code: 2,
            needles: &["--resume", "--force"],
            outputs: &[],
        },
        // Report and inspect.
        Case {
            name: "report on a file that is not a result",
            setup: |d| {
                let p = dense(d, "x.h5", |_| {});
                args(&["report", &s(&p), "-o", &s(&d.join("report"))])
            },
            code: 1,
            needles: &["x.h5", "not a result of nmflow fit"],
            outputs: &[],
        },
        Case {
            name: "report on a result holding NaN",
            setup: |d| {
                let r = result(d);
                let f = hdf5::File::open_rw(&r).expect("open");
                let h = f.dataset("H").expect("H");
                let mut v: Array2<f32> = h.read_2d().expect("read");
                v[(0, 0)] = f32::NAN;
                h.write(&v).expect("write");
                drop(f);
                args(&["report", &s(&r), "-o", &s(&d.join("report"))])
            },
            code: 1,
            needles: &["result.h5", "NaN"],
            outputs: &[],
        },
        Case {
            name: "report on a folder that is not a sweep",
            setup: |d| {
                std::fs::create_dir(d.join("empty")).expect("mkdir");
                args(&["report", &s(&d.join("empty")), "-o", &s(&d.join("report"))])
            },
            code: 1,
            needles: &["sweep.json"],
            outputs: &[],
        },
        Case {
            name: "inspect a directory",
            setup: |d| {
                std::fs::create_dir(d.join("folder")).expect("mkdir");
                args(&["inspect", &s(&d.join("folder"))])
            },
            code: 1,
            needles: &["folder", "is a directory"],
            outputs: &[],
        },
        Case {
            name: "inspect random bytes",
            setup: |d| {
                std::fs::write(d.join("x.h5"), [7u8; 3000]).expect("w");
                args(&["inspect", &s(&d.join("x.h5"))])
            },
            code: 1,
            needles: &["x.h5", "not an HDF5 file"],
            outputs: &[],
        },
    ]
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path, bytes);
            }
        }
    }
    out
}

#[test]
fn every_bad_input_is_refused_cleanly_and_leaves_everything_as_it_was() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempdir();
        let args = (case.setup)(dir.path());
        let before = snapshot(dir.path());
        let out = nmflow().args(&args).output().expect("run nmflow");
        let err = stderr(&out);
        let mut problems = Vec::new();
        if out.status.code() != Some(case.code) {
            problems.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        if err.contains("panicked") || out.status.code().is_none() {
            problems.push("panic or signal".to_owned());
        }
        for needle in case.needles {
            if !err.contains(needle) {
                problems.push(format!("no {needle:?} in the message"));
            }
        }
        let after = snapshot(dir.path());
        for (path, bytes) in &before {
            if after.get(path) != Some(bytes) {
                problems.push(format!("{} changed or vanished", path.display()));
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            let name = path.strip_prefix(dir.path()).expect("under dir");
            // A result comes with its programs' table beside it.
            let of_output = |o: &&str| {
                Path::new(o) == name || Path::new(o).with_extension("programs.tsv") == name
            };
            if !case.outputs.iter().any(of_output) {
                problems.push(format!("{} was left behind", name.display()));
            }
        }
        for output in case.outputs {
            if !dir.path().join(output).exists() {
                problems.push(format!("{output} was not written"));
            }
        }
        for d in ["sweep", "report"] {
            if dir.path().join(d).is_dir()
                && !before.keys().any(|p| p.starts_with(dir.path().join(d)))
            {
                problems.push(format!("the folder {d} was left behind"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                case.name,
                problems.join("; "),
                err.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
