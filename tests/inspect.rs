//! `nmflow inspect`.

use crate::util::*;

#[test]
fn inspect_lists_matrices_with_layout_and_memory() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5_gzip(&data, "counts", &seed_matrix(100, 12, 2), 25);
    write_h5_1d(&data, "extra/labels", &[0u32; 100]);
    let out = run(&["inspect", path_str(&data), "-k", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "/counts",
        "100 × 12",
        "float32",
        "chunks [25, 12]",
        "gzip(6)",
        "shuffle",
        "memory at k = 4",
    ] {
        assert!(text.contains(needle), "inspect lacks {needle:?}: {text}");
    }
    let out = run(&["inspect", path_str(&data), "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(entries[0]["dataset"], "/counts");
    assert_eq!(entries[1]["dataset"], "/extra/labels");
    assert_eq!(entries[1]["factorizable"], false);
    assert!(entries[0]["memory"]["total_bytes"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn inspect_reads_npy() {
    let dir = tempdir();
    let data = join(&dir, "x.npy");
    write_npy(&data, &seed_matrix(10, 4, 2));
    let out = run(&["inspect", path_str(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("10 × 4"));
}

#[test]
fn read_pass_reads_every_block_of_the_matrix_fit_would_read() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5_gzip(&data, "X", &seed_matrix(100, 12, 2), 25);
    let out = run(&[
        "inspect",
        path_str(&data),
        "--read-pass",
        "--block-rows",
        "30",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let pass = &report["read_pass"];
    assert_eq!(pass["blocks"], 4);
    assert_eq!(pass["block_rows"], 30);
    assert_eq!(pass["stored_values"], 1200);
    assert_eq!(pass["bytes"], 4800);
    assert!(pass["seconds"].as_f64().is_some());
    assert_eq!(report["datasets"][0]["dataset"], "/X");
    let out = run(&["inspect", path_str(&data), "--read-pass"]);
    assert!(stdout(&out).contains("read pass of"), "{}", stdout(&out));
}
