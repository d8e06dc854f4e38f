//! The update rules: how H and a chunk of W's rows change, given the
//! products one pass accumulates. The engine ([`crate::solver`]) owns the
//! pass: it reads each block of X once, forms X_s Hᵀ for the block's rows,
//! accumulates WᵀX and WᵀW for the next H update, and computes the error
//! from the accumulated products. A solver adds an [`UpdateRule`] and its
//! tests, not a pass.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels;

/// The algorithm that updates the factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    /// Lee & Seung multiplicative updates (H first, then W), the seed's
    /// algorithm, bit for bit.
    #[default]
    Mu,
}

impl Solver {
    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Solver::Mu => "mu",
        }
    }
}

/// What a solver does with the products of a pass. Called on column
/// chunks of H and row chunks of W, in parallel: implementations hold no
/// state.
pub(crate) trait UpdateRule: Sync {
    /// Updates columns `h` (`k × c`) of H from the same columns of WᵀX_s
    /// (`wtx`) and WᵀW (`k × k`); `scratch` is `k × c`.
    fn update_h_cols(
        &self,
        h: ArrayViewMut2<'_, f32>,
        wtx: ArrayView2<'_, f32>,
        wtw: ArrayView2<'_, f32>,
        scratch: ArrayViewMut2<'_, f32>,
    );

    /// Updates rows `w` (`b × k`) of W from the same rows of X_s Hᵀ (`xht`)
    /// and HHᵀ (`k × k`); adds the new rows' WᵀW into `wtw` and returns
    /// ⟨W_new, X_s Hᵀ⟩ over the rows (the error needs both). `den` is
    /// `b × k` scratch, `gram` `k × k` scratch.
    fn update_w_rows(
        &self,
        w: ArrayViewMut2<'_, f32>,
        xht: ArrayView2<'_, f32>,
        hht: ArrayView2<'_, f32>,
        wtw: ArrayViewMut2<'_, f64>,
        den: ArrayViewMut2<'_, f32>,
        gram: ArrayViewMut2<'_, f32>,
    ) -> f64;
}

/// Lee & Seung's multiplicative updates ([`kernels::update_h_cols`],
/// [`kernels::update_w_rows`]).
struct Multiplicative;

impl UpdateRule for Multiplicative {
    fn update_h_cols(
        &self,
        h: ArrayViewMut2<'_, f32>,
        wtx: ArrayView2<'_, f32>,
        wtw: ArrayView2<'_, f32>,
        scratch: ArrayViewMut2<'_, f32>,
    ) {
        kernels::update_h_cols(h, wtx, wtw, scratch);
    }

    fn update_w_rows(
        &self,
        w: ArrayViewMut2<'_, f32>,
        xht: ArrayView2<'_, f32>,
        hht: ArrayView2<'_, f32>,
        wtw: ArrayViewMut2<'_, f64>,
        den: ArrayViewMut2<'_, f32>,
        gram: ArrayViewMut2<'_, f32>,
    ) -> f64 {
        kernels::update_w_rows(w, xht, hht, wtw, den, gram)
    }
}

/// The rule of `solver`.
pub(crate) fn rule(solver: Solver) -> &'static dyn UpdateRule {
    match solver {
        Solver::Mu => &Multiplicative,
    }
}
