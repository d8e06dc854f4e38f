//! A block-aligned, uncompressed copy of the input in a temporary file,
//! written during the first pass and memory-mapped for every later one.
//!
//! The first pass reads the input as usual and appends each block, as
//! nmflow uses it (dense f32 rows, or CSR: u64 offsets, u32 column indices,
//! f32 values), to an unlinked temporary file. A sparse block is also
//! written column by column when asked ([`CachedSource::new`]): the
//! block's [`ColumnOrder`] (a counting sort, once, in the first pass) and
//! its values in that order, served as [`CsrBlock::columns`], so that
//! `X_bᵀW_b` gathers rows of W per column instead of scattering. When the engine normalises
//! rows ([`RowSource::normalization`], told before the first pass), the
//! copy holds the normalised values the engine hands over
//! ([`RowSource::keep_normalized`]: a block's structure is written when it
//! is served, its values when they arrive) and the passes served from it
//! say so ([`RowSource::served_normalized`]). Later passes hand out views of the
//! mapped file: no decompression, no conversion, no normalisation, no copy. The pages of
//! a block are released (`MADV_DONTNEED`) when the next block is asked for
//! (unless the caller asks to keep them, [`RowSource::keep_resident`]),
//! and the kernel is asked to read the next block ahead (`MADV_WILLNEED`),
//! so resident memory stays about one block while reading overlaps
//! computing.
//!
//! The passes follow the pass contract ([`RowSource::begin_pass`]): the
//! first pass begun is the one cached; a later pass whose blocks are the
//! cached ones is served from the map, any other is read from the input
//! again (and passed on to it, so a read-ahead below follows it).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use ndarray::ArrayView2;
use nmflow_core::{
    ColumnOrder, CscBlock, CsrBlock, Normalize, NormalizedCopy, RowBlock, RowSource, SourceError,
};

use crate::error::IoError;

#[derive(Debug, Clone)]
enum Layout {
    /// Rows × n_cols f32 at `offset`.
    Dense { offset: usize },
    /// `rows + 1` u64 offsets, then nnz u32 indices; with `columns`, the
    /// column copy's structure: `n_cols + 1` u64 offsets, nnz u32 rows;
    /// then nnz f32 values, and with `columns` the nnz values in column
    /// order (each part 8-byte aligned). The values come last because a
    /// normalised copy receives them after the structure.
    Csr {
        offset: usize,
        nnz: usize,
        columns: bool,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    rows: Range<usize>,
    layout: Layout,
    bytes: Range<usize>,
}

#[derive(Debug)]
enum State {
    Filling {
        writer: BufWriter<File>,
        written: usize,
    },
    Ready {
        map: Mmap,
    },
    /// The first pass could not be cached: every pass reads the input.
    Off,
}

/// Where the blocks of the current pass come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// No pass begun yet.
    Nothing,
    /// The input, written to the cache as read (the first pass).
    Filling,
    /// The map.
    Map,
    /// The input (another block plan, or no cache).
    Input,
}

/// A row source that caches its input in a memory-mapped temporary file.
pub struct CachedSource {
    inner: Box<dyn RowSource + Send>,
    dir: PathBuf,
    file: File,
    state: State,
    entries: Vec<Entry>,
    next_row: usize,
    released: Option<Range<usize>>,
    serving: Serving,
    /// The normalisation the copy is written with (the engine's, as told
    /// before the first pass).
    normalize: Normalize,
    /// The block whose normalised values the engine is still to hand over
    /// ([`RowSource::keep_normalized`]): its rows and number of values.
    awaiting: Option<(Range<usize>, usize)>,
    /// Whether every raw value of the copy was a whole number (as the
    /// engine says when it hands over a block's normalised values).
    raw_integer: bool,
    /// Whether sparse blocks get a column copy ([`CsrBlock::columns`]).
    with_columns: bool,
    /// The column order of the block whose values are awaited.
    awaiting_order: Option<ColumnOrder>,
    /// Served blocks' pages are not released ([`RowSource::keep_resident`]).
    resident: bool,
}

