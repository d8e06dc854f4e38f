//! End-to-end tests of the `nmflow` binary. Fixtures are made by the test
//! code itself (`util.rs`) in temporary directories.

mod bad_input;
mod embed;
mod fit;
mod full_disk;
mod fuzz;
mod hostile;
mod inspect;
#[cfg(feature = "mpi")]
mod mpi;
mod outputs;
mod real_files;
mod resume;
mod singlecell;
mod sweep;
mod transform;
mod util;
