//! Every matrix of the real single-cell files in `../shared/data/real`
//! (Cell Ranger, Space Ranger, anndata and loompy output), checked against
//! `expected_stats.json`: shape, stored entries, whole-number detection, and
//! the first cell and gene names carried into the h5ad result. Skipped, with
//! a message, when that directory is absent.

use std::path::{Path, PathBuf};

use crate::util::*;

fn real_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
    if dir.join("expected_stats.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (real single-cell files)",
            dir.display()
        );
        None
    }
}

/// The command-line options that select matrix `matrix` of `file`.
fn options(file: &str, matrix: &str) -> Vec<String> {
    match matrix {
        "X" | "/matrix" => vec![],
        "raw/X" => vec!["--raw".into()],
        m if m.starts_with("layers/") => vec!["--layer".into(), m["layers/".len()..].into()],
        m if file.contains("10x-v2") => vec!["--genome".into(), m.trim_start_matches('/').into()],
        other => panic!("no option selects {other} of {file}"),
    }
}

/// (file, first cell, first gene) as anndata / scanpy report them.
const NAMES: &[(&str, &str, &str)] = &[
    (
        "derived/mouse_neurons_10k_subset.csr.gzip.h5ad",
        "AAACCTGAGATAGGAG-1",
        "Xkr4",
    ),
    (
        "derived/mouse_neurons_10k_subset.dense.lzf.h5ad",
        "AAACCTGAGATAGGAG-1",
        "Xkr4",
    ),
    (
        "derived/pbmc_chr21_v3.csc.h5ad",
        "AAACCCAAGGAGAGTA-1",
        "CH507-9B2.2",
    ),
    (
        "derived/pbmc_chr21_v3.loom",
        "AAACCCAAGGAGAGTA-1",
        "CH507-9B2.2",
    ),
    (
        "derived/pbmc_chr21_v3.processed.h5ad",
        "AAACCCAAGGAGAGTA-1",
        "CH507-9B2.2",
    ),
    (
        "original/10x-v3_pbmc_chr21.filtered_feature_bc_matrix.h5",
        "AAACCCAAGGAGAGTA-1",
        "CH507-9B2.2",
    ),
    (
        "original/10x-v2_hg19_chr21.filtered_gene_bc_matrices_h5.h5",
        "AACACGTGTACGCTGC-1",
        "DSCAM",
    ),
    (
        "original/spaceranger-1.0.0.filtered_feature_bc_matrix.h5",
        "AAACAAGTATCTCCCA-1",
        "ENSG00000243485",
    ),
    (
        "original/spaceranger-2.1.0.raw_probe_bc_matrix.h5",
        "AACACCTACTATCGAA-1",
        "Itgb2l|2ef1e7b",
    ),
    ("original/anndata-v0.7.0.synthetic.h5ad", "cell0", "gene0"),
    ("original/anndata-v0.7.8.synthetic.h5ad", "cell0", "gene0"),
];

fn first_string(path: &Path, dataset: &str) -> String {
    let file = hdf5::File::open(path).expect("open result");
    let values = file
        .dataset(dataset)
        .and_then(|d| d.read_raw::<hdf5::types::VarLenUnicode>())
        .expect("string dataset");
    values[0].as_str().to_owned()
}