impl std::fmt::Debug for CachedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSource")
            .field("dir", &self.dir)
            .field("state", &self.state)
            .field("blocks", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The bytes of a slice of plain numbers, in this machine's byte order (the
/// cache is read back by the same process). `Pod` guarantees there is no
/// padding to expose.
fn bytes_of<T: bytemuck::Pod>(values: &[T]) -> &[u8] {
    bytemuck::cast_slice(values)
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl CachedSource {
    /// Wraps `inner`, caching into a temporary file in `dir`; sparse blocks
    /// are also kept column by column when `with_columns` (the space
    /// [`nmflow_core::plan::cache_bytes`] counts).
    pub fn new(
        inner: Box<dyn RowSource + Send>,
        dir: &Path,
        with_columns: bool,
    ) -> Result<Self, IoError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| IoError::os(dir, e))?;
        let writer =
            BufWriter::with_capacity(1 << 20, file.try_clone().map_err(|e| IoError::os(dir, e))?);
        Ok(Self {
            inner,
            dir: dir.to_path_buf(),
            file,
            state: State::Filling { writer, written: 0 },
            entries: Vec::new(),
            next_row: 0,
            released: None,
            serving: Serving::Nothing,
            normalize: Normalize::None,
            awaiting: None,
            raw_integer: true,
            with_columns,
            awaiting_order: None,
            resident: false,
        })
    }

    /// Bytes the cache holds on disk.
    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.entries.last().map_or(0, |e| e.bytes.end)
    }

    /// Appends `block` to the file: its values too when `with_values`,
    /// else only its structure (a CSR block's offsets and indices), the
    /// values to follow with [`CachedSource::append_values`].
    fn append(
        writer: &mut BufWriter<File>,
        written: &mut usize,
        block: &RowBlock<'_>,
        with_values: bool,
        order: Option<&ColumnOrder>,
    ) -> std::io::Result<Layout> {
        Self::pad(writer, written)?;
        let offset = *written;
        match block {
            RowBlock::Dense(x) => {
                if with_values {
                    for row in x.rows() {
                        match row.as_slice() {
                            Some(values) => writer.write_all(bytes_of(values))?,
                            None => {
                                for v in row {
                                    writer.write_all(&v.to_le_bytes())?;
                                }
                            }
                        }
                    }
                    *written += 4 * x.len();
                }
                Ok(Layout::Dense { offset })
            }
            RowBlock::Csr(x) => {
                let indptr: Vec<u64> = x.indptr.iter().map(|&p| p as u64).collect();
                writer.write_all(bytes_of(&indptr))?;
                *written += 8 * x.indptr.len();
                writer.write_all(bytes_of(x.indices))?;
                *written += 4 * x.indices.len();
                Self::pad(writer, written)?;
                if let Some(order) = order {
                    let col_ptr: Vec<u64> = order.col_ptr.iter().map(|&p| p as u64).collect();
                    writer.write_all(bytes_of(&col_ptr))?;
                    *written += 8 * col_ptr.len();
                    writer.write_all(bytes_of(&order.rows))?;
                    *written += 4 * order.rows.len();
                    Self::pad(writer, written)?;
                }
                if with_values {
                    Self::append_values(writer, written, x.data, order)?;
                }
                Ok(Layout::Csr {
                    offset,
                    nnz: x.data.len(),
                    columns: order.is_some(),
                })
            }
        }
    }

    /// Appends a block's values (after its structure), then, with its
    /// column order, the same values column by column.
    fn append_values(
        writer: &mut BufWriter<File>,
        written: &mut usize,
        values: &[f32],
        order: Option<&ColumnOrder>,
    ) -> std::io::Result<()> {
        writer.write_all(bytes_of(values))?;
        *written += 4 * values.len();
        if let Some(order) = order {
            writer.write_all(bytes_of(&order.values(values)))?;
            *written += 4 * values.len();
        }
        Ok(())
    }

    /// Zero bytes up to the next multiple of 8.
    fn pad(writer: &mut BufWriter<File>, written: &mut usize) -> std::io::Result<()> {
        let target = align8(*written);
        writer.write_all(&[0u8; 8][..target - *written])?;
        *written = target;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let State::Filling { writer, .. } = &mut self.state {
            writer.flush()?;
            // SAFETY: the file is an unlinked temporary file only this
            // process can reach; nothing changes it while it is mapped.
            let map = unsafe { Mmap::map(&self.file)? };
            self.state = State::Ready { map };
            // Later passes are served from the map: the reader's buffers go.
            self.inner.done_reading();
        }
        Ok(())
    }

    fn release_previous(&mut self, next: &Entry) {
        if let State::Ready { map } = &self.state {
            if let Some(range) = self.released.take() {
                // SAFETY: no view of the previous block is alive: `block`
                // takes `&mut self`, which ends the previous block's borrow.
                unsafe { release_pages(map, range) };
            }
            let _ = map.advise_range(
                memmap2::Advice::WillNeed,
                next.bytes.start / 4096 * 4096,
                next.bytes.len(),
            );
        }
    }

    fn serve<'a>(map: &'a Mmap, entry: &Entry, n_cols: usize) -> Option<RowBlock<'a>> {
        let n_rows = entry.rows.len();
        match entry.layout {
            Layout::Dense { offset } => {
                // SAFETY: f32 accepts every bit pattern; align_to only yields
                // an aligned middle.
                let (pre, floats, _) =
                    unsafe { map[offset..offset + 4 * n_rows * n_cols].align_to::<f32>() };
                if !pre.is_empty() {
                    return None;
                }
                ArrayView2::from_shape((n_rows, n_cols), floats)
                    .ok()
                    .map(RowBlock::Dense)
            }
            Layout::Csr {
                offset,
                nnz,
                columns,
            } => {
                let ptr_bytes = 8 * (n_rows + 1);
                let idx_start = offset + ptr_bytes;
                let col_start = align8(idx_start + 4 * nnz);
                let col_rows_start = col_start + 8 * (n_cols + 1);
                let data_start = if columns {
                    align8(col_rows_start + 4 * nnz)
                } else {
                    col_start
                };
                let col_data_start = data_start + 4 * nnz;
                // SAFETY: as above, for usize (u64 on 64-bit targets), u32, f32.
                let (p0, indptr, _) = unsafe { map[offset..idx_start].align_to::<usize>() };
                let (p1, indices, _) =
                    unsafe { map[idx_start..idx_start + 4 * nnz].align_to::<u32>() };
                let (p2, data, _) =
                    unsafe { map[data_start..data_start + 4 * nnz].align_to::<f32>() };
                if !(p0.is_empty() && p1.is_empty() && p2.is_empty())
                    || cfg!(not(target_pointer_width = "64"))
                {
                    return None;
                }
                let columns = if columns {
                    // SAFETY: as above.
                    let (p3, col_ptr, _) =
                        unsafe { map[col_start..col_rows_start].align_to::<usize>() };
                    let (p4, rows, _) =
                        unsafe { map[col_rows_start..col_rows_start + 4 * nnz].align_to::<u32>() };
                    let (p5, col_data, _) =
                        unsafe { map[col_data_start..col_data_start + 4 * nnz].align_to::<f32>() };
                    if !(p3.is_empty() && p4.is_empty() && p5.is_empty()) {
                        return None;
                    }
                    Some(CscBlock {
                        col_ptr,
                        rows,
                        data: col_data,
                    })
                } else {
                    None
                };
                Some(RowBlock::Csr(CsrBlock {
                    indptr,
                    indices,
                    data,
                    n_cols,
                    columns,
                }))
            }
        }
    }
}

