//! Checkpoint files of `nmflow fit --checkpoint`: everything a fit needs to
//! continue after an iteration, written by the write protocol
//! ([`crate::atomic`]: beside the target, flushed, renamed), so a kill at
//! any moment leaves either the previous checkpoint or the new one.
//!
//! Layout (HDF5): attributes of `/`: `format` = "nmflow-checkpoint",
//! `version` = 1, `iteration`, every parameter of the command that shapes
//! the iterates (`param:NAME`, as text) and the input's fingerprint
//! (`input:NAME`); `/shared/col_scale` with attributes `x_norm_sq`,
//! `x_sum`, `integer_valued`, `n_stored`, `prepare_seconds`; `/sample/rows`,
//! `/sample/pca`, `/sample/pca_variance_ratio` (the row sample's
//! components, computed in the first iteration); per run `/runs/R/`: `W`
//! (written block by block from its store), `H`, `xtw`, `wtw`, `w_sum`
//! (Kullback–Leibler fits only), `rel_error`, `iteration_seconds` and
//! attributes `init_rel_error`,
//! `checked_rel_error`, `converged`, `done`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hdf5::{File, Group};
use ndarray::{Array2, s};
use nmflow_core::{Checkpoint, FactorStore, Resume, Run, RunSnapshot, Shared};

use crate::atomic::{self, Overwrite, WriteError};
use crate::error::IoError;

/// What identifies an input: its path, size, modification time, shape,
/// stored values (as the source announces them) and a checksum of three
/// 1 MiB pieces of the file (start, middle, end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The input's canonical path.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Rows × columns of the matrix read.
    pub shape: (usize, usize),
    /// Stored values the source announces (0 when it does not).
    pub nnz: u64,
    /// FNV-1a of the three pieces.
    pub checksum: u64,
}

/// Bytes hashed at each of the three places of [`Fingerprint::checksum`].
const PIECE: u64 = 1 << 20;

impl Fingerprint {
    /// The fingerprint of the file at `path` read as a `shape` matrix with
    /// `nnz` stored values.
    pub fn of(path: &Path, shape: (usize, usize), nnz: u64) -> Result<Self, IoError> {
        let canonical = std::fs::canonicalize(path).map_err(|e| IoError::os(path, e))?;
        let meta = std::fs::metadata(path).map_err(|e| IoError::os(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let size = meta.len();
        let mut file = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
        let mut hash = FNV_OFFSET;
        let mut buf = vec![0u8; PIECE as usize];
        for offset in [0, size / 2, size.saturating_sub(PIECE)] {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| IoError::os(path, e))?;
            let n = read_up_to(&mut file, &mut buf).map_err(|e| IoError::os(path, e))?;
            hash = fnv1a(hash, &buf[..n]);
        }
        Ok(Self {
            path: canonical.display().to_string(),
            size,
            mtime_ns,
            shape,
            nnz,
            checksum: hash,
        })
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("path", self.path.clone()),
            ("size", self.size.to_string()),
            ("mtime_ns", self.mtime_ns.to_string()),
            ("shape", format!("{} × {}", self.shape.0, self.shape.1)),
            ("nnz", self.nnz.to_string()),
            ("checksum", format!("{:016x}", self.checksum)),
        ]
    }
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// What a checkpoint says of the command that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    /// The input.
    pub input: Fingerprint,
    /// Every parameter that shapes the iterates, by name, as text.
    pub params: Vec<(String, String)>,
}

