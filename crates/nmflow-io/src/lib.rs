//! Inputs and outputs of nmflow: row-block sources over HDF5 datasets,
//! single-cell files (h5ad, 10x, loom; dense or sparse) and memory-mapped
//! `.npy` files, the catalogue of factorizable datasets in a
//! file, and result files written atomically.
//!
//! Every error names the file (and the dataset) at fault.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod atomic;
pub mod cache;
pub mod catalog;
pub mod checkpoint;
pub mod consensus_file;
pub mod csr_source;
mod dtype;
pub mod elements;
mod error;
pub mod factor_file;
pub mod h5ad;
mod hdf5_source;
pub mod input;
mod kind;
mod labels;
mod legacy;
mod mapped;
pub mod names;
pub mod npy;
pub mod output;
pub mod prefetch;
mod result;
pub mod run_record;
pub mod singlecell;
mod strings;
mod transpose;

pub use catalog::DatasetInfo;
pub use dtype::{Dtype, Numeric};
pub use error::IoError;
pub use h5ad::{write_h5ad, write_into_h5ad};
pub use input::{
    InputKind, InputSpec, OpenedSource, StartFactor, check_start, open_source, read_start,
    read_start_into,
};
pub use labels::{Labels, read_labels};
pub use output::{AttrValue, FitOutput, SampleOutput, write_result};
pub use result::{Components, FitResult, read_components, read_result};
pub use singlecell::{Layout, Names, OpenOptions, Storage, read_names};