impl RowSource for CachedSource {
    fn n_rows(&self) -> usize {
        self.inner.n_rows()
    }

    fn n_cols(&self) -> usize {
        self.inner.n_cols()
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.inner.preferred_block_rows()
    }

    fn nnz_hint(&self) -> Option<u64> {
        self.inner.nnz_hint()
    }

    fn begin_pass(&mut self, blocks: &[Range<usize>]) -> Result<(), SourceError> {
        let n_rows = self.inner.n_rows();
        if let State::Filling { .. } = self.state {
            if self.serving == Serving::Nothing {
                self.serving = Serving::Filling;
                return self.inner.begin_pass(blocks);
            }
            // The first pass is over: map it if it was read whole (and
            // every normalised block was handed over).
            if self.next_row == n_rows && self.awaiting.is_none() {
                self.finish().map_err(|e| IoError::os(&self.dir, e))?;
            } else {
                self.state = State::Off;
            }
        }
        let cached = matches!(self.state, State::Ready { .. })
            && blocks.len() == self.entries.len()
            && blocks.iter().zip(&self.entries).all(|(b, e)| *b == e.rows);
        if cached {
            self.serving = Serving::Map;
            Ok(())
        } else {
            self.serving = Serving::Input;
            self.inner.begin_pass(blocks)
        }
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let n_cols = self.inner.n_cols();
        match self.serving {
            Serving::Map => {
                let idx = self
                    .entries
                    .binary_search_by_key(&rows.start, |e| e.rows.start)
                    .ok()
                    .filter(|&i| self.entries[i].rows == rows)
                    .ok_or_else(|| {
                        format!(
                            "rows {}..{} are not a block of the pass begun",
                            rows.start, rows.end
                        )
                    })?;
                let entry = self.entries[idx].clone();
                self.release_previous(&entry);
                if !self.resident {
                    self.released = Some(entry.bytes.clone());
                }
                match &self.state {
                    State::Ready { map } => Self::serve(map, &entry, n_cols)
                        .ok_or_else(|| "a cached block is misaligned".into()),
                    _ => Err("the cache is not mapped".into()),
                }
            }
            Serving::Filling if rows.start == self.next_row => {
                let State::Filling { writer, written } = &mut self.state else {
                    return self.inner.block(rows);
                };
                if self.awaiting.is_some() {
                    // The engine did not hand over the last block's values.
                    self.state = State::Off;
                    self.serving = Serving::Input;
                    return self.inner.block(rows);
                }
                let block = self.inner.block(rows.clone())?;
                let start = *written;
                let normalized = self.normalize != Normalize::None;
                let order = match &block {
                    RowBlock::Csr(x) if self.with_columns => ColumnOrder::of(x),
                    _ => None,
                };
                let layout = Self::append(writer, written, &block, !normalized, order.as_ref())
                    .map_err(|e| IoError::os(&self.dir, e))?;
                if normalized {
                    self.awaiting_order = order;
                    let n_values = match &block {
                        RowBlock::Dense(x) => x.len(),
                        RowBlock::Csr(x) => x.data.len(),
                    };
                    self.awaiting = Some((rows.clone(), n_values));
                }
                self.entries.push(Entry {
                    rows: rows.clone(),
                    layout,
                    bytes: start..*written,
                });
                self.next_row = rows.end;
                Ok(block)
            }
            Serving::Filling => {
                // Out of order: this pass is not cached.
                self.state = State::Off;
                self.serving = Serving::Input;
                self.inner.block(rows)
            }
            Serving::Nothing | Serving::Input => self.inner.block(rows),
        }
    }