impl CheckpointMeta {
    /// The value of the parameter `name`, if recorded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What differs between this (the checkpoint's) and `now` (the
    /// command's), one line each; empty when they match.
    pub fn differences(&self, now: &CheckpointMeta) -> Vec<String> {
        let mut out = Vec::new();
        for ((name, was), (_, is)) in self.input.fields().into_iter().zip(now.input.fields()) {
            if was != is {
                out.push(format!("input {name}: checkpoint {was}, now {is}"));
            }
        }
        for (name, was) in &self.params {
            let is = now
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map_or("(not given)", |(_, v)| v.as_str());
            if was != is {
                out.push(format!("{name}: checkpoint {was}, now {is}"));
            }
        }
        for (name, is) in &now.params {
            if !self.params.iter().any(|(n, _)| n == name) {
                out.push(format!("{name}: not in the checkpoint, now {is}"));
            }
        }
        out
    }
}

/// The row sample and its components, as a checkpoint keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleState {
    /// Sampled rows.
    pub rows: Vec<u64>,
    /// Their principal component scores.
    pub pca: Array2<f32>,
    /// Fraction of variance per component.
    pub variance_ratio: Vec<f64>,
}

/// A checkpoint read back: its metadata, the state to resume from, the
/// sample; W is read into the runs' stores by [`restore_w`].
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    /// The checkpoint's file.
    pub path: PathBuf,
    /// What it says of its command.
    pub meta: CheckpointMeta,
    /// The state after its iteration.
    pub resume: Resume,
    /// The row sample's components.
    pub sample: Option<SampleState>,
}

/// A kind of state file nmflow writes (checkpoints, a sweep's run
/// records): the `format` and `version` attributes that identify it, and
/// the command's metadata beside them.
pub(crate) struct StateFormat {
    /// The `format` attribute.
    pub name: &'static str,
    /// The `version` attribute.
    pub version: i64,
    /// What it is, for messages.
    pub what: &'static str,
}

const CHECKPOINT: StateFormat = StateFormat {
    name: "nmflow-checkpoint",
    version: 1,
    what: "nmflow checkpoint",
};

/// Writes the identifying attributes of `format` and the command's `meta`.
pub(crate) fn write_header(
    file: &File,
    format: &StateFormat,
    meta: &CheckpointMeta,
) -> hdf5::Result<()> {
    crate::elements::set_str_attr(file, "format", format.name)?;
    file.new_attr::<i64>()
        .create("version")?
        .write_scalar(&format.version)?;
    write_meta(file, meta)
}

/// Checks that `file` is a state file of `format` and reads the command's
/// metadata it holds.
pub(crate) fn read_header(
    path: &Path,
    file: &File,
    format: &StateFormat,
) -> Result<CheckpointMeta, IoError> {
    let name = crate::strings::string_attr(file, "format");
    let version = file
        .attr("version")
        .and_then(|a| a.read_scalar::<i64>())
        .ok();
    if name.as_deref() != Some(format.name) || version != Some(format.version) {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: "/".into(),
            reason: format!("not an {} of version {}", format.what, format.version),
        });
    }
    read_meta(path, file)
}
/// Rows of W copied at a time.
const COPY_ROWS: usize = 1 << 16;

