//! MPI for nmflow, through rsmpi over the system's MPI (OpenMPI or MPICH):
//! the processes `mpirun` starts as the engine's
//! [`Collective`], and what a
//! distributed fit does between them besides the passes' sums: agreeing
//! that every process succeeded, and gathering W's rows on process 0.
#![deny(missing_docs)]

use std::ops::Range;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Destination, Source};
use nmflow_core::FactorStore;
use nmflow_core::collective::{Collective, Shard};

/// Whether this process was started by an MPI launcher (`mpirun`,
/// `mpiexec`, `srun`): it then joins its world.
pub fn launched() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// The number of processes of the MPI job this process was started in, as
/// the launcher announces it (before MPI is joined).
pub fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The processes of this MPI job. MPI is finalized when it is dropped.
pub struct World {
    /// The communicator of every process.
    comm: SimpleCommunicator,
    /// Keeps MPI initialized (finalized on drop).
    _universe: mpi::environment::Universe,
}

// SAFETY: MPI is initialized with MPI_THREAD_SERIALIZED (checked in
// `init`): any thread may call it, one at a time. nmflow calls it from one
// thread at a time: the engine's, between passes, and the command's.
unsafe impl Sync for World {}
// SAFETY: as above; the communicator is a handle valid in every thread.
unsafe impl Send for World {}

/// Why MPI could not be joined.
#[derive(Debug)]
pub struct InitError(String);

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

impl World {
    /// Joins the MPI world (MPI_Init_thread, serialized threads).
    pub fn init() -> Result<Self, InitError> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| InitError("MPI was already initialized".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(InitError(format!(
                "this MPI offers threading level {threading:?}; nmflow needs Serialized"
            )));
        }
        Ok(Self {
            comm: universe.world(),
            _universe: universe,
        })
    }

    /// Stops every process of the job (MPI_Abort) with exit code `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    /// Whether every process's `ok` is true (a collective call).
    pub fn all_ok(&self, ok: bool) -> bool {
        let flags = self.all_gather(&[f64::from(u8::from(ok))]);
        flags.iter().all(|&f| f > 0.0)
    }

    /// The first process whose `ok` is false, if any (a collective call).
    pub fn first_failed(&self, ok: bool) -> Option<usize> {
        let flags = self.all_gather(&[f64::from(u8::from(ok))]);
        flags.iter().position(|&f| f == 0.0)
    }

    /// Sends every process's rows of W (`mine`, the rows `rows_of(rank)`
    /// of the whole) to process 0, which writes them into `whole` at
    /// their place, `block_rows` rows per message, in rank order.
    /// `whole` is given on process 0 only.
    pub fn gather_rows(
        &self,
        mine: &mut dyn FactorStore,
        whole: Option<&mut dyn FactorStore>,
        block_rows: usize,
        rows_of: impl Fn(usize) -> Range<usize>,
    ) {
        let k = mine.shape().1;
        let block_rows = block_rows.max(1);
        let rank = self.rank();
        if let Some(whole) = whole {
            for from in 0..self.size() {
                let rows = rows_of(from);
                for start in (rows.start..rows.end).step_by(block_rows) {
                    let end = (start + block_rows).min(rows.end);
                    let mut dst = whole.rows_mut(start..end);
                    if from == rank {
                        let local = start - rows.start..end - rows.start;
                        dst.assign(&mine.rows_mut(local.clone()));
                        mine.release(local);
                    } else {
                        let (values, _) =
                            self.comm.process_at_rank(from as i32).receive_vec::<f32>();
                        for (d, v) in dst.iter_mut().zip(values) {
                            *d = v;
                        }
                    }
                    whole.release(start..end);
                }
            }
        } else {
            let n = mine.shape().0;
            let root = self.comm.process_at_rank(0);
            for start in (0..n).step_by(block_rows) {
                let end = (start + block_rows).min(n);
                let part = mine.rows_mut(start..end);
                let values: Vec<f32> = part.iter().copied().collect();
                debug_assert_eq!(values.len(), (end - start) * k);
                root.send(&values[..]);
                mine.release(start..end);
            }
        }
    }

    /// This process's share of `n_rows` rows, for the engine.
    pub fn shard(&self, n_rows: usize) -> Shard<'_> {
        Shard {
            collective: self,
            first_row: Shard::rows_of(self.rank(), self.size(), n_rows).start,
            n_rows,
        }
    }
}

impl Collective for World {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_gather(&self, values: &[f64]) -> Vec<f64> {
        let mut all = vec![0.0f64; values.len() * self.size()];
        self.comm.all_gather_into(values, &mut all[..]);
        all
    }

    /// MPI_Allgatherv, after the lengths.
    fn all_gather_varying(&self, values: &[f64]) -> Vec<Vec<f64>> {
        let lengths: Vec<usize> = self
            .all_gather(&[values.len() as f64])
            .iter()
            .map(|&n| n as usize)
            .collect();
        let counts: Vec<i32> = lengths.iter().map(|&n| n as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |at, &n| {
                let start = *at;
                *at += n;
                Some(start)
            })
            .collect();
        let mut all = vec![0.0f64; lengths.iter().sum()];
        {
            let mut parts = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.comm.all_gather_varcount_into(values, &mut parts);
        }
        let mut at = 0;
        lengths
            .iter()
            .map(|&n| {
                let part = all[at..at + n].to_vec();
                at += n;
                part
            })
            .collect()
    }

    /// MPI_Allreduce: the same sums on every process, and the same between
    /// two runs with as many processes (the MPI library picks its
    /// reduction order from the job's size and the message's length).
    fn sum(&self, values: &mut [f64]) {
        if self.size() == 1 {
            return;
        }
        let mut out = vec![0.0f64; values.len()];
        self.comm
            .all_reduce_into(&values[..], &mut out[..], SystemOperation::sum());
        values.copy_from_slice(&out);
    }
}
