//! The seam between the engine and the processes that share one
//! factorization (MPI ranks): each process reads a contiguous range of the
//! rows and keeps its rows of W; after every pass the processes combine
//! what the pass accumulated (XᵀW, WᵀW, the error's terms: `k·n + k² + …`
//! values per run) in one sum, so every process updates the same H. A
//! single process is [`Alone`], whose sums are the values themselves, so
//! its results are the single-process engine's bit for bit.

/// The processes of one factorization.
pub trait Collective: Sync {
    /// This process's index, from 0.
    fn rank(&self) -> usize;

    /// Processes.
    fn size(&self) -> usize;

    /// Every process's `values` (the same length on every process),
    /// concatenated in rank order, on every process.
    fn all_gather(&self, values: &[f64]) -> Vec<f64>;

    /// Every process's `values`, whose lengths may differ, one vector per
    /// process in rank order, on every process. The default gathers the
    /// lengths, then the values padded to the longest.
    fn all_gather_varying(&self, values: &[f64]) -> Vec<Vec<f64>> {
        let lengths = self.all_gather(&[values.len() as f64]);
        let longest = lengths.iter().fold(0.0f64, |a, &b| a.max(b)) as usize;
        let mut padded = values.to_vec();
        padded.resize(longest, 0.0);
        let all = self.all_gather(&padded);
        lengths
            .iter()
            .enumerate()
            .map(|(rank, &len)| all[rank * longest..rank * longest + len as usize].to_vec())
            .collect()
    }

    /// Element-wise sums over the processes, in place, the same on every
    /// process and the same between two runs with as many processes. The
    /// default adds the gathered values in rank order.
    fn sum(&self, values: &mut [f64]) {
        if self.size() == 1 {
            return;
        }
        let n = values.len();
        let all = self.all_gather(values);
        for (i, v) in values.iter_mut().enumerate() {
            *v = all[i];
            for rank in 1..self.size() {
                *v += all[rank * n + i];
            }
        }
    }
}

/// One process alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Collective for Alone {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_gather(&self, values: &[f64]) -> Vec<f64> {
        values.to_vec()
    }

    fn all_gather_varying(&self, values: &[f64]) -> Vec<Vec<f64>> {
        vec![values.to_vec()]
    }

    fn sum(&self, _values: &mut [f64]) {}
}

/// This process's share of a factorization: the processes, and where its
/// rows lie among all of them.
#[derive(Clone, Copy)]
pub struct Shard<'a> {
    /// The processes.
    pub collective: &'a dyn Collective,
    /// The first of this process's rows, in the whole matrix.
    pub first_row: usize,
    /// Rows of the whole matrix.
    pub n_rows: usize,
}

impl Shard<'_> {
    /// The rows of a process of `size` sharing `n_rows` rows: contiguous
    /// ranges, the first `n_rows % size` one row longer.
    pub fn rows_of(rank: usize, size: usize, n_rows: usize) -> std::ops::Range<usize> {
        let base = n_rows / size;
        let extra = n_rows % size;
        let start = rank * base + rank.min(extra);
        start..start + base + usize::from(rank < extra)
    }

    /// Whether other processes share the rows.
    pub(crate) fn shared(&self) -> bool {
        self.collective.size() > 1
    }

    /// `result`, agreed between the processes: when any failed, every one
    /// fails, with its own error or, where it did not fail, with the first
    /// failed process's rank. Row numbers in the error are the whole
    /// matrix's.
    pub(crate) fn agree<T>(
        &self,
        result: Result<T, crate::FitError>,
    ) -> Result<T, crate::FitError> {
        let result = result.map_err(|e| match e {
            crate::FitError::Source { rows, source } => crate::FitError::Source {
                rows: rows.start + self.first_row..rows.end + self.first_row,
                source,
            },
            other => other,
        });
        if !self.shared() {
            return result;
        }
        let failed = self
            .collective
            .all_gather(&[f64::from(u8::from(result.is_err()))]);
        match (result, failed.iter().position(|&f| f > 0.0)) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(rank)) => Err(crate::FitError::PeerFailed { rank }),
            (Ok(value), None) => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn rows_are_split_in_contiguous_ranges_differing_by_at_most_one() {
        for (n, size) in [(10, 3), (7, 7), (5, 8), (1000, 4)] {
            let ranges: Vec<_> = (0..size).map(|r| Shard::rows_of(r, size, n)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[size - 1].end, n);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].len() >= pair[1].len() && pair[0].len() - pair[1].len() <= 1);
            }
        }
    }
}