/// Writes the checkpoint `checkpoint` (W from `runs`' stores) to `path` by
/// the write protocol, replacing the previous one.
pub fn write_checkpoint(
    path: &Path,
    meta: &CheckpointMeta,
    checkpoint: &Checkpoint<'_>,
    runs: &mut [Run<'_>],
    sample: Option<&SampleState>,
) -> Result<(), IoError> {
    atomic::write_beside(path, Overwrite::Replace, |tmp| {
        write_file(tmp, meta, checkpoint, runs, sample)
    })
    .map_err(|e| match e {
        WriteError::Write(e) => IoError::hdf5(path, "writing the checkpoint", e),
        WriteError::Io(e) => e,
    })
}

fn write_file(
    tmp: &Path,
    meta: &CheckpointMeta,
    checkpoint: &Checkpoint<'_>,
    runs: &mut [Run<'_>],
    sample: Option<&SampleState>,
) -> hdf5::Result<()> {
    let file = File::create(tmp)?;
    write_header(&file, &CHECKPOINT, meta)?;
    file.new_attr::<u64>()
        .create("iteration")?
        .write_scalar(&(checkpoint.iteration as u64))?;
    let shared = file.create_group("shared")?;
    let Shared {
        col_scale,
        x_norm_sq,
        x_sum,
        integer_valued,
        n_stored,
        prepare_seconds,
    } = checkpoint.shared;
    shared
        .new_dataset_builder()
        .with_data(col_scale.as_slice())
        .create("col_scale")?;
    f64_attr(&shared, "x_norm_sq", *x_norm_sq)?;
    f64_attr(&shared, "x_sum", *x_sum)?;
    f64_attr(&shared, "prepare_seconds", *prepare_seconds)?;
    shared
        .new_attr::<u64>()
        .create("n_stored")?
        .write_scalar(n_stored)?;
    shared
        .new_attr::<u8>()
        .create("integer_valued")?
        .write_scalar(&u8::from(*integer_valued))?;
    if let Some(sample) = sample {
        crate::output::write_sample(
            &file,
            &crate::output::SampleOutput {
                rows: &sample.rows,
                pca: sample.pca.view(),
                variance_ratio: &sample.variance_ratio,
            },
        )?;
    }
    let all = file.create_group("runs")?;
    for (idx, (snapshot, run)) in checkpoint.runs.iter().zip(runs.iter_mut()).enumerate() {
        let group = all.create_group(&idx.to_string())?;
        crate::output::write_factor_rows(&group, "W", run.w)?;
        group
            .new_dataset_builder()
            .with_data(&snapshot.h)
            .create("H")?;
        group
            .new_dataset_builder()
            .with_data(&snapshot.xtw)
            .create("xtw")?;
        group
            .new_dataset_builder()
            .with_data(&snapshot.wtw)
            .create("wtw")?;
        if !snapshot.w_sum.is_empty() {
            group
                .new_dataset_builder()
                .with_data(snapshot.w_sum.as_slice())
                .create("w_sum")?;
        }
        group
            .new_dataset_builder()
            .with_data(snapshot.rel_error.as_slice())
            .create("rel_error")?;
        group
            .new_dataset_builder()
            .with_data(snapshot.iteration_seconds.as_slice())
            .create("iteration_seconds")?;
        f64_attr(&group, "init_rel_error", snapshot.init_rel_error)?;
        f64_attr(&group, "checked_rel_error", snapshot.checked_rel_error)?;
        group
            .new_attr::<u8>()
            .create("converged")?
            .write_scalar(&u8::from(snapshot.converged))?;
        group
            .new_attr::<u8>()
            .create("done")?
            .write_scalar(&u8::from(snapshot.done))?;
    }
    file.close()
}

/// Writes `meta` as attributes `input:NAME` and `param:NAME` of `loc`.
fn write_meta(loc: &hdf5::Location, meta: &CheckpointMeta) -> hdf5::Result<()> {
    for (name, value) in meta.input.fields() {
        crate::elements::set_str_attr(loc, &format!("input:{name}"), &value)?;
    }
    for (name, value) in &meta.params {
        crate::elements::set_str_attr(loc, &format!("param:{name}"), value)?;
    }
    Ok(())
}

fn f64_attr(loc: &hdf5::Location, name: &str, value: f64) -> hdf5::Result<()> {
    loc.new_attr::<f64>().create(name)?.write_scalar(&value)
}

/// Reads the checkpoint at `path` (W apart: see [`restore_w`]). A file that
/// is not a checkpoint of this version is refused.
pub fn read_checkpoint(path: &Path) -> Result<LoadedCheckpoint, IoError> {
    let h5 = |what: &str| {
        let what = what.to_owned();
        move |e| IoError::hdf5(path, what.clone(), e)
    };
    let file = File::open(path).map_err(h5("opening the checkpoint"))?;
    let meta = read_header(path, &file, &CHECKPOINT)?;
    let iteration = file
        .attr("iteration")
        .and_then(|a| a.read_scalar::<u64>())
        .map_err(h5("reading the iteration"))? as usize;
    let fingerprint = meta.input.clone();
    let shared_group = file.group("shared").map_err(h5("shared"))?;
    let attr_f64 = |g: &Group, name: &str| -> Result<f64, IoError> {
        g.attr(name)
            .and_then(|a| a.read_scalar::<f64>())
            .map_err(|e| IoError::hdf5(path, format!("{}/{name}", g.name()), e))
    };
    let attr_u8 = |g: &Group, name: &str| -> Result<bool, IoError> {
        g.attr(name)
            .and_then(|a| a.read_scalar::<u8>())
            .map(|v| v != 0)
            .map_err(|e| IoError::hdf5(path, format!("{}/{name}", g.name()), e))
    };
    let shared = Shared {
        col_scale: shared_group
            .dataset("col_scale")
            .and_then(|d| d.read_raw())
            .map_err(h5("shared/col_scale"))?,
        x_norm_sq: attr_f64(&shared_group, "x_norm_sq")?,
        // Checkpoints of the Frobenius loss need no Σ X_s; older ones lack it.
        x_sum: attr_f64(&shared_group, "x_sum").unwrap_or(f64::NAN),
        integer_valued: attr_u8(&shared_group, "integer_valued")?,
        n_stored: shared_group
            .attr("n_stored")
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(h5("shared/n_stored"))?,
        prepare_seconds: attr_f64(&shared_group, "prepare_seconds")?,
    };
    if shared.col_scale.len() != fingerprint.shape.1 {
        return Err(IoError::malformed(
            path,
            "shared/col_scale",
            "does not hold one divisor per column",
        ));
    }
    let sample = match file.group("sample") {
        Ok(group) => Some(SampleState {
            rows: group
                .dataset("rows")
                .and_then(|d| d.read_raw())
                .map_err(h5("sample/rows"))?,
            pca: group
                .dataset("pca")
                .and_then(|d| d.read_2d())
                .map_err(h5("sample/pca"))?,
            variance_ratio: group
                .dataset("pca_variance_ratio")
                .and_then(|d| d.read_raw())
                .map_err(h5("sample/pca_variance_ratio"))?,
        }),
        Err(_) => None,
    };
    let runs_group = file.group("runs").map_err(h5("runs"))?;
    let n_runs = runs_group.member_names().map_err(h5("runs"))?.len();
    let mut runs = Vec::with_capacity(n_runs);
    for idx in 0..n_runs {
        let name = format!("runs/{idx}");
        let g = file.group(&name).map_err(h5(&name))?;
        let read2 = |d: &str| -> Result<Array2<f64>, IoError> {
            g.dataset(d)
                .and_then(|d| d.read_2d())
                .map_err(|e| IoError::hdf5(path, format!("{name}/{d}"), e))
        };
        let read1 = |d: &str| -> Result<Vec<f64>, IoError> {
            g.dataset(d)
                .and_then(|d| d.read_raw())
                .map_err(|e| IoError::hdf5(path, format!("{name}/{d}"), e))
        };
        let snapshot = RunSnapshot {
            h: g.dataset("H")
                .and_then(|d| d.read_2d())
                .map_err(|e| IoError::hdf5(path, format!("{name}/H"), e))?,
            xtw: read2("xtw")?,
            wtw: read2("wtw")?,
            w_sum: if g.link_exists("w_sum") {
                read1("w_sum")?
            } else {
                Vec::new()
            },
            init_rel_error: attr_f64(&g, "init_rel_error")?,
            checked_rel_error: attr_f64(&g, "checked_rel_error")?,
            rel_error: read1("rel_error")?,
            iteration_seconds: read1("iteration_seconds")?,
            converged: attr_u8(&g, "converged")?,
            done: attr_u8(&g, "done")?,
        };
        let k = snapshot.h.nrows();
        let consistent = snapshot.h.ncols() == fingerprint.shape.1
            && snapshot.xtw.dim() == (fingerprint.shape.1, k)
            && snapshot.wtw.dim() == (k, k)
            && (snapshot.w_sum.is_empty() || snapshot.w_sum.len() == k)
            && snapshot.rel_error.len() <= iteration
            && snapshot.h.iter().all(|v| v.is_finite())
            && snapshot.rel_error.iter().all(|v| v.is_finite());
        if !consistent {
            return Err(IoError::malformed(
                path,
                name,
                "the state of this run does not fit the matrix or holds non-finite values",
            ));
        }
        runs.push(snapshot);
    }
    Ok(LoadedCheckpoint {
        path: path.to_path_buf(),
        meta,
        resume: Resume {
            iteration,
            shared,
            runs,
        },
        sample,
    })
}

/// Reads the attributes [`write_meta`] wrote.
fn read_meta(path: &Path, loc: &hdf5::Location) -> Result<CheckpointMeta, IoError> {
    let mut params = Vec::new();
    let mut input = std::collections::BTreeMap::new();
    let names = loc
        .attr_names()
        .map_err(|e| IoError::hdf5(path, "listing attributes", e))?;
    for name in names {
        let value = crate::strings::string_attr(loc, &name);
        if let (Some(p), Some(v)) = (name.strip_prefix("param:"), value.clone()) {
            params.push((p.to_owned(), v));
        } else if let (Some(i), Some(v)) = (name.strip_prefix("input:"), value) {
            input.insert(i.to_owned(), v);
        }
    }
    let field = |name: &str| -> Result<String, IoError> {
        input
            .get(name)
            .cloned()
            .ok_or_else(|| IoError::malformed(path, "/", format!("no input:{name} attribute")))
    };
    let number = |name: &str| -> Result<u64, IoError> {
        field(name)?
            .parse()
            .map_err(|_| IoError::malformed(path, "/", format!("input:{name} is not a number")))
    };
    let shape = field("shape")?
        .split_once(" × ")
        .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
        .ok_or_else(|| IoError::malformed(path, "/", "input:shape is not rows × columns"))?;
    let input = Fingerprint {
        path: field("path")?,
        size: number("size")?,
        mtime_ns: field("mtime_ns")?
            .parse()
            .map_err(|_| IoError::malformed(path, "/", "input:mtime_ns is not a number"))?,
        shape,
        nnz: number("nnz")?,
        checksum: u64::from_str_radix(&field("checksum")?, 16)
            .map_err(|_| IoError::malformed(path, "/", "input:checksum is not hexadecimal"))?,
    };
    Ok(CheckpointMeta { input, params })
}

/// Copies W of run `run_idx` of the checkpoint at `path` into `store`,
/// block by block.
pub fn restore_w(path: &Path, run_idx: usize, store: &mut dyn FactorStore) -> Result<(), IoError> {
    let name = format!("runs/{run_idx}/W");
    let err = |e| IoError::hdf5(path, format!("reading {name}"), e);
    let file = File::open(path).map_err(err)?;
    let ds = file.dataset(&name).map_err(err)?;
    let (n_rows, k) = store.shape();
    if ds.shape() != [n_rows, k] {
        return Err(IoError::malformed(
            path,
            &name,
            format!("has shape {:?}, expected [{n_rows}, {k}]", ds.shape()),
        ));
    }
    for start in (0..n_rows).step_by(COPY_ROWS) {
        let rows = start..(start + COPY_ROWS).min(n_rows);
        let block: Array2<f32> = ds.read_slice(s![rows.clone(), ..]).map_err(err)?;
        if !block.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return Err(IoError::malformed(
                path,
                &name,
                "holds a negative or non-finite value",
            ));
        }
        store.rows_mut(rows.clone()).assign(&block);
        store.release(rows);
    }
    Ok(())
}
