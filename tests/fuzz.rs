//! Corrupted files, at random: small valid inputs (CSR arrays of h5ad and
//! 10x files, dense loom matrices, `.npy` headers and payloads, raw HDF5
//! bytes) are damaged by proptest strategies and given to the real binary.
//! Properties: it never panics, never hangs (a bounded time per case), exits
//! 0 or 1, names the file when it refuses, and when it accepts a damaged
//! CSR file the matrix meant is a valid one (scipy's rules) and the result
//! equals the fit of that matrix given densely.
//!
//! CI runs a bounded number of cases (`NMFLOW_FUZZ_CASES`, default 24 per
//! property); `cargo xtask fuzz --minutes M` runs many more with fresh seeds
//! (`NMFLOW_FUZZ_SEED`) and records what it tried in docs/fuzzing.md.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ndarray::Array2;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use crate::util::*;

/// The longest one case may run: damaged bytes can turn the 12 × 7 matrix
/// into a valid but very wide one (seen: 12 × 2,162,695, which a debug
/// build fits in about 30 s, most of it the row sample's components).
const CASE_LIMIT: Duration = Duration::from_secs(120);

fn runner() -> TestRunner {
    let cases = std::env::var("NMFLOW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let seed = std::env::var("NMFLOW_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_201);
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs nmflow with a time limit; the output, or a failure if it hangs.
fn run_bounded(args: &[&str]) -> Result<Output, TestCaseError> {
    // A damaged structure the HDF5 library loops on is cut short by
    // nmflow's own watchdog, well within the case's limit.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .env("NMFLOW_METADATA_TIMEOUT", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TestCaseError::fail(format!("spawn: {e}")))?;
    let started = Instant::now();
    loop {
        if child
            .try_wait()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .is_some()
        {
            return child
                .wait_with_output()
                .map_err(|e| TestCaseError::fail(e.to_string()));
        }
        if started.elapsed() > CASE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TestCaseError::fail(format!(
                "hung for {CASE_LIMIT:?}: {args:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copies a case's input to `$NMFLOW_FUZZ_KEEP` (when set) so that a
/// failure found by `cargo xtask fuzz` can be reproduced.
fn keep(path: &Path) {
    if let Some(dir) = std::env::var_os("NMFLOW_FUZZ_KEEP") {
        let dir = Path::new(&dir);
        let _ = std::fs::create_dir_all(dir);
        let name = format!(
            "{}-{}",
            std::process::id(),
            path.file_name().and_then(|n| n.to_str()).unwrap_or("case")
        );
        let _ = std::fs::copy(path, dir.join(name));
    }
}

/// The properties every run on a damaged file must have; returns whether
/// it succeeded.
fn check_run(out: &Output, file: &Path, result: &Path) -> Result<bool, TestCaseError> {
    let err = stderr(out);
    prop_assert!(!err.contains("panicked"), "panic: {err}");
    match out.status.code() {
        Some(0) => {
            prop_assert!(result.exists(), "exit 0 without a result");
            let w = read2(result, "W");
            let h = read2(result, "H");
            prop_assert!(
                w.iter().chain(h.iter()).all(|v| v.is_finite()),
                "non-finite result"
            );
            Ok(true)
        }
        Some(1) => {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            prop_assert!(
                err.contains(name),
                "the message does not name {name}: {err}"
            );
            prop_assert!(!result.exists(), "a refused run left a result");
            Ok(false)
        }
        other => Err(TestCaseError::fail(format!("exit {other:?}: {err}"))),
    }
}

const N_ROWS: usize = 12;
const N_COLS: usize = 7;

fn base_matrix() -> Array2<f32> {
    seed_matrix(N_ROWS, N_COLS, 2).mapv(|v| if v > 0.6 { (v * 3.0).round() } else { 0.0 })
}

/// One change to the arrays of a CSR matrix.
#[derive(Debug, Clone)]
enum CsrDamage {
    Data(usize, f32),
    Index(usize, i64),
    Indptr(usize, i64),
    Shape(usize, i64),
    TruncateData(usize),
    TruncateIndices(usize),
    TruncateIndptr(usize),
    DuplicateFirst,
}

fn csr_damage() -> impl Strategy<Value = CsrDamage> {
    let value = prop_oneof![
        Just(-1.0f32),
        Just(0.0),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(3e38),
        Just(1e-44),
        Just(2.5),
        (0u32..1000).prop_map(|v| v as f32),
    ];
    let int = prop_oneof![
        Just(-1i64),
        Just(0),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(N_COLS as i64),
        Just(N_ROWS as i64),
        (0i64..40),
    ];
    prop_oneof![
        (0usize..200, value).prop_map(|(i, v)| CsrDamage::Data(i, v)),
        (0usize..200, int.clone()).prop_map(|(i, v)| CsrDamage::Index(i, v)),
        (0usize..N_ROWS + 1, int.clone()).prop_map(|(i, v)| CsrDamage::Indptr(i, v)),
        (0usize..2, int).prop_map(|(i, v)| CsrDamage::Shape(i, v)),
        (0usize..200).prop_map(CsrDamage::TruncateData),
        (0usize..200).prop_map(CsrDamage::TruncateIndices),
        (0usize..N_ROWS + 1).prop_map(CsrDamage::TruncateIndptr),
        Just(CsrDamage::DuplicateFirst),
    ]
}

/// CSR arrays and a shape.
#[derive(Debug, Clone)]
struct Csr {
    data: Vec<f32>,
    indices: Vec<i64>,
    indptr: Vec<i64>,
    shape: [i64; 2],
}

impl Csr {
    fn of(x: &Array2<f32>) -> Self {
        let (data, indices, indptr) = compressed(x, false);
        Self {
            data,
            indices,
            indptr,
            shape: [x.nrows() as i64, x.ncols() as i64],
        }
    }

    /// Writes these arrays as the `X` of an h5ad file.
    fn write_h5ad(&self, path: &Path) {
        sparse_h5ad(
            path,
            "X",
            "csr_matrix",
            Some(&self.shape),
            &self.data,
            &self.indices,
            &self.indptr,
        );
    }

    fn damage(mut self, d: &CsrDamage) -> Self {
        let at = |len: usize, i: usize| if len == 0 { None } else { Some(i % len) };
        match *d {
            CsrDamage::Data(i, v) => {
                if let Some(i) = at(self.data.len(), i) {
                    self.data[i] = v;
                }
            }
            CsrDamage::Index(i, v) => {
                if let Some(i) = at(self.indices.len(), i) {
                    self.indices[i] = v;
                }
            }
            CsrDamage::Indptr(i, v) => {
                let i = i % self.indptr.len();
                self.indptr[i] = v;
            }
            CsrDamage::Shape(i, v) => self.shape[i] = v,
            CsrDamage::TruncateData(n) => self.data.truncate(n % (self.data.len() + 1)),
            CsrDamage::TruncateIndices(n) => self.indices.truncate(n % (self.indices.len() + 1)),
            CsrDamage::TruncateIndptr(n) => self.indptr.truncate(n),
            CsrDamage::DuplicateFirst => {
                // The first stored entry of the first row with two: its
                // column stored a second time.
                for r in 0..self.indptr.len().saturating_sub(1) {
                    let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
                    if b >= a + 2 {
                        self.indices[a + 1] = self.indices[a];
                        break;
                    }
                }
            }
        }
        self
    }

    /// The matrix these arrays mean by scipy's rules: `Invalid` when they
    /// do not make one nmflow may accept (invalid structure, a duplicate, a
    /// negative or non-finite value).
    fn meaning(&self) -> Meaning {
        let [r, c] = self.shape;
        if r < 0 || c < 0 || self.indptr.len() != r as usize + 1 || self.indptr[0] != 0 {
            return Meaning::Invalid;
        }
        let Some(&nnz) = self.indptr.last() else {
            return Meaning::Invalid;
        };
        let nnz = nnz as usize;
        if self.data.len() != nnz || self.indices.len() != nnz {
            return Meaning::Invalid;
        }
        let (n_rows, n_cols) = (r as usize, c as usize);
        let dense = n_cols <= 10_000;
        let mut x = Array2::zeros((n_rows, if dense { n_cols } else { 0 }));
        for row in 0..n_rows {
            let (a, b) = (self.indptr[row], self.indptr[row + 1]);
            if a < 0 || b < a || b as usize > nnz {
                return Meaning::Invalid;
            }
            let mut seen = std::collections::HashSet::new();
            for i in a as usize..b as usize {
                let (col, v) = (self.indices[i], self.data[i]);
                let sound = v.is_finite() && v >= 0.0;
                if col < 0 || col >= c || !seen.insert(col) || !sound {
                    return Meaning::Invalid;
                }
                if dense {
                    x[(row, col as usize)] = v;
                }
            }
        }
        if dense {
            Meaning::Matrix(x)
        } else {
            Meaning::TooWideToCheck
        }
    }
}

/// What damaged CSR arrays mean.
#[derive(Debug)]
enum Meaning {
    Invalid,
    Matrix(Array2<f32>),
    TooWideToCheck,
}

/// Fits the damaged file `file` (k = 2, 5 iterations) into `out` and checks
/// the run ([`check_run`]); whether it succeeded. A failing input is kept.
fn fit_damaged(file: &Path, out: &Path) -> Result<bool, TestCaseError> {
    let args = [
        "fit",
        path_str(file),
        "-k",
        "2",
        "--max-iter",
        "5",
        "-q",
        "-o",
        path_str(out),
    ];
    run_bounded(&args)
        .and_then(|done| check_run(&done, file, out))
        .inspect_err(|_| keep(file))
}

/// `fit INPUT -k 2 --max-iter 8 --tol 0 -q -o OUT`: the fit of the CSR
/// property.
fn csr_fit_args<'a>(input: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec![
        "fit",
        input,
        "-k",
        "2",
        "--max-iter",
        "8",
        "--tol",
        "0",
        "-q",
        "-o",
        path_str(out),
    ]
}

/// The W of [`csr_fit_args`], if the fit succeeds.
fn fit_w(input: &str, out: &Path) -> Result<Option<Array2<f32>>, TestCaseError> {
    let done = run_bounded(&csr_fit_args(input, out))?;
    Ok(done.status.success().then(|| read2(out, "W")))
}

#[test]
fn damaged_csr_arrays_of_h5ad_and_10x_files_are_refused_or_read_as_scipy_would() {
    let base = Csr::of(&base_matrix());
    let mut runner = runner();
    let result = runner.run(&(csr_damage(), any::<bool>()), |(damage, tenx)| {
        let dir = tempdir();
        let csr = base.clone().damage(&damage);
        let file = if tenx {
            // 10x stores genes × barcodes CSC: the same arrays, shape swapped.
            let path = dir.path().join("damaged_10x.h5");
            let f = hdf5::File::create(&path).expect("create");
            let g = f.create_group("matrix").expect("matrix");
            g.new_dataset_builder()
                .with_data(&csr.data)
                .create("data")
                .expect("data");
            g.new_dataset_builder()
                .with_data(&csr.indices)
                .create("indices")
                .expect("i");
            g.new_dataset_builder()
                .with_data(&csr.indptr)
                .create("indptr")
                .expect("p");
            let shape = [csr.shape[1], csr.shape[0]];
            g.new_dataset_builder()
                .with_data(&shape)
                .create("shape")
                .expect("shape");
            let barcodes: Vec<hdf5::types::VarLenUnicode> = (0..N_ROWS)
                .map(|i| format!("B{i}").parse().expect("s"))
                .collect();
            g.new_dataset_builder()
                .with_data(&barcodes)
                .create("barcodes")
                .expect("b");
            let features = g.create_group("features").expect("features");
            let ids: Vec<hdf5::types::VarLenUnicode> = (0..N_COLS)
                .map(|i| format!("G{i}").parse().expect("s"))
                .collect();
            features
                .new_dataset_builder()
                .with_data(&ids)
                .create("id")
                .expect("id");
            features
                .new_dataset_builder()
                .with_data(&ids)
                .create("name")
                .expect("name");
            path
        } else {
            let path = dir.path().join("damaged.h5ad");
            csr.write_h5ad(&path);
            path
        };
        let out = dir.path().join("out.h5");
        let done = run_bounded(&csr_fit_args(path_str(&file), &out))?;
        if check_run(&done, &file, &out)? {
            let matrix = match csr.meaning() {
                Meaning::Invalid => {
                    return Err(TestCaseError::fail(format!(
                        "accepted invalid arrays ({damage:?})"
                    )));
                }
                Meaning::TooWideToCheck => return Ok(()),
                Meaning::Matrix(x) => x,
            };
            let dense = dir.path().join("meant.npy");
            write_npy(&dense, &matrix);
            let expected = fit_w(path_str(&dense), &dir.path().join("meant.h5"))?;
            let w = read2(&out, "W");
            let expected =
                expected.ok_or_else(|| TestCaseError::fail("the meant matrix was refused"))?;
            let scale = expected.iter().fold(0.0f32, |m, v| m.max(*v)).max(1e-6);
            let diff = w
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            prop_assert!(
                diff <= 1e-4 * scale,
                "W differs by {diff} from the fit of the meant matrix"
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One change to a `.npy` file: a byte of the header or payload set, or the
/// file cut.
#[derive(Debug, Clone)]
enum NpyDamage {
    Byte(usize, u8),
    Cut(usize),
}

#[test]
fn damaged_npy_files_and_loom_matrices_never_panic_or_hang() {
    let mut runner = runner();
    let npy_damage = prop_oneof![
        (0usize..200, any::<u8>()).prop_map(|(i, b)| NpyDamage::Byte(i, b)),
        (0usize..600).prop_map(NpyDamage::Cut),
    ];
    let result = runner.run(
        &(npy_damage, 0usize..N_ROWS, 0usize..N_COLS, -2.0f32..50.0),
        |(damage, r, c, v)| {
            let dir = tempdir();
            // .npy: header (the first 128 bytes) or payload.
            let npy = dir.path().join("damaged.npy");
            write_npy(&npy, &base_matrix());
            let mut bytes = std::fs::read(&npy).expect("read");
            match damage {
                NpyDamage::Byte(i, b) => {
                    let i = i % bytes.len();
                    bytes[i] = b;
                }
                NpyDamage::Cut(n) => bytes.truncate(n % bytes.len()),
            }
            std::fs::write(&npy, &bytes).expect("write");
            let out = dir.path().join("out.h5");
            fit_damaged(&npy, &out)?;
            // loom: one value of the genes × cells matrix set.
            let loom = dir.path().join("damaged.loom");
            let mut x = base_matrix().t().as_standard_layout().into_owned();
            x[(c, r)] = v;
            write_h5(&loom, "matrix", &x);
            let f = hdf5::File::append(&loom).expect("open");
            for g in ["row_attrs", "col_attrs", "layers"] {
                f.create_group(g).expect("group");
            }
            drop(f);
            let out2 = dir.path().join("out2.h5");
            let accepted = fit_damaged(&loom, &out2)?;
            prop_assert_eq!(
                accepted,
                v >= 0.0 && x.iter().any(|v| *v > 0.0),
                "value {}",
                v
            );
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn hdf5_files_with_damaged_bytes_never_panic_or_hang() {
    let dir = tempdir();
    let clean = dir.path().join("clean.h5ad");
    let csr = Csr::of(&base_matrix());
    csr.write_h5ad(&clean);
    let original = std::fs::read(&clean).expect("read");
    let mut runner = runner();
    let flips = proptest::collection::vec((0usize..original.len(), any::<u8>()), 1..6);
    let result = runner.run(&flips, |flips| {
        let dir = tempdir();
        let path = dir.path().join("damaged.h5ad");
        let mut bytes = original.clone();
        for (i, b) in &flips {
            bytes[*i] = *b;
        }
        std::fs::write(&path, &bytes).expect("write");
        let out = dir.path().join("out.h5");
        fit_damaged(&path, &out)?;
        let done = run_bounded(&["inspect", path_str(&path)]).inspect_err(|_| keep(&path))?;
        let err = stderr(&done);
        if err.contains("panicked") || !matches!(done.status.code(), Some(0 | 1)) {
            keep(&path);
        }
        prop_assert!(!err.contains("panicked"), "inspect panicked: {err}");
        prop_assert!(
            matches!(done.status.code(), Some(0 | 1)),
            "inspect exit {:?}",
            done.status.code()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
