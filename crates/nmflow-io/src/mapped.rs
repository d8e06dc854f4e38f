//! Dense matrices used in place from a memory map: `.npy` files and
//! unfiltered HDF5 datasets whose rows lie in the file in order, in a few
//! runs of consecutive rows ([`Extent`]s: one for a contiguous dataset,
//! one per run of adjacent chunks for a dataset chunked in whole rows).
//!
//! A block of little-endian f32 rows within one extent, at a
//! 4-byte-aligned offset, is used in place (zero copy); a block across
//! extents, and every other numeric type (f64, signed and unsigned
//! integers of 1–8 bytes, either byte order), is converted block by block
//! into a buffer. C and Fortran order are both read. The map is advised for
//! sequential access; the pages of a block are released when the next one
//! is asked for and the next block is read ahead, as the block cache does,
//! unless asked to keep them resident ([`RowSource::keep_resident`]).
//!
//! Memory-map contract: the file must not be changed by another process
//! while nmflow reads it (the same contract as every tool that maps its
//! input); nmflow itself opens it read-only.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;
use ndarray::{Array2, ArrayView2, ShapeBuilder};
use nmflow_core::{RowBlock, RowSource, SourceError};

use crate::dtype::Numeric;
use crate::error::IoError;

/// Maps the file at `path` read-only, advised for sequential reading.
pub(crate) fn map_file(path: &Path) -> Result<Mmap, IoError> {
    let file = File::open(path).map_err(|e| IoError::os(path, e))?;
    // SAFETY: the file is opened read-only and the mapping is only read;
    // the module documents that the input must not change while mapped.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| IoError::os(path, e))?;
    #[cfg(unix)]
    {
        // Advice only; failure to give it changes nothing.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}

/// How a matrix's elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elements {
    /// Element type.
    pub dtype: Numeric,
    /// Whether elements are big-endian.
    pub big_endian: bool,
    /// Column-major storage.
    pub fortran_order: bool,
}

impl Elements {
    /// Bytes of a matrix of `shape` (`None` if that overflows).
    pub(crate) fn n_bytes(&self, shape: (usize, usize)) -> Option<usize> {
        shape
            .0
            .checked_mul(shape.1)
            .and_then(|n| n.checked_mul(self.dtype.size()))
    }
}

/// Rows stored one after the other from `offset` of the file, from row
/// `first_row` to the next extent's first row (or the last row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub first_row: usize,
    pub offset: usize,
}

/// A dense matrix read from a memory map.
#[derive(Debug)]
pub(crate) struct MappedMatrix {
    map: Mmap,
    elements: Elements,
    /// Sorted by first row, the first at row 0; a Fortran-order matrix has
    /// one.
    extents: Vec<Extent>,
    n_rows: usize,
    n_cols: usize,
    /// The block height the file's storage favours (an HDF5 dataset's
    /// chunk height), as the source it replaces reported it.
    preferred_rows: Option<usize>,
    buf: Array2<f32>,
    /// Bytes of the block handed out last, released at the next.
    last: Vec<Range<usize>>,
    /// Blocks' pages are not released ([`RowSource::keep_resident`]).
    resident: bool,
}

impl MappedMatrix {
    /// The matrix of `shape` whose `elements` lie in `map` in `extents`
    /// (sorted by first row, the first at row 0, one for Fortran order);
    /// `Err` with the bytes the map holds from an extent's offset on when
    /// it holds fewer than the extent's rows.
    pub(crate) fn new(
        map: Mmap,
        elements: Elements,
        shape: (usize, usize),
        extents: Vec<Extent>,
    ) -> Result<Self, usize> {
        let ordered = extents.first().is_some_and(|e| e.first_row == 0)
            && extents.windows(2).all(|w| w[0].first_row < w[1].first_row)
            && extents.last().is_some_and(|e| e.first_row < shape.0.max(1))
            && (!elements.fortran_order || extents.len() == 1);
        if !ordered {
            return Err(0);
        }
        for (i, extent) in extents.iter().enumerate() {
            let end_row = extents.get(i + 1).map_or(shape.0, |next| next.first_row);
            let available = map.len().saturating_sub(extent.offset);
            match elements.n_bytes((end_row - extent.first_row, shape.1)) {
                Some(n) if n <= available => {}
                _ => return Err(available),
            }
        }
        Ok(Self {
            map,
            elements,
            extents,
            n_rows: shape.0,
            n_cols: shape.1,
            preferred_rows: None,
            buf: Array2::zeros((0, 0)),
            last: Vec::new(),
            resident: false,
        })
    }

    /// The matrix reporting `rows` as its preferred block height.
    pub(crate) fn with_preferred_block_rows(self, rows: Option<usize>) -> Self {
        Self {
            preferred_rows: rows,
            ..self
        }
    }

    fn row_bytes(&self) -> usize {
        self.n_cols * self.elements.dtype.size()
    }

    /// The index of the extent holding `row`.
    fn extent_of(&self, row: usize) -> usize {
        self.extents
            .partition_point(|e| e.first_row <= row)
            .saturating_sub(1)
    }

    /// The last row (+1) of extent `i`.
    fn extent_end(&self, i: usize) -> usize {
        self.extents
            .get(i + 1)
            .map_or(self.n_rows, |next| next.first_row)
    }

