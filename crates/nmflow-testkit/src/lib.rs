//! Test support for nmflow: a plain in-memory reference solver and the
//! synthetic data generators used by tests, benchmarks and `cargo xtask synth`.
#![deny(missing_docs)]

pub mod extreme;
pub mod reference;
pub mod sc;
pub mod seed;

pub use extreme::{extreme_matrix, scaled_matrix};
pub use reference::{
    ReferenceFit, ReferenceRule, ReferenceSettings, assert_matches_reference, max_rel_diff,
    reference_fit, reference_kl, reference_rules,
};
pub use sc::{Cell, ScGenerator};
pub use seed::SeedGenerator;
