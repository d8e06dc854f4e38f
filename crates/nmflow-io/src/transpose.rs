//! Out-of-core transposition into a temporary CSR file, for inputs whose
//! stored axis is not the cell axis: anndata's `csc_matrix` and loom's
//! genes × cells matrix.
//!
//! Two passes over the stored matrix, gene by gene: the first counts the
//! entries of every cell, the second writes each entry at its cell's next
//! free slot of a memory-mapped temporary file (column indices, then
//! values). Genes are visited in order, so every cell's entries come out
//! sorted by gene. Memory: two u64 per cell plus one stored block; the
//! temporary file holds 8 bytes per non-zero and is deleted when the source
//! is dropped (it is unlinked at creation).

use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use ndarray::s;
use nmflow_core::{CsrBlock, RowBlock, RowSource, SourceError};

use crate::csr_source::{BLOCK_NNZ, child, sparse_block_rows};
use crate::error::IoError;

/// A CSR matrix in a memory-mapped temporary file.
#[derive(Debug)]
pub(crate) struct MmapCsrSource {
    map: Mmap,
    indptr: Vec<u64>,
    n_rows: usize,
    n_cols: usize,
    block_indptr: Vec<usize>,
    /// Entries of the block handed out last, released at the next.
    last: Option<Range<usize>>,
    /// Blocks' pages are not released ([`RowSource::keep_resident`]).
    resident: bool,
}

/// One stored entry, by gene (the stored major axis).
type Visit<'a> = dyn FnMut(u32, usize, f32) -> Result<(), IoError> + 'a;

/// Builds the transposed CSR from `visit`, which calls its argument with
/// (gene, cell, value) for every non-zero, genes in increasing order, and
/// must produce the same entries each time it is called.
fn build(
    n_cells: usize,
    n_genes: usize,
    tmp_dir: &Path,
    visit: &mut dyn FnMut(&mut Visit<'_>) -> Result<(), IoError>,
) -> Result<MmapCsrSource, IoError> {
    let mut counts = vec![0u64; n_cells + 1];
    visit(&mut |_, cell, _| {
        counts[cell + 1] += 1;
        Ok(())
    })?;
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    let indptr = counts;
    let nnz = indptr[n_cells] as usize;
    let file = tempfile::tempfile_in(tmp_dir).map_err(|e| IoError::os(tmp_dir, e))?;
    crate::atomic::reserve(&file, (nnz.max(1) * 8) as u64).map_err(|e| IoError::os(tmp_dir, e))?;
    // SAFETY: the file is an unlinked temporary file only this process can
    // reach, so nothing else changes it while it is mapped.
    let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| IoError::os(tmp_dir, e))?;
    {
        // SAFETY: u32 and f32 accept every bit pattern; align_to_mut only
        // yields correctly aligned middles (the map is page-aligned).
        let (prefix, words, _) = unsafe { map.align_to_mut::<u32>() };
        if !prefix.is_empty() || words.len() < 2 * nnz {
            return Err(IoError::os(
                tmp_dir,
                std::io::Error::other("the temporary map is misaligned"),
            ));
        }
        let (cols, vals) = words.split_at_mut(nnz);
        let mut cursor: Vec<u64> = indptr[..n_cells].to_vec();
        visit(&mut |gene, cell, value| {
            let pos = cursor[cell] as usize;
            cursor[cell] += 1;
            cols[pos] = gene;
            vals[pos] = value.to_bits();
            Ok(())
        })?;
    }
    let map = map.make_read_only().map_err(|e| IoError::os(tmp_dir, e))?;
    Ok(MmapCsrSource {
        map,
        indptr,
        n_rows: n_cells,
        n_cols: n_genes,
        block_indptr: Vec::new(),
        last: None,
        resident: false,
    })
}

/// Transposes anndata's `csc_matrix` group (`n_obs × n_var`, compressed by
/// gene) into a CSR matrix of cells.
pub(crate) fn transpose_csc(
    path: &Path,
    group: &hdf5::Group,
    (n_obs, n_var): (usize, usize),
    tmp_dir: &Path,
) -> Result<MmapCsrSource, IoError> {
    let name = group.name();
    let data = child(path, group, "data")?;
    let indices = child(path, group, "indices")?;
    let indptr: Vec<i64> = child(path, group, "indptr")?
        .read_raw::<i64>()
        .map_err(|e| IoError::hdf5(path, format!("reading '{name}/indptr'"), e))?;
    let nnz = data.size();
    if indices.size() != nnz {
        return Err(IoError::malformed(
            path,
            &name,
            format!("data has {nnz} entries but indices has {}", indices.size()),
        ));
    }
    if indptr.len() != n_var + 1 || indptr[0] != 0 || indptr[n_var] as usize != nnz {
        return Err(IoError::malformed(
            path,
            &name,
            format!(
                "indptr must have {} entries from 0 to nnz = {nnz}",
                n_var + 1
            ),
        ));
    }
    if let Some(gene) = indptr.windows(2).position(|p| p[1] < p[0]) {
        return Err(IoError::malformed(
            path,
            &name,
            format!("indptr is not monotone at column {gene}"),
        ));
    }
    let path_buf: PathBuf = path.to_path_buf();
    let mut visit = |f: &mut Visit<'_>| -> Result<(), IoError> {
        let mut gene = 0usize;
        for start in (0..nnz).step_by(BLOCK_NNZ) {
            let end = (start + BLOCK_NNZ).min(nnz);
            let vals = data
                .read_slice_1d::<f32, _>(s![start..end])
                .map_err(|e| IoError::hdf5(&path_buf, format!("reading '{name}/data'"), e))?;
            let rows = indices
                .read_slice_1d::<i64, _>(s![start..end])
                .map_err(|e| IoError::hdf5(&path_buf, format!("reading '{name}/indices'"), e))?;
            for (offset, (&row, &value)) in rows.iter().zip(vals.iter()).enumerate() {
                let pos = start + offset;
                while indptr[gene + 1] as usize <= pos {
                    gene += 1;
                }
                if row < 0 || row as usize >= n_obs {
                    return Err(IoError::malformed(
                        &path_buf,
                        &name,
                        format!(
                            "row index {row} out of range in column {gene} (the matrix has {n_obs} rows)"
                        ),
                    ));
                }
                if value != 0.0 {
                    f(gene as u32, row as usize, value)?;
                }
            }
        }
        Ok(())
    };
    build(n_obs, n_var, tmp_dir, &mut visit)
}

