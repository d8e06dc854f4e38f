//! Inputs and outputs of nmflow: row-block sources over HDF5 datasets and
//! memory-mapped `.npy` files, the catalogue of factorizable datasets in a
//! file, and result files written atomically.
//!
//! Every error names the file (and the dataset) at fault.
#![deny(missing_docs)]

pub mod catalog;
pub mod error;
pub mod hdf5_source;
pub mod input;
pub mod npy;
pub mod output;

pub use catalog::{DatasetInfo, list_matrices};
pub use error::IoError;
pub use input::{InputKind, InputSpec, open_source, read_matrix};
pub use output::{AttrValue, FitOutput, write_result};
