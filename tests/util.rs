//! Running the binary and making fixture files.

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

/// Runs nmflow with `args` (the concatenation of `parts`) and asserts that
/// it succeeds, naming the case `what` and printing its standard error.
pub fn run_ok(what: &str, parts: &[&[&str]]) -> Output {
    let out = run(&parts.concat());
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, the message contains every needle,
/// no panic.
pub fn assert_fails(out: &Output, needles: &[&str]) {
    assert_exit(out, 1, needles);
}

/// Asserts a usage error: exit code 2, the message contains every needle,
/// no panic.
pub fn assert_usage_error(out: &Output, needles: &[&str]) {
    assert_exit(out, 2, needles);
}

fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
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

/// Writes `x` as a little-endian f32 C-order `.npy` file (nmflow's own
/// writer, [`nmflow_io::npy::write_npy`]).
pub fn write_npy(path: &Path, x: &Array2<f32>) {
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout");
    nmflow_io::npy::write_npy(path, &[x.nrows(), x.ncols()], values).expect("write npy");
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

/// CSR (or, with `csc`, CSC) arrays of `x`, with explicit zeros and
/// unsorted indices mixed in to exercise the reader.
pub fn compressed(x: &Array2<f32>, csc: bool) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
    let major = if csc { x.t() } else { x.view() };
    let (mut data, mut indices, mut indptr) = (Vec::new(), Vec::new(), vec![0i64]);
    for (i, lane) in major.rows().into_iter().enumerate() {
        let mut entries: Vec<(i64, f32)> = lane
            .iter()
            .enumerate()
            .filter(|&(j, &v)| v != 0.0 || (i + j) % 11 == 0)
            .map(|(j, &v)| (j as i64, v))
            .collect();
        entries.reverse(); // descending, as Cell Ranger 3 stores them
        for (j, v) in entries {
            indices.push(j);
            data.push(v);
        }
        indptr.push(data.len() as i64);
    }
    (data, indices, indptr)
}

pub fn attr_str(loc: &hdf5::Location, name: &str, value: &str) {
    let v: hdf5::types::VarLenUnicode = value.parse().expect("string");
    loc.new_attr::<hdf5::types::VarLenUnicode>()
        .create(name)
        .and_then(|a| a.write_scalar(&v))
        .expect("attribute");
}

/// Writes an h5ad with obs/var and the sparse group `name` built from raw
/// arrays (so tests can break them).
#[allow(clippy::too_many_arguments)]
pub fn sparse_h5ad<T: hdf5::H5Type, I: hdf5::H5Type>(
    path: &Path,
    name: &str,
    encoding: &str,
    shape: Option<&[i64]>,
    data: &[T],
    indices: &[I],
    indptr: &[i64],
) {
    let file = hdf5::File::append(path).expect("create");
    if !file.link_exists("obs") {
        attr_str(&file, "encoding-type", "anndata");
        attr_str(&file, "encoding-version", "0.1.0");
        for frame in ["obs", "var"] {
            let g = file.create_group(frame).expect("frame");
            attr_str(&g, "encoding-type", "dataframe");
            attr_str(&g, "_index", "_index");
        }
    }
    let g = file.create_group(name).expect("group");
    attr_str(&g, "encoding-type", encoding);
    attr_str(&g, "encoding-version", "0.1.0");
    if let Some(shape) = shape {
        g.new_attr::<i64>()
            .shape(2)
            .create("shape")
            .and_then(|a| a.write(shape))
            .expect("shape");
    }
    g.new_dataset_builder()
        .with_data(data)
        .create("data")
        .expect("data");
    g.new_dataset_builder()
        .with_data(indices)
        .create("indices")
        .expect("indices");
    g.new_dataset_builder()
        .with_data(indptr)
        .create("indptr")
        .expect("indptr");
}

/// Writes a 1-D variable-length UTF-8 string dataset holding the given raw
/// bytes as they are (invalid UTF-8 included), as a damaged file may.
pub fn write_raw_vlen_strings(path: &Path, name: &str, values: &[&[u8]]) {
    let file = hdf5::File::append(path).expect("open");
    let placeholder: Vec<hdf5::types::VarLenUnicode> =
        values.iter().map(|_| "x".parse().expect("str")).collect();
    let ds = file
        .new_dataset_builder()
        .with_data(&placeholder)
        .create(name)
        .expect("dataset");
    let owned: Vec<std::ffi::CString> = values
        .iter()
        .map(|v| std::ffi::CString::new(v.to_vec()).expect("no NUL"))
        .collect();
    let pointers: Vec<*const std::ffi::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
    let dtype = ds.dtype().expect("dtype");
    // SAFETY: one pointer to a NUL-terminated string per element, in the
    // dataset's own variable-length string type.
    let status = unsafe {
        hdf5_sys::h5d::H5Dwrite(
            ds.id(),
            dtype.id(),
            hdf5_sys::h5s::H5S_ALL,
            hdf5_sys::h5s::H5S_ALL,
            hdf5_sys::h5p::H5P_DEFAULT,
            pointers.as_ptr().cast(),
        )
    };
    assert!(status >= 0, "H5Dwrite");
}