/// Transposes a dense `n_genes × n_cells` dataset (loom's `/matrix`) into
/// a CSR matrix of cells, reading blocks of whole chunk rows.
pub(crate) fn transpose_dense(
    path: &Path,
    ds: &hdf5::Dataset,
    tmp_dir: &Path,
) -> Result<MmapCsrSource, IoError> {
    let shape = ds.shape();
    let (n_genes, n_cells) = (shape[0], shape[1]);
    let chunk_rows = ds
        .chunk()
        .and_then(|c| c.first().copied())
        .unwrap_or(64)
        .max(1);
    let rows_per_read = ((BLOCK_NNZ / n_cells.max(1)).max(1)).div_ceil(chunk_rows) * chunk_rows;
    let name = ds.name();
    let mut visit = |f: &mut Visit<'_>| -> Result<(), IoError> {
        for start in (0..n_genes).step_by(rows_per_read) {
            let end = (start + rows_per_read).min(n_genes);
            let block = ds
                .read_slice_2d::<f32, _>(s![start..end, ..])
                .map_err(|e| IoError::hdf5(path, format!("reading '{name}'"), e))?;
            for (offset, row) in block.rows().into_iter().enumerate() {
                for (cell, &value) in row.iter().enumerate() {
                    if value != 0.0 {
                        f((start + offset) as u32, cell, value)?;
                    }
                }
            }
        }
        Ok(())
    };
    build(n_cells, n_genes, tmp_dir, &mut visit)
}

impl MmapCsrSource {
    /// Stored entries.
    pub(crate) fn nnz(&self) -> u64 {
        self.indptr.last().copied().unwrap_or(0)
    }

    fn arrays(&self) -> (&[u32], &[f32]) {
        let nnz = self.nnz() as usize;
        // SAFETY: as in `build`: plain-old-data types, aligned middles only.
        let (_, words, _) = unsafe { self.map.align_to::<u32>() };
        let (_, floats, _) = unsafe { self.map[nnz * 4..].align_to::<f32>() };
        (&words[..nnz], &floats[..nnz])
    }
}

impl RowSource for MmapCsrSource {
    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn nnz_hint(&self) -> Option<u64> {
        Some(self.nnz())
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        Some(sparse_block_rows(self.nnz(), self.n_rows))
    }

    fn keep_resident(&mut self) {
        self.resident = true;
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let (a, b) = (
            self.indptr[rows.start] as usize,
            self.indptr[rows.end] as usize,
        );
        let nnz = self.nnz() as usize;
        let released = if self.resident {
            None
        } else {
            self.last.replace(a..b)
        };
        if let Some(last) = released {
            for range in [
                4 * last.start..4 * last.end,
                4 * (nnz + last.start)..4 * (nnz + last.end),
            ] {
                // SAFETY: the previous block's view ended with the `&mut
                // self` borrow of this call.
                unsafe { crate::cache::release_pages(&self.map, range) };
            }
        }
        self.block_indptr.clear();
        self.block_indptr.extend(
            self.indptr[rows.start..=rows.end]
                .iter()
                .map(|&p| p as usize - a),
        );
        let (cols, vals) = self.arrays();
        Ok(RowBlock::Csr(CsrBlock {
            indptr: &self.block_indptr,
            indices: &cols[a..b],
            data: &vals[a..b],
            n_cols: self.n_cols,
            columns: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_transposes_and_sorts_by_gene() {
        // Genes × cells: gene 0 = [0, 2, 0], gene 1 = [1, 0, 3].
        let entries = [(0u32, 1usize, 2.0f32), (1, 0, 1.0), (1, 2, 3.0)];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut visit = |f: &mut Visit<'_>| -> Result<(), IoError> {
            for &(g, c, v) in &entries {
                f(g, c, v)?;
            }
            Ok(())
        };
        let mut csr = build(3, 2, dir.path(), &mut visit).expect("build");
        assert_eq!(csr.nnz(), 3);
        let (cols, vals) = csr.arrays();
        assert_eq!(cols, &[1, 0, 1]);
        assert_eq!(vals, &[1.0, 2.0, 3.0]);
        let RowBlock::Csr(block) = csr.block(1..3).expect("block") else {
            panic!("csr")
        };
        assert_eq!(block.indptr, &[0, 1, 2]);
        assert_eq!(block.indices, &[0, 1]);
    }
}
