//! Reading ahead on a thread of its own: the blocks of the next pass(es)
//! are read and decoded while the current block is computed on.
//!
//! The reader thread owns the input. Each pass the engine begins
//! ([`RowSource::begin_pass`]) sends it the pass's row ranges; it reads
//! them in order and sends owned copies of the blocks through a bounded
//! channel (`depth` blocks in flight, counted in the memory plan); the
//! consumer returns each buffer when it asks for the next block, so
//! buffers are reused. Asking for rows out of the pass's order, or without
//! a pass begun, is an error.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
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

/// What the consumer asks of the reader thread.
enum Command {
    /// Read these blocks, in order (a pass begun).
    Pass(Vec<Range<usize>>),
    /// No block is wanted until the next pass: free the buffers.
    Release,
}

/// A row source read ahead by a thread.
pub struct PrefetchSource {
    n_rows: usize,
    n_cols: usize,
    preferred: Option<usize>,
    nnz: Option<u64>,
    /// The passes begun, to the reader (closed on drop).
    passes: Option<Sender<Command>>,
    /// Blocks of begun passes not asked for yet.
    pending: usize,
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
    /// Starts a reader thread for `inner` that reads each pass begun
    /// `depth` blocks ahead.
    pub fn new(mut inner: Box<dyn RowSource + Send>, depth: usize) -> Self {
        let (n_rows, n_cols) = (inner.n_rows(), inner.n_cols());
        let (preferred, nnz) = (inner.preferred_block_rows(), inner.nnz_hint());
        let (send, blocks) = sync_channel::<Message>(depth.max(1));
        let (recycle, returned) = sync_channel::<Owned>(depth.max(1) + 2);
        let (passes, begun) = channel::<Command>();
        let reader = std::thread::spawn(move || {
            for command in begun {
                let ranges = match command {
                    Command::Pass(ranges) => ranges,
                    Command::Release => {
                        while returned.try_recv().is_ok() {}
                        inner.done_reading();
                        continue;
                    }
                };
                if let Err(e) = inner.begin_pass(&ranges) {
                    let _ = send.send(Err(e));
                    return;
                }
                for rows in ranges {
                    let reuse = returned.try_recv().ok();
                    let message = inner
                        .block(rows.clone())
                        .and_then(|b| copy_into(b, reuse))
                        .map(|owned| (rows, owned));
                    let failed = message.is_err();
                    if send.send(message).is_err() || failed {
                        return;
                    }
                }
                // The pass is read: the source's buffers go now, not when
                // the next pass begins (the consumer still computes on the
                // blocks in flight).
                inner.done_reading();
            }
        });
        Self {
            n_rows,
            n_cols,
            preferred,
            nnz,
            passes: Some(passes),
            pending: 0,
            blocks,
            recycle,
            current: None,
            reader: Some(reader),
        }
    }
}

impl Drop for PrefetchSource {
    fn drop(&mut self) {
        // Closing both channels ends the reader: at its next send, or while
        // it waits for a pass.
        drop(self.passes.take());
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
        if let Some(passes) = &self.passes {
            let _ = passes.send(Command::Release);
        }
    }

    fn begin_pass(&mut self, blocks: &[Range<usize>]) -> Result<(), SourceError> {
        if self.pending > 0 {
            return Err(format!(
                "a pass was begun with {} blocks of the previous one not read",
                self.pending
            )
            .into());
        }
        let passes = self.passes.as_ref().ok_or("the read-ahead is closed")?;
        passes
            .send(Command::Pass(blocks.to_vec()))
            .map_err(|_| "the reader thread stopped")?;
        self.pending = blocks.len();
        Ok(())
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        if let Some(previous) = self.current.take() {
            let _ = self.recycle.try_send(previous);
        }
        if self.pending == 0 {
            return Err(format!(
                "rows {}..{} asked for outside a pass (begin_pass first)",
                rows.start, rows.end
            )
            .into());
        }
        self.pending -= 1;
        let (got, owned) = self
            .blocks
            .recv()
            .map_err(|_| "the reader thread stopped")??;
        if got != rows {
            return Err(format!(
                "rows {}..{} asked for, but the pass begun holds {}..{} next",
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
                columns: None,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmflow_core::solver::block_ranges;
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
            let mut ahead = PrefetchSource::new(make(), 2);
            // Passes of any block plan, one after the other.
            for step in [9, 9, 4, 41] {
                let pass = block_ranges(41, step);
                ahead.begin_pass(&pass).expect("begin");
                for rows in pass {
                    let a = format!("{:?}", direct.block(rows.clone()).expect("direct"));
                    let b = format!("{:?}", ahead.block(rows).expect("prefetched"));
                    assert_eq!(a, b);
                }
            }
            assert!(ahead.block(0..9).is_err(), "no pass was begun");
        }
        let mut ahead = PrefetchSource::new(Box::new(InMemorySource::new(x.clone())), 1);
        ahead.begin_pass(&block_ranges(41, 9)).expect("begin");
        assert!(ahead.block(9..18).is_err(), "out of the pass's order");
        let mut ahead = PrefetchSource::new(Box::new(InMemorySource::new(x)), 1);
        ahead.begin_pass(&block_ranges(41, 9)).expect("begin");
        assert!(
            ahead.begin_pass(&block_ranges(41, 9)).is_err(),
            "a pass not read"
        );
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
        let mut ahead = PrefetchSource::new(Box::new(Failing), 1);
        ahead.begin_pass(&block_ranges(4, 2)).expect("begin");
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