    fn keep_resident(&mut self) {
        self.resident = true;
    }

    /// Kept for the copy if told before the first pass (later calls do not
    /// change a copy being written or written).
    fn normalization(&mut self, kind: Normalize) {
        if self.serving == Serving::Nothing {
            self.normalize = kind;
        }
    }

    fn wants_normalized(&self) -> bool {
        self.serving == Serving::Filling
            && self.normalize != Normalize::None
            && matches!(self.state, State::Filling { .. })
    }

    /// Writes the values of the block awaiting them; anything else (other
    /// rows, another length) leaves the copy incomplete, and unused.
    fn keep_normalized(&mut self, rows: Range<usize>, values: &[f32], raw_integer: bool) {
        let Some((awaited, n_values)) = self.awaiting.take() else {
            return;
        };
        let State::Filling { writer, written } = &mut self.state else {
            return;
        };
        let order = self.awaiting_order.take();
        let fits = awaited == rows && n_values == values.len();
        if fits && Self::append_values(writer, written, values, order.as_ref()).is_ok() {
            self.raw_integer &= raw_integer;
            if let Some(entry) = self.entries.last_mut() {
                entry.bytes.end = *written;
            }
        } else {
            self.state = State::Off;
        }
    }

    /// The map holds blocks the engine checked in the first pass (their
    /// column copies made from them by [`ColumnOrder::of`], which checks
    /// again).
    fn serves_checked_copy(&self) -> bool {
        self.serving == Serving::Map
    }

