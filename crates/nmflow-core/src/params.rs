//! User parameters of a fit and their validation against the matrix shape.

use ndarray::{Array2, ArrayView2};

use crate::error::FitError;
use crate::normalize::Normalize;

/// How the columns of X are scaled before factorizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Divide each column by its population standard deviation (ddof 0);
    /// a column with zero variance is left as it is.
    ColStd,
    /// Factorize X as it is.
    None,
}

impl Scale {
    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::ColStd => "col-std",
            Scale::None => "none",
        }
    }
}

/// Where W and H start.
#[derive(Debug, Clone)]
pub enum Init {
    /// W and H uniform on [0, 1) from the seed (see [`crate::init`]).
    Random,
    /// scikit-learn's `init="random"`: W and H half-normal from the seed,
    /// times sqrt(mean(X_s) / k).
    RandomScaled,
    /// Given factors. H₀ (`k × n_cols`) is held here; W₀ is what each
    /// run's W store holds when the fit starts: the caller writes it there
    /// block by block (it may be larger than memory), and the pre-pass
    /// checks it block by block.
    Custom {
        /// Initial H.
        h0: Array2<f32>,
    },
}

impl Init {
    /// The name used on the command line and in result files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Init::Random => "random",
            Init::RandomScaled => "random-scaled",
            Init::Custom { .. } => "custom",
        }
    }
}

/// Parameters as the user gave them; [`NmfParams::check`] validates them.
#[derive(Debug, Clone)]
pub struct NmfParams {
    /// Number of components.
    pub k: usize,
    /// Maximum number of iterations (each is one H update and one W update).
    pub max_iter: usize,
    /// scikit-learn's stopping rule: every [`crate::solver::CHECK_EVERY`]
    /// iterations, stop when the error fell by less than `tol` times the
    /// error of the start since the previous check; 0 runs all `max_iter`
    /// iterations.
    pub tol: f64,
    /// Seed of the random initialisation.
    pub seed: u64,
    /// Per-row normalisation, applied before the column scaling.
    pub normalize: Normalize,
    /// Column scaling.
    pub scale: Scale,
    /// Rows per block; `None` lets the engine choose from the source's hint.
    pub block_rows: Option<usize>,
    /// Initial factors.
    pub init: Init,
    /// The update rule.
    pub solver: crate::rules::Solver,
    /// Updates of each factor per pass ([`crate::rules::Inner`]).
    pub inner: crate::rules::Inner,
    /// Penalties on W and H (none by default).
    pub regularization: crate::rules::Regularization,
    /// The loss (Frobenius by default; Kullback–Leibler with `mu` only).
    pub loss: crate::rules::Loss,
}

impl Default for NmfParams {
    fn default() -> Self {
        Self {
            k: 2,
            max_iter: 200,
            tol: 1e-4,
            seed: 0,
            normalize: Normalize::None,
            scale: Scale::ColStd,
            block_rows: None,
            init: Init::Random,
            solver: crate::rules::Solver::Mu,
            inner: crate::rules::Inner::Fixed(1),
            regularization: crate::rules::Regularization::default(),
            loss: crate::rules::Loss::Frobenius,
        }
    }
}

/// Parameters checked against a matrix shape.
#[derive(Debug, Clone)]
pub struct ValidParams {
    pub(crate) inner: NmfParams,
    pub(crate) block_rows: usize,
}

impl ValidParams {
    /// The checked parameters.
    pub fn params(&self) -> &NmfParams {
        &self.inner
    }

    /// The block height the fit uses.
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// The same parameters with blocks of `rows` rows (at least 1), e.g. as
    /// a memory plan chose them.
    pub fn with_block_rows(mut self, rows: usize) -> Self {
        self.block_rows = rows.max(1);
        self
    }
}

/// Bytes of f32 X a block aims for when the user does not choose its height.
pub(crate) const DEFAULT_BLOCK_BYTES: usize = 16 << 20;

impl NmfParams {
    /// Validates the parameters for an `n_rows × n_cols` matrix whose source
    /// prefers blocks of `preferred_rows` rows.
    pub fn check(
        self,
        n_rows: usize,
        n_cols: usize,
        preferred_rows: Option<usize>,
    ) -> Result<ValidParams, FitError> {
        if n_rows == 0 || n_cols == 0 {
            return Err(FitError::EmptyMatrix { n_rows, n_cols });
        }
        if self.k == 0 {
            return Err(FitError::ZeroK);
        }
        if self.k > n_rows.min(n_cols) {
            return Err(FitError::KTooLarge {
                k: self.k,
                n_rows,
                n_cols,
            });
        }
        if self.max_iter == 0 {
            return Err(FitError::ZeroMaxIter);
        }
        if !self.tol.is_finite() || self.tol < 0.0 {
            return Err(FitError::BadTol { tol: self.tol });
        }
        if self.block_rows == Some(0) {
            return Err(FitError::ZeroBlockRows);
        }
        if self.inner == crate::rules::Inner::Fixed(0) {
            return Err(FitError::ZeroInner);
        }
        if self.loss == crate::rules::Loss::KullbackLeibler {
            if self.solver != crate::rules::Solver::Mu {
                return Err(FitError::LossNeedsMu {
                    solver: self.solver.as_str(),
                });
            }
            if self.inner != crate::rules::Inner::Fixed(1) {
                return Err(FitError::LossNeedsPlainUpdates);
            }
        }
        let reg = self.regularization;
        for (name, value, max) in [
            ("alpha_W", reg.alpha_w, f64::INFINITY),
            ("alpha_H", reg.alpha_h, f64::INFINITY),
            ("l1_ratio", reg.l1_ratio, 1.0),
        ] {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                return Err(FitError::BadPenalty { name, value });
            }
        }
        if let Init::Custom { h0 } = &self.init {
            if h0.dim() != (self.k, n_cols) {
                return Err(FitError::InitShape {
                    which: "H0",
                    expected: (self.k, n_cols),
                    found: h0.dim(),
                });
            }
            check_start("H0", h0.view(), 0)?;
        }
        let block_rows = match self.block_rows {
            Some(rows) => rows.min(n_rows),
            None => default_block_rows(n_rows, n_cols, preferred_rows),
        };
        Ok(ValidParams {
            inner: self,
            block_rows,
        })
    }
}

