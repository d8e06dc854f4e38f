//! Running the binary and making fixture files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use nmflow_testkit::SeedGenerator;

pub const SEED: u64 = 42;

/// The `nmflow` binary built for these tests.
pub fn nmflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nmflow"))
}

/// Runs `nmflow` with `args`.
pub fn run(args: &[&str]) -> Output {
    nmflow().args(args).output().expect("running nmflow")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, the message contains every needle,
/// no panic, and `dir` holds exactly the files `expected_files`.
pub fn assert_fails(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status {:?}, stderr: {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The seed data set.
pub fn seed_matrix(n_rows: usize, n_cols: usize, components: usize) -> Array2<f32> {
    SeedGenerator::new(SEED, components, n_cols)
        .matrix(n_rows)
        .0
}

/// Writes `x` as dataset `name` (created with its groups) of a new HDF5 file.
pub fn write_h5<T: hdf5::H5Type + Clone>(path: &Path, name: &str, x: &Array2<T>) {
    let file = hdf5::File::append(path).expect("create h5");
    file.new_dataset_builder()
        .with_data(x)
        .create(name)
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

/// Writes a 1-D dataset.
pub fn write_h5_1d<T: hdf5::H5Type>(path: &Path, name: &str, values: &[T]) {
    let file = hdf5::File::append(path).expect("create h5");
    file.new_dataset_builder()
        .with_data(values)
        .create(name)
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

/// Writes `x` chunked by `chunk_rows` rows and gzip-compressed.
pub fn write_h5_gzip(path: &Path, name: &str, x: &Array2<f32>, chunk_rows: usize) {
    let file = hdf5::File::append(path).expect("create h5");
    file.new_dataset_builder()
        .chunk((chunk_rows, x.ncols()))
        .shuffle()
        .deflate(6)
        .with_data(x)
        .create(name)
        .expect("create gzip dataset");
}

/// Writes `x` as a little-endian f32 C-order `.npy` file.
pub fn write_npy(path: &Path, x: &Array2<f32>) {
    let mut text = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        x.nrows(),
        x.ncols()
    );
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut file = std::fs::File::create(path).expect("create npy");
    file.write_all(b"\x93NUMPY\x01\x00").expect("write");
    file.write_all(&(text.len() as u16).to_le_bytes())
        .expect("write");
    file.write_all(text.as_bytes()).expect("write");
    for v in x.iter() {
        file.write_all(&v.to_le_bytes()).expect("write");
    }
}

/// Reads a 2-D f32 dataset of a result file.
pub fn read2(path: &Path, name: &str) -> Array2<f32> {
    hdf5::File::open(path)
        .expect("open result")
        .dataset(name)
        .expect("dataset")
        .read_2d::<f32>()
        .expect("read")
}

/// Reads a 1-D dataset of a result file.
pub fn read1<T: hdf5::H5Type>(path: &Path, name: &str) -> Vec<T> {
    hdf5::File::open(path)
        .expect("open result")
        .dataset(name)
        .expect("dataset")
        .read_raw::<T>()
        .expect("read")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn join(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