    fn served_normalized(&self) -> Option<NormalizedCopy> {
        (self.serving == Serving::Map && self.normalize != Normalize::None).then_some(
            NormalizedCopy {
                kind: self.normalize,
                raw_integer: self.raw_integer,
            },
        )
    }
}

/// Lets the pages of `range` (bytes) of `map`, and of the margin before it,
/// leave resident memory; they are read again from the file if touched.
///
/// # Safety
/// No reference into `range` may be alive.
pub(crate) unsafe fn release_pages(map: &Mmap, range: Range<usize>) {
    // Pages of earlier blocks mapped again by faults in this one go too
    // (see `REMAP_MARGIN_BYTES`).
    let start = (range.start / 4096 * 4096).saturating_sub(crate::factor_file::REMAP_MARGIN_BYTES);
    let end = range.end.min(map.len());
    if end > start {
        // SAFETY: the caller guarantees no reference into the range is alive.
        unsafe {
            let _ = map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start);
        }
    }
}

/// Asks the kernel to read `range` (bytes) of `map` ahead.
pub(crate) fn read_ahead(map: &Mmap, range: Range<usize>) {
    let start = range.start / 4096 * 4096;
    let end = range.end.min(map.len());
    if end > start {
        let _ = map.advise_range(memmap2::Advice::WillNeed, start, end - start);
    }
}

