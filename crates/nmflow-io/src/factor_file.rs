//! W in a memory-mapped temporary file, for fits whose W does not fit the
//! memory budget. Rows are released (`MADV_DONTNEED`) after each block, so
//! resident memory holds about one block of W; the kernel keeps the rest in
//! its page cache or writes it to the file.

use std::ops::Range;
use std::path::Path;

use memmap2::{MmapMut, UncheckedAdvice};
use ndarray::ArrayViewMut2;
use nmflow_core::FactorStore;

use crate::error::IoError;

/// Bytes before a released range that are released with it. Touching a
/// page of a file mapping can map the cached pages around it again (the
/// kernel's fault-around window and large page-cache folios, up to a 2 MiB
/// huge page): pages of the block before, released already. Measured: a
/// pass over a mapped W in blocks of 2,358 rows × 20 left 16.5 MiB of 76 MiB
/// resident with no margin, 9.9 MiB with 64 KiB, 20 KiB with 1 MiB.
pub(crate) const REMAP_MARGIN_BYTES: usize = 2 << 20;

/// W (`n_rows × k` f32, row-major) in an unlinked temporary file.
#[derive(Debug)]
pub struct MappedFactor {
    map: MmapMut,
    n_rows: usize,
    k: usize,
}

impl MappedFactor {
    /// A zeroed `n_rows × k` W in a temporary file in `dir`.
    pub fn new(n_rows: usize, k: usize, dir: &Path) -> Result<Self, IoError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| IoError::os(dir, e))?;
        let bytes = (n_rows * k * 4).max(4) as u64;
        crate::atomic::reserve(&file, bytes).map_err(|e| IoError::os(dir, e))?;
        // SAFETY: an unlinked temporary file only this process can reach.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| IoError::os(dir, e))?;
        Ok(Self { map, n_rows, k })
    }
}

impl FactorStore for MappedFactor {
    fn shape(&self) -> (usize, usize) {
        (self.n_rows, self.k)
    }

    fn rows_mut(&mut self, rows: Range<usize>) -> ArrayViewMut2<'_, f32> {
        let (start, end) = (rows.start * self.k * 4, rows.end * self.k * 4);
        // SAFETY: f32 accepts every bit pattern; the map is page-aligned, so
        // the middle is the whole range.
        let (_, floats, _) = unsafe { self.map[start..end].align_to_mut::<f32>() };
        ArrayViewMut2::from_shape((rows.len(), self.k), floats)
            .expect("the map holds n_rows × k f32")
    }

    fn release(&mut self, rows: Range<usize>) {
        let page = 4096;
        // Touching this block may have mapped pages of the previous one again
        // (see `REMAP_MARGIN_BYTES`): release them with it.
        let start = (rows.start * self.k * 4 / page * page).saturating_sub(REMAP_MARGIN_BYTES);
        let end = (rows.end * self.k * 4).min(self.map.len());
        if end > start {
            // SAFETY: no view of these rows is alive (`rows_mut` borrows
            // `self` mutably); a shared file mapping keeps the data.
            unsafe {
                let _ =
                    self.map
                        .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = MappedFactor::new(5000, 3, dir.path()).expect("map");
        for start in (0..5000).step_by(700) {
            let rows = start..(start + 700).min(5000);
            w.rows_mut(rows.clone()).mapv_inplace(|_| start as f32);
            w.release(rows);
        }
        for start in (0..5000).step_by(700) {
            assert!(
                w.rows_mut(start..start + 1)
                    .iter()
                    .all(|&v| v == start as f32)
            );
        }
    }
}

#[cfg(test)]
mod resident {
    use super::*;

    fn rss_file_kib() -> Option<u64> {
        std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find(|l| l.starts_with("RssFile"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// A pass over W in blocks whose bytes are not page multiples leaves
    /// (almost) nothing of W resident.
    #[test]
    fn released_blocks_leave_resident_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = MappedFactor::new(1_000_000, 20, dir.path()).expect("map");
        let Some(before) = rss_file_kib() else {
            eprintln!("skipped: no /proc/self/status RssFile on this system");
            return;
        };
        for _pass in 0..2 {
            for start in (0..1_000_000).step_by(2358) {
                let rows = start..(start + 2358).min(1_000_000);
                w.rows_mut(rows.clone()).mapv_inplace(|v| v * 0.5 + 1.0);
                w.release(rows);
            }
        }
        let grown = rss_file_kib().unwrap_or(0).saturating_sub(before);
        // W is 78,125 KiB; the last block and the margin stay at most.
        assert!(grown < 4096, "{grown} KiB of W still resident");
    }
}
