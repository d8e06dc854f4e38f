//! The record a sweep keeps of each finished (k, restart) run, so that
//! `nmflow sweep --resume` continues a sweep cut short: `DIR/runs/kK-rR.h5`,
//! written by the write protocol ([`crate::atomic`]) once the run is done
//! (after its result file when it is the best of its k).
//!
//! Layout (HDF5): attributes of `/`: `format` = "nmflow-sweep-run",
//! `version` = 1, `k`, `restart`, `seed`, `n_iter`, `converged`,
//! `rel_error`, `ari`, `nmi` (NaN without labels), and the command's input
//! fingerprint and parameters (`input:NAME`, `param:NAME`, as in a
//! checkpoint); datasets `H` (k × columns), `rel_error` (the trace),
//! `sample_rows` and `sample_clusters` (the run's cluster of every sampled
//! row, for the consensus matrix).

use std::path::{Path, PathBuf};

use hdf5::File;
use ndarray::Array2;

use crate::atomic::{self, Overwrite, WriteError};
use crate::checkpoint::{CheckpointMeta, StateFormat, read_header, write_header};
use crate::error::IoError;

/// One finished run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Components.
    pub k: usize,
    /// Restart index.
    pub restart: usize,
    /// Seed.
    pub seed: u64,
    /// Iterations run.
    pub n_iter: usize,
    /// Whether the stopping rule ended it.
    pub converged: bool,
    /// Final relative error.
    pub rel_error: f64,
    /// ARI against the labels, if any.
    pub ari: Option<f64>,
    /// NMI against the labels, if any.
    pub nmi: Option<f64>,
    /// H, `k × n_cols`.
    pub h: Array2<f32>,
    /// The error trace.
    pub trace: Vec<f64>,
    /// The sampled rows.
    pub sample_rows: Vec<u64>,
    /// The cluster of every sampled row.
    pub sample_clusters: Vec<u32>,
}

const RECORD: StateFormat = StateFormat {
    name: "nmflow-sweep-run",
    version: 1,
    what: "nmflow sweep run record",
};

/// Where the record of run (k, restart) of the sweep in `dir` lives.
pub fn record_path(dir: &Path, k: usize, restart: usize) -> PathBuf {
    dir.join("runs").join(format!("k{k}-r{restart}.h5"))
}

/// Writes `record` for the command `meta` (creating `DIR/runs`).
pub fn write_record(dir: &Path, meta: &CheckpointMeta, record: &RunRecord) -> Result<(), IoError> {
    let path = record_path(dir, record.k, record.restart);
    let runs_dir = atomic::parent_dir(&path);
    std::fs::create_dir_all(&runs_dir).map_err(|e| IoError::os(&runs_dir, e))?;
    atomic::write_beside(&path, Overwrite::Replace, |tmp| {
        write_file(tmp, meta, record)
    })
    .map_err(|e| match e {
        WriteError::Write(e) => IoError::hdf5(&path, "writing the run record", e),
        WriteError::Io(e) => e,
    })
}

fn write_file(tmp: &Path, meta: &CheckpointMeta, r: &RunRecord) -> hdf5::Result<()> {
    let file = File::create(tmp)?;
    write_header(&file, &RECORD, meta)?;
    for (name, value) in [
        ("k", r.k as u64),
        ("restart", r.restart as u64),
        ("seed", r.seed),
        ("n_iter", r.n_iter as u64),
        ("converged", u64::from(r.converged)),
    ] {
        file.new_attr::<u64>().create(name)?.write_scalar(&value)?;
    }
    for (name, value) in [
        ("rel_error", r.rel_error),
        ("ari", r.ari.unwrap_or(f64::NAN)),
        ("nmi", r.nmi.unwrap_or(f64::NAN)),
    ] {
        file.new_attr::<f64>().create(name)?.write_scalar(&value)?;
    }
    file.new_dataset_builder().with_data(&r.h).create("H")?;
    file.new_dataset_builder()
        .with_data(r.trace.as_slice())
        .create("rel_error")?;
    file.new_dataset_builder()
        .with_data(r.sample_rows.as_slice())
        .create("sample_rows")?;
    file.new_dataset_builder()
        .with_data(r.sample_clusters.as_slice())
        .create("sample_clusters")?;
    file.close()
}

/// What reading a record found.
#[derive(Debug)]
pub enum Recorded {
    /// No record: the run has not finished.
    Absent,
    /// A record, read and checked for consistency, with the command that
    /// wrote it.
    Found(CheckpointMeta, Box<RunRecord>),
    /// A file that is not a whole, consistent record (cut short, damaged):
    /// the run is to be run again.
    Damaged(IoError),
}

/// Reads the record of run (k, restart) of the sweep in `dir` and checks
/// it: the right run, H of `k × n_cols`, finite values, one cluster below k
/// per sampled row, a trace as long as its iterations and ending at its
/// error.
pub fn read_record(dir: &Path, k: usize, restart: usize, n_cols: usize) -> Recorded {
    let path = record_path(dir, k, restart);
    if !path.exists() {
        return Recorded::Absent;
    }
    match read_checked(&path, k, restart, n_cols) {
        Ok((meta, record)) => Recorded::Found(meta, Box::new(record)),
        Err(e) => Recorded::Damaged(e),
    }
}

fn read_checked(
    path: &Path,
    k: usize,
    restart: usize,
    n_cols: usize,
) -> Result<(CheckpointMeta, RunRecord), IoError> {
    let h5 = |what: &str| {
        let what = what.to_owned();
        move |e| IoError::hdf5(path, what.clone(), e)
    };
    let file = File::open(path).map_err(h5("opening the run record"))?;
    let meta = read_header(path, &file, &RECORD)?;
    let int = |name: &str| -> Result<u64, IoError> {
        file.attr(name)
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(h5(name))
    };
    let float = |name: &str| -> Result<f64, IoError> {
        file.attr(name)
            .and_then(|a| a.read_scalar::<f64>())
            .map_err(h5(name))
    };
    let optional = |v: f64| if v.is_nan() { None } else { Some(v) };
    let record = RunRecord {
        k: int("k")? as usize,
        restart: int("restart")? as usize,
        seed: int("seed")?,
        n_iter: int("n_iter")? as usize,
        converged: int("converged")? != 0,
        rel_error: float("rel_error")?,
        ari: optional(float("ari")?),
        nmi: optional(float("nmi")?),
        h: file
            .dataset("H")
            .and_then(|d| d.read_2d())
            .map_err(h5("H"))?,
        trace: file
            .dataset("rel_error")
            .and_then(|d| d.read_raw())
            .map_err(h5("rel_error"))?,
        sample_rows: file
            .dataset("sample_rows")
            .and_then(|d| d.read_raw())
            .map_err(h5("sample_rows"))?,
        sample_clusters: file
            .dataset("sample_clusters")
            .and_then(|d| d.read_raw())
            .map_err(h5("sample_clusters"))?,
    };
    let consistent = record.k == k
        && record.restart == restart
        && record.h.dim() == (k, n_cols)
        && record.h.iter().all(|v| v.is_finite() && *v >= 0.0)
        && record.trace.len() == record.n_iter
        && record.trace.last() == Some(&record.rel_error)
        && record.trace.iter().all(|v| v.is_finite())
        && record.sample_rows.len() == record.sample_clusters.len()
        && record.sample_clusters.iter().all(|&c| (c as usize) < k);
    if !consistent {
        return Err(IoError::malformed(
            path,
            "/",
            "the record is not consistent with its run",
        ));
    }
    Ok((meta, record))
}