/// Free bytes for an unprivileged user in the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer.
    let status = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded and filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use nmflow_core::{InMemoryCsrSource, InMemorySource};

    /// One pass of blocks of `step` rows, begun as the engine begins it,
    /// as text without their column copies; a column copy, where there is
    /// one, must hold the block's entries column by column.
    fn blocks(source: &mut dyn RowSource, n_rows: usize, step: usize) -> Vec<String> {
        let pass = nmflow_core::solver::block_ranges(n_rows, step);
        source.begin_pass(&pass).expect("begin");
        pass.into_iter()
            .map(|rows| match source.block(rows).expect("block") {
                RowBlock::Csr(x) => {
                    if let Some(columns) = x.columns {
                        let order = ColumnOrder::of(&x).expect("a valid block");
                        assert_eq!(columns.col_ptr, &order.col_ptr[..]);
                        assert_eq!(columns.rows, &order.rows[..]);
                        assert_eq!(columns.data, &order.values(x.data)[..]);
                    }
                    format!("{:?}", RowBlock::Csr(CsrBlock { columns: None, ..x }))
                }
                block => format!("{block:?}"),
            })
            .collect()
    }

    /// Whether the cache's next pass serves sparse blocks with their column
    /// copy.
    fn serves_columns(source: &mut CachedSource, n_rows: usize, step: usize) -> bool {
        let pass = nmflow_core::solver::block_ranges(n_rows, step);
        source.begin_pass(&pass).expect("begin");
        pass.into_iter()
            .all(|rows| match source.block(rows).expect("block") {
                RowBlock::Csr(x) => x.columns.is_some(),
                RowBlock::Dense(_) => false,
            })
    }

    #[test]
    fn later_passes_serve_the_same_blocks_from_the_map() {
        let x = Array2::from_shape_fn((23, 7), |(i, j)| {
            if (i * j) % 3 == 0 {
                (i + j) as f32
            } else {
                0.0
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        for sparse in [false, true] {
            let make = || -> Box<dyn RowSource + Send> {
                if sparse {
                    Box::new(InMemoryCsrSource::from_dense(x.view()))
                } else {
                    Box::new(InMemorySource::new(x.clone()))
                }
            };
            let direct = blocks(make().as_mut(), 23, 5);
            let mut sizes = Vec::new();
            for with_columns in [false, true] {
                let mut cached =
                    CachedSource::new(make(), dir.path(), with_columns).expect("cache");
                for pass in 0..3 {
                    assert_eq!(
                        blocks(&mut cached, 23, 5),
                        direct,
                        "pass {pass}, sparse {sparse}"
                    );
                    // The first pass comes from the input, unchecked.
                    assert_eq!(cached.serves_checked_copy(), pass > 0);
                }
                assert!(matches!(cached.state, State::Ready { .. }));
                assert_eq!(serves_columns(&mut cached, 23, 5), sparse && with_columns);
                sizes.push(cached.cached_bytes());
            }
            assert!(sizes[0] > 0);
            assert_eq!(sizes[1] > sizes[0], sparse, "the column copy takes room");
            // Other block sizes fall back to the input, through a
            // read-ahead that follows the pass; the cache serves again
            // after.
            let ahead = crate::prefetch::PrefetchSource::new(make(), 1);
            let mut cached = CachedSource::new(Box::new(ahead), dir.path(), true).expect("cache");
            for step in [5, 5, 4, 5, 7] {
                let want = blocks(make().as_mut(), 23, step);
                assert_eq!(blocks(&mut cached, 23, step), want, "blocks of {step}");
            }
            assert!(matches!(cached.state, State::Ready { .. }));
        }
        assert!(free_space(dir.path()).is_some_and(|b| b > 0));
    }

    #[test]
    fn a_normalised_copy_serves_the_values_handed_over_from_the_second_pass() {
        let x = Array2::from_shape_fn((11, 4), |(i, j)| ((i + 2 * j) % 5) as f32);
        let dir = tempfile::tempdir().expect("tempdir");
        let kind = Normalize::Cp10kLog1p;
        let want = x.mapv(|v| (v * 3.0).ln_1p());
        for sparse in [false, true] {
            let make = |m: &Array2<f32>| -> Box<dyn RowSource + Send> {
                if sparse {
                    Box::new(InMemoryCsrSource::from_dense(m.view()))
                } else {
                    Box::new(InMemorySource::new(m.clone()))
                }
            };
            let mut normalised = make(&want);
            // The values the engine hands over: those of `normalised`.
            let mut values_of = |rows: Range<usize>| -> Vec<f32> {
                match normalised.block(rows).expect("block") {
                    RowBlock::Dense(v) => v.iter().copied().collect(),
                    RowBlock::Csr(v) => v.data.to_vec(),
                }
            };
            for handed_over in [true, false] {
                let mut cached = CachedSource::new(make(&x), dir.path(), true).expect("cache");
                cached.normalization(kind);
                let pass = nmflow_core::solver::block_ranges(11, 4);
                cached.begin_pass(&pass).expect("begin");
                assert!(cached.wants_normalized());
                for rows in pass {
                    let raw = format!("{:?}", cached.block(rows.clone()).expect("block"));
                    assert!(
                        raw.contains("1.0") || raw.contains("2.0"),
                        "raw values: {raw}"
                    );
                    if handed_over {
                        cached.keep_normalized(rows.clone(), &values_of(rows), true);
                    }
                }
                assert_eq!(cached.served_normalized(), None, "the first pass is raw");
                cached.normalization(Normalize::Log1p);
                let second = blocks(&mut cached, 11, 4);
                if handed_over {
                    assert_eq!(
                        cached.served_normalized(),
                        Some(NormalizedCopy {
                            kind,
                            raw_integer: true
                        }),
                        "later calls do not change the copy"
                    );
                    assert_eq!(
                        second,
                        blocks(make(&want).as_mut(), 11, 4),
                        "sparse {sparse}"
                    );
                    // The column copy holds the normalised values too
                    // (`blocks` compares them with the rows').
                    assert_eq!(serves_columns(&mut cached, 11, 4), sparse);
                } else {
                    // Values never handed over: no copy, the input again.
                    assert_eq!(cached.served_normalized(), None);
                    assert_eq!(second, blocks(make(&x).as_mut(), 11, 4), "sparse {sparse}");
                }
            }
        }
    }
}
