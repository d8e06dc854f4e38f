//! Reading ahead on a thread of its own: the blocks of the next pass(es)
//! are read and decoded while the current block is computed on.
//!
//! The reader thread owns the input and walks the engine's block plan (the
//! same row ranges every pass), sending owned copies of the blocks through a
//! bounded channel (`depth` blocks in flight, counted in the memory plan);
//! the consumer returns each buffer when it asks for the next block, so
//! buffers are reused. Asking for rows out of plan order is an error.

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ndarray::Array2;
use nmflow_core::{CsrBlock, RowBlock, RowSource, SourceError};

/// A block owned by the consumer.
#[derive(Debug)]
enum Owned {
    Dense(Array2<f32>),
    Csr {
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f32>,
    },
}

/// A block, or the source's own error (its cause chain kept across the
/// thread).
type Message = Result<(Range<usize>, Owned), SourceError>;

/// A row source read ahead by a thread.
pub struct PrefetchSource {
    n_rows: usize,
    n_cols: usize,
    preferred: Option<usize>,
    nnz: Option<u64>,
    blocks: Receiver<Message>,
    recycle: SyncSender<Owned>,
    current: Option<Owned>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PrefetchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefetchSource")
            .field("n_rows", &self.n_rows)
            .finish_non_exhaustive()
    }
}

/// The row ranges of blocks of `block_rows` rows.
fn plan(n_rows: usize, block_rows: usize) -> Vec<Range<usize>> {
    (0..n_rows)
        .step_by(block_rows.max(1))
        .map(|s| s..(s + block_rows.max(1)).min(n_rows))
        .collect()
}

fn copy_into(block: RowBlock<'_>, reuse: Option<Owned>) -> Result<Owned, SourceError> {
    Ok(match block {
        RowBlock::Dense(x) => match reuse {
            Some(Owned::Dense(mut buf)) if buf.dim() == x.dim() => {
                buf.assign(&x);
                Owned::Dense(buf)
            }
            _ => Owned::Dense(x.to_owned()),
        },
        RowBlock::Csr(x) => {
            let (mut indptr, mut indices, mut data) = match reuse {
                Some(Owned::Csr {
                    indptr,
                    indices,
                    data,
                }) => (indptr, indices, data),
                _ => (Vec::new(), Vec::new(), Vec::new()),
            };
            indptr.clear();
            indices.clear();
            data.clear();
            let start = x.indptr[0];
            let end = x.indptr[x.n_rows()];
            indptr.extend(x.indptr.iter().map(|&p| p - start));
            indices.extend_from_slice(&x.indices[start..end]);
            data.extend_from_slice(&x.data[start..end]);
            Owned::Csr {
                indptr,
                indices,
                data,
            }
        }
    })
}

impl PrefetchSource {
    /// Starts reading `inner` ahead in blocks of `block_rows` rows, for
    /// `passes` passes (`None`: until dropped), `depth` blocks ahead.
    pub fn new(
        mut inner: Box<dyn RowSource + Send>,
        block_rows: usize,
        passes: Option<usize>,
        depth: usize,
    ) -> Self {
        let (n_rows, n_cols) = (inner.n_rows(), inner.n_cols());
        let (preferred, nnz) = (inner.preferred_block_rows(), inner.nnz_hint());
        let (send, blocks) = sync_channel::<Message>(depth.max(1));
        let (recycle, returned) = sync_channel::<Owned>(depth.max(1) + 2);
        let ranges = plan(n_rows, block_rows);
        let reader = std::thread::spawn(move || {
            let mut pass = 0;
            while passes.is_none_or(|p| pass < p) {
                for rows in &ranges {
                    let reuse = returned.try_recv().ok();
                    let message = inner
                        .block(rows.clone())
                        .and_then(|b| copy_into(b, reuse))
                        .map(|owned| (rows.clone(), owned));
                    let failed = message.is_err();
                    if send.send(message).is_err() || failed {
                        return;
                    }
                }
                pass += 1;
            }
        });
        Self {
            n_rows,
            n_cols,
            preferred,
            nnz,
            blocks,
            recycle,
            current: None,
            reader: Some(reader),
        }
    }
}

impl Drop for PrefetchSource {
    fn drop(&mut self) {
        // Closing the channel ends the reader at its next send.
        let (_, closed) = sync_channel::<Message>(1);
        drop(std::mem::replace(&mut self.blocks, closed));
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl RowSource for PrefetchSource {
    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.preferred
    }

    fn nnz_hint(&self) -> Option<u64> {
        self.nnz
    }

    fn done_reading(&mut self) {
        self.current = None;
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        if let Some(previous) = self.current.take() {
            let _ = self.recycle.try_send(previous);
        }
        let (got, owned) = self
            .blocks
            .recv()
            .map_err(|_| "the reader thread stopped (no more passes were planned)")??;
        if got != rows {
            return Err(format!(
                "rows {}..{} asked for, but the read-ahead plan holds {}..{}",
                rows.start, rows.end, got.start, got.end
            )
            .into());
        }
        let owned = self.current.insert(owned);
        Ok(match owned {
            Owned::Dense(x) => RowBlock::Dense(x.view()),
            Owned::Csr {
                indptr,
                indices,
                data,
            } => RowBlock::Csr(CsrBlock {
                indptr,
                indices,
                data,
                n_cols: self.n_cols,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmflow_core::{InMemoryCsrSource, InMemorySource};

    #[test]
    fn prefetched_blocks_equal_direct_reads_for_several_passes() {
        let x = Array2::from_shape_fn((41, 6), |(i, j)| {
            if (i + j) % 4 == 0 {
                (i * j) as f32
            } else {
                0.0
            }
        });
        for sparse in [false, true] {
            let make = || -> Box<dyn RowSource + Send> {
                if sparse {
                    Box::new(InMemoryCsrSource::from_dense(x.view()))
                } else {
                    Box::new(InMemorySource::new(x.clone()))
                }
            };
            let mut direct = make();
            let mut ahead = PrefetchSource::new(make(), 9, Some(3), 2);
            for _pass in 0..3 {
                for rows in plan(41, 9) {
                    let a = format!("{:?}", direct.block(rows.clone()).expect("direct"));
                    let b = format!("{:?}", ahead.block(rows).expect("prefetched"));
                    assert_eq!(a, b);
                }
            }
            assert!(ahead.block(0..9).is_err(), "only three passes were planned");
        }
        let mut ahead = PrefetchSource::new(Box::new(InMemorySource::new(x.clone())), 9, None, 1);
        assert!(ahead.block(9..18).is_err(), "out of plan order");
    }

    /// A source whose every read fails with an error that has a cause.
    struct Failing;

    #[derive(Debug, thiserror::Error)]
    #[error("reading rows failed")]
    struct ReadFailed(#[source] std::io::Error);

    impl RowSource for Failing {
        fn n_rows(&self) -> usize {
            4
        }
        fn n_cols(&self) -> usize {
            2
        }
        fn block(&mut self, _rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
            Err(Box::new(ReadFailed(std::io::Error::other("disk said no"))))
        }
    }

    #[test]
    fn a_read_error_crosses_the_thread_with_its_cause() {
        let mut ahead = PrefetchSource::new(Box::new(Failing), 2, Some(1), 1);
        let err = ahead.block(0..2).unwrap_err();
        let failed = err
            .downcast_ref::<ReadFailed>()
            .expect("the source's own error type");
        assert_eq!(failed.0.to_string(), "disk said no");
        assert!(
            std::error::Error::source(&*err).is_some(),
            "the cause is kept"
        );
    }
}
