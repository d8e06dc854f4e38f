//! The consensus matrices a sweep keeps for its figures:
//! `DIR/consensus.h5`, written by the write protocol ([`crate::atomic`])
//! beside sweep.json once every run has finished.
//!
//! Layout (HDF5): attributes of `/`: `format` = "nmflow-sweep-consensus",
//! `version` = 1; dataset `rows` (u64): the input rows shown, a subset of
//! the sweep's row sample evenly spaced through it; per k a dataset `kK`
//! (f32, rows × rows): the fraction of k's restarts that put each pair of
//! those rows in the same cluster, with attribute `n_runs`.

use std::path::Path;

use hdf5::File;
use hdf5::types::VarLenUnicode;
use ndarray::Array2;

use crate::atomic::{self, Overwrite, WriteError};
use crate::error::IoError;

const FORMAT: &str = "nmflow-sweep-consensus";
const VERSION: u64 = 1;

/// The consensus of one k over the shown rows.
#[derive(Debug, Clone, PartialEq)]
pub struct KConsensus {
    /// Components.
    pub k: usize,
    /// Restarts counted.
    pub n_runs: u32,
    /// rows × rows, values in [0, 1], ones on the diagonal.
    pub matrix: Array2<f32>,
}

/// The path of the consensus file of the sweep in `dir`.
pub fn consensus_path(dir: &Path) -> std::path::PathBuf {
    dir.join("consensus.h5")
}

/// Writes the consensus file of the sweep in `dir`, replacing one.
pub fn write_consensus(dir: &Path, rows: &[u64], per_k: &[KConsensus]) -> Result<(), IoError> {
    let path = consensus_path(dir);
    atomic::write_beside(&path, Overwrite::Replace, |tmp| {
        let file = File::create(tmp)?;
        let format: VarLenUnicode = FORMAT.parse().map_err(|_| "format name".to_owned())?;
        file.new_attr::<VarLenUnicode>()
            .create("format")?
            .write_scalar(&format)?;
        file.new_attr::<u64>()
            .create("version")?
            .write_scalar(&VERSION)?;
        file.new_dataset_builder().with_data(rows).create("rows")?;
        for c in per_k {
            let d = file
                .new_dataset_builder()
                .chunk(c.matrix.dim())
                .deflate(4)
                .with_data(&c.matrix)
                .create(format!("k{}", c.k).as_str())?;
            d.new_attr::<u32>()
                .create("n_runs")?
                .write_scalar(&c.n_runs)?;
        }
        file.close()
    })
    .map_err(|e| match e {
        WriteError::Write(e) => IoError::hdf5(&path, "writing the consensus matrices", e),
        WriteError::Io(e) => e,
    })
}

/// Reads k's consensus from the sweep in `dir`: the input rows shown and
/// the matrix; `None` when the sweep has no consensus file (written before
/// there was one) or none for k.
pub fn read_consensus(dir: &Path, k: usize) -> Result<Option<(Vec<u64>, KConsensus)>, IoError> {
    let path = consensus_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let path = path.as_path();
    let h5 = |what: &'static str| move |e| IoError::hdf5(path, what, e);
    let file = File::open(path).map_err(h5("opening the consensus file"))?;
    let format = file
        .attr("format")
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .map_err(h5("format"))?;
    if format.as_str() != FORMAT {
        return Err(IoError::malformed(
            path,
            "/",
            format!("not an nmflow consensus file (format {format})"),
        ));
    }
    let name = format!("k{k}");
    if !file.link_exists(&name) {
        return Ok(None);
    }
    let rows: Vec<u64> = file
        .dataset("rows")
        .and_then(|d| d.read_raw())
        .map_err(h5("rows"))?;
    let d = file.dataset(&name).map_err(h5("the consensus of k"))?;
    let matrix: Array2<f32> = d.read_2d().map_err(h5("the consensus of k"))?;
    let n_runs = d
        .attr("n_runs")
        .and_then(|a| a.read_scalar::<u32>())
        .map_err(h5("n_runs"))?;
    let consistent =
        matrix.dim() == (rows.len(), rows.len()) && matrix.iter().all(|v| (0.0..=1.0).contains(v));
    if !consistent {
        return Err(IoError::malformed(
            path,
            &name,
            "not a consensus matrix over the shown rows",
        ));
    }
    Ok(Some((rows, KConsensus { k, n_runs, matrix })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_matrices_are_read_back_as_written() {
        let dir = tempfile::tempdir().expect("dir");
        let rows = vec![3u64, 10, 42];
        let m = ndarray::array![[1.0f32, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]];
        let per_k = vec![KConsensus {
            k: 2,
            n_runs: 4,
            matrix: m.clone(),
        }];
        write_consensus(dir.path(), &rows, &per_k).expect("written");
        let (read_rows, c) = read_consensus(dir.path(), 2)
            .expect("read")
            .expect("k = 2 present");
        assert_eq!(read_rows, rows);
        assert_eq!(c, per_k[0]);
        assert!(read_consensus(dir.path(), 3).expect("read").is_none());
        let empty = tempfile::tempdir().expect("dir");
        assert!(read_consensus(empty.path(), 2).expect("read").is_none());
    }

    #[test]
    fn a_damaged_consensus_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(consensus_path(dir.path()), b"not hdf5").expect("write");
        let e = read_consensus(dir.path(), 2).expect_err("damaged");
        assert!(e.to_string().contains("consensus.h5"), "{e}");
    }
}