/// The block height used when the user does not choose one: about
/// `DEFAULT_BLOCK_BYTES` of f32 rows, rounded to a multiple of the
/// source's preferred height, never more than `n_rows`.
pub fn default_block_rows(n_rows: usize, n_cols: usize, preferred_rows: Option<usize>) -> usize {
    let target = (DEFAULT_BLOCK_BYTES / n_cols.max(1).saturating_mul(4)).max(1);
    let rows = match preferred_rows {
        Some(unit) if unit > 0 => target.div_ceil(unit).saturating_mul(unit),
        _ => target,
    };
    rows.clamp(1, n_rows.max(1))
}

/// Refuses a negative or non-finite entry of a start factor, naming it
/// (`first_row` is the row of `factor`'s first row in the whole factor).
pub(crate) fn check_start(
    which: &'static str,
    factor: ArrayView2<'_, f32>,
    first_row: usize,
) -> Result<(), FitError> {
    for ((row, col), &value) in factor.indexed_iter() {
        if !(value.is_finite() && value >= 0.0) {
            return Err(FitError::InitValue {
                which,
                row: first_row + row,
                col,
                value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(k: usize) -> NmfParams {
        NmfParams {
            k,
            ..NmfParams::default()
        }
    }

    #[test]
    fn k_zero_is_refused() {
        assert!(matches!(params(0).check(5, 5, None), Err(FitError::ZeroK)));
    }

    #[test]
    fn k_above_min_dimension_is_refused() {
        let err = params(4).check(10, 3, None).unwrap_err();
        assert!(matches!(err, FitError::KTooLarge { k: 4, .. }), "{err}");
        assert!(params(3).check(10, 3, None).is_ok());
    }

    #[test]
    fn negative_tol_is_refused() {
        let p = NmfParams {
            tol: -1.0,
            ..params(1)
        };
        assert!(matches!(p.check(2, 2, None), Err(FitError::BadTol { .. })));
    }

    #[test]
    fn zero_max_iter_and_block_rows_are_refused() {
        let p = NmfParams {
            max_iter: 0,
            ..params(1)
        };
        assert!(matches!(p.check(2, 2, None), Err(FitError::ZeroMaxIter)));
        let p = NmfParams {
            block_rows: Some(0),
            ..params(1)
        };
        assert!(matches!(p.check(2, 2, None), Err(FitError::ZeroBlockRows)));
    }

    #[test]
    fn bad_penalties_and_zero_inner_repeats_are_refused() {
        use crate::rules::{Inner, Regularization};
        for (alpha_w, alpha_h, l1_ratio, name) in [
            (-0.1, 0.0, 0.0, "alpha_W"),
            (0.0, f64::NAN, 0.0, "alpha_H"),
            (0.1, 0.1, 1.5, "l1_ratio"),
            (0.1, 0.1, -0.5, "l1_ratio"),
        ] {
            let p = NmfParams {
                regularization: Regularization {
                    alpha_w,
                    alpha_h,
                    l1_ratio,
                },
                ..params(1)
            };
            let err = p.check(2, 2, None).unwrap_err();
            assert!(
                matches!(err, FitError::BadPenalty { name: n, .. } if n == name),
                "{err}"
            );
        }
        let p = NmfParams {
            inner: Inner::Fixed(0),
            ..params(1)
        };
        assert!(matches!(p.check(2, 2, None), Err(FitError::ZeroInner)));
    }

    #[test]
    fn custom_init_shape_and_values_are_checked() {
        let p = NmfParams {
            init: Init::Custom {
                h0: Array2::ones((2, 4)),
            },
            ..params(2)
        };
        assert!(p.check(3, 5, None).is_err());
        let mut h0 = Array2::ones((2, 5));
        h0[(1, 3)] = -1.0;
        let p = NmfParams {
            init: Init::Custom { h0 },
            ..params(2)
        };
        let err = p.check(3, 5, None).unwrap_err();
        assert!(
            matches!(
                err,
                FitError::InitValue {
                    which: "H0",
                    row: 1,
                    col: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn default_block_rows_follow_the_hint() {
        assert_eq!(default_block_rows(10, 4, None), 10);
        let rows = default_block_rows(1_000_000, 1000, Some(300));
        assert_eq!(rows % 300, 0);
        assert!(rows * 1000 * 4 >= DEFAULT_BLOCK_BYTES);
    }
}