#[test]
fn every_real_matrix_is_read_with_its_shape_entries_and_names() {
    let Some(dir) = real_dir() else { return };
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected_stats.json")).expect("read"),
    )
    .expect("json");
    let work = tempdir();
    let mut checked = 0;
    for (file, entry) in stats.as_object().expect("object") {
        let path = dir.join(file);
        let path_text = path_str(&path);
        let out = join(&work, "result.h5ad");
        let matrices = entry["matrices"].as_array().expect("matrices");
        if matrices.is_empty() {
            // anndata-v0.11.4: AnnData(shape=(10, 20)) has no X at all.
            let run = run(&[
                "fit",
                path_text,
                "-k",
                "2",
                "-q",
                "--force",
                "-o",
                path_str(&out),
            ]);
            assert_fails(&run, &["has no X"]);
            continue;
        }
        for m in matrices {
            let matrix = m["path"].as_str().expect("path");
            let shape: Vec<u64> = m["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|v| v.as_u64().expect("n"))
                .collect();
            let mut args: Vec<String> = [
                "fit",
                path_text,
                "-k",
                "2",
                "--max-iter",
                "3",
                "--json",
                "--force",
                "-o",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.push(path_str(&out).into());
            args.extend(options(file, matrix));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = run(&args);
            if m["nnz_nonzero"] == 0 {
                assert_fails(&output, &["every entry of the matrix is zero"]);
                continue;
            }
            assert!(
                output.status.success(),
                "{file} {matrix}: {}",
                stderr(&output)
            );
            let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
            assert_eq!(summary["n_rows"], shape[0], "{file} {matrix}");
            assert_eq!(summary["n_cols"], shape[1], "{file} {matrix}");
            let storage = summary["storage"].as_str().expect("storage");
            let expected_nnz = if storage.contains("transposed") {
                &m["nnz_nonzero"]
            } else {
                &m["nnz_stored"]
            };
            assert_eq!(&summary["nnz"], expected_nnz, "{file} {matrix} ({storage})");
            assert_eq!(
                summary["integer_valued"], m["integer_valued"],
                "{file} {matrix}"
            );
            if let Some((_, cell, gene)) = NAMES.iter().find(|(f, _, _)| f == file)
                && matrix != "raw/X"
            {
                assert_eq!(first_string(&out, "obs/_index"), *cell, "{file} {matrix}");
                assert_eq!(first_string(&out, "var/_index"), *gene, "{file} {matrix}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} matrices checked");
}

#[test]
fn unsorted_cell_ranger_indices_give_the_same_fit_as_sorted_csc_and_loom() {
    let Some(dir) = real_dir() else { return };
    let work = tempdir();
    let files = [
        "original/10x-v3_pbmc_chr21.filtered_feature_bc_matrix.h5",
        "derived/pbmc_chr21_v3.csc.h5ad",
        "derived/pbmc_chr21_v3.loom",
    ];
    let mut ws = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let out = join(&work, &format!("r{i}.h5"));
        let run = run(&[
            "fit",
            path_str(&dir.join(file)),
            "-k",
            "3",
            "--max-iter",
            "20",
            "--tol",
            "0",
            "--normalize",
            "cp10k-log1p",
            "-q",
            "-o",
            path_str(&out),
        ]);
        assert!(run.status.success(), "{file}: {}", stderr(&run));
        ws.push(read2(&out, "W"));
    }
    for (file, w) in files.iter().zip(&ws).skip(1) {
        let diff = w
            .iter()
            .zip(&ws[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = ws[0].iter().fold(0.0f32, |m, &v| m.max(v));
        assert!(
            diff / scale < 1e-3,
            "{file} differs from the Cell Ranger file by {diff}"
        );
    }
}

#[test]
fn write_into_adds_the_result_and_keeps_the_original_content() {
    let Some(dir) = real_dir() else { return };
    let work = tempdir();
    let copy = join(&work, "pbmc.h5ad");
    std::fs::copy(dir.join("derived/pbmc_chr21_v3.processed.h5ad"), &copy).expect("copy");
    // The shared files are read-only, and so is a copy of them: a user
    // makes the copy writable before editing it.
    let mut perms = std::fs::metadata(&copy).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&copy, perms).expect("chmod");
    let before = hdf5::File::open(&copy)
        .and_then(|f| f.dataset("X/data")?.read_raw::<f32>())
        .expect("X");
    let run = run(&[
        "fit",
        path_str(&copy),
        "--layer",
        "counts",
        "-k",
        "3",
        "--max-iter",
        "5",
        "-q",
        "--write-into",
        path_str(&copy),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let file = hdf5::File::open(&copy).expect("open");
    assert_eq!(
        file.dataset("X/data")
            .and_then(|d| d.read_raw::<f32>())
            .expect("X"),
        before
    );
    assert_eq!(
        file.dataset("obsm/X_nmf").expect("X_nmf").shape(),
        vec![1107, 3]
    );
    assert_eq!(
        file.dataset("varm/NMF_H").expect("NMF_H").shape(),
        vec![507, 3]
    );
    assert!(
        file.dataset("obsm/X_pca").is_ok(),
        "existing entries are kept"
    );
    assert!(file.group("obs/nmf_cluster").is_ok());
    assert!(file.group("uns/nmf").is_ok());
    assert_eq!(
        files_in(work.path()),
        vec!["pbmc.h5ad", "pbmc.programs.tsv"],
        "no temporary file is left (the programs' table is written beside)"
    );
}