    /// The file bytes of `rows` (C order), one range per extent crossed.
    fn byte_ranges(&self, rows: Range<usize>) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        let mut row = rows.start;
        while row < rows.end {
            let i = self.extent_of(row);
            let end = self.extent_end(i).min(rows.end);
            let e = self.extents[i];
            let at = |r: usize| e.offset + (r - e.first_row) * self.row_bytes();
            ranges.push(at(row)..at(end));
            row = end;
        }
        ranges
    }

    /// `rows` as an f32 view in place: little-endian f32 rows within one
    /// extent at an aligned offset.
    fn f32_view(&self, rows: Range<usize>) -> Option<ArrayView2<'_, f32>> {
        if self.elements.dtype != Numeric::Float(4) || self.elements.big_endian {
            return None;
        }
        let i = self.extent_of(rows.start);
        if rows.end > self.extent_end(i) {
            return None;
        }
        let e = self.extents[i];
        let n_ext = self.extent_end(i) - e.first_row;
        let n = n_ext * self.n_cols;
        // SAFETY: every bit pattern is a valid f32; align_to only returns a
        // middle part that is correctly aligned.
        let (prefix, floats, _) = unsafe { self.map[e.offset..e.offset + n * 4].align_to::<f32>() };
        if !prefix.is_empty() || floats.len() < n {
            return None;
        }
        let shape = (n_ext, self.n_cols);
        let view = if self.elements.fortran_order {
            ArrayView2::from_shape(shape.f(), &floats[..n])
        } else {
            ArrayView2::from_shape(shape, &floats[..n])
        };
        let local = rows.start - e.first_row..rows.end - e.first_row;
        view.ok().map(|v| v.slice_move(ndarray::s![local, ..]))
    }

    fn convert_rows(&mut self, rows: Range<usize>) {
        let (n_rows, n_cols) = (self.n_rows, self.n_cols);
        let Elements {
            dtype,
            big_endian,
            fortran_order,
        } = self.elements;
        let size = dtype.size();
        let mut buf = std::mem::replace(&mut self.buf, Array2::zeros((0, 0)));
        if buf.dim() != (rows.len(), n_cols) {
            buf = Array2::zeros((rows.len(), n_cols));
        }
        if fortran_order {
            let data = &self.map[self.extents[0].offset..];
            for (out_row, row_idx) in buf.rows_mut().into_iter().zip(rows) {
                for (col_idx, out) in out_row.into_iter().enumerate() {
                    let idx = col_idx * n_rows + row_idx;
                    *out = decode(&data[idx * size..(idx + 1) * size], dtype, big_endian);
                }
            }
        } else {
            let row_bytes = self.row_bytes();
            let mut out_rows = buf.rows_mut().into_iter();
            for range in self.byte_ranges(rows) {
                for (bytes, mut out_row) in
                    self.map[range].chunks_exact(row_bytes).zip(&mut out_rows)
                {
                    let values = bytes.chunks_exact(size);
                    match out_row.as_slice_mut() {
                        // Little-endian f32 (a block across extents): a copy.
                        Some(out) if dtype == Numeric::Float(4) && !big_endian => {
                            for (o, b) in out.iter_mut().zip(values) {
                                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            }
                        }
                        _ => {
                            for (o, b) in out_row.iter_mut().zip(values) {
                                *o = decode(b, dtype, big_endian);
                            }
                        }
                    }
                }
            }
        }
        self.buf = buf;
    }
}

fn decode(bytes: &[u8], dtype: Numeric, big_endian: bool) -> f32 {
    let mut raw = [0u8; 8];
    let n = bytes.len();
    raw[..n].copy_from_slice(bytes);
    if big_endian {
        raw[..n].reverse();
    }
    match dtype {
        Numeric::Float(4) => f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
        Numeric::Float(_) => f64::from_le_bytes(raw) as f32,
        Numeric::Int(n) => {
            let shift = 64 - 8 * n as u32;
            ((i64::from_le_bytes(raw) << shift) >> shift) as f32
        }
        Numeric::Uint(_) => u64::from_le_bytes(raw) as f32,
    }
}

impl RowSource for MappedMatrix {
    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.preferred_rows
    }

    fn keep_resident(&mut self) {
        self.resident = true;
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        if !self.elements.fortran_order && !self.resident {
            let next = self.byte_ranges(rows.clone());
            for last in std::mem::replace(&mut self.last, next.clone()) {
                // SAFETY: the previous block's view ended with the `&mut
                // self` borrow of this call.
                unsafe { crate::cache::release_pages(&self.map, last) };
            }
            for range in next {
                crate::cache::read_ahead(&self.map, range);
            }
        }
        if self.f32_view(rows.clone()).is_some() {
            let view = self.f32_view(rows).ok_or("the f32 view vanished")?;
            return Ok(RowBlock::Dense(view));
        }
        self.convert_rows(rows);
        Ok(RowBlock::Dense(self.buf.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_width_and_order() {
        assert_eq!(decode(&(-3i16).to_le_bytes(), Numeric::Int(2), false), -3.0);
        assert_eq!(decode(&(-3i16).to_be_bytes(), Numeric::Int(2), true), -3.0);
        assert_eq!(decode(&200u8.to_le_bytes(), Numeric::Uint(1), false), 200.0);
        assert_eq!(decode(&2.5f64.to_be_bytes(), Numeric::Float(8), true), 2.5);
        assert_eq!(decode(&(-7i64).to_le_bytes(), Numeric::Int(8), false), -7.0);
    }
}
