//! The update rules: how H and a chunk of W's rows change, given the
//! products one pass accumulates. The engine ([`crate::solver`]) owns the
//! pass: it reads each block of X once, forms X_s Hᵀ for the block's rows,
//! accumulates WᵀX and WᵀW for the next H update, and computes the error
//! from the accumulated products. A solver adds an [`UpdateRule`] and its
//! tests, not a pass.
//!
//! Both rules can repeat their update on the products of one pass (the
//! inner repeats of Gillis & Glineur 2012), row by row of W and column by
//! column of H, so that no row's result depends on the block or chunk it
//! is computed in.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::kernels::{self, Penalty, RowUpdate, Sweeps};
use crate::params::NmfParams;

/// The algorithm that updates the factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    /// Lee & Seung multiplicative updates (H first, then W), the seed's
    /// algorithm, bit for bit (with one update per pass and no penalty).
    #[default]
    Mu,
    /// Hierarchical alternating least squares (Cichocki & Phan 2009;
    /// scikit-learn's `cd`): exact coordinate descent, component by
    /// component, H first, then W.
    Hals,
}

impl Solver {
    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Solver::Mu => "mu",
            Solver::Hals => "hals",
        }
    }

    /// The solver named `name` ([`Solver::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Solver::Mu, Solver::Hals]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The inner repeats a user gets without asking: plain updates for
    /// `mu` (the seed's iterates), Gillis & Glineur's rule for `hals`
    /// (the fastest to every error threshold measured in
    /// docs/benchmarks.md).
    pub fn default_inner(self) -> Inner {
        match self {
            Solver::Mu => Inner::Fixed(1),
            Solver::Hals => Inner::Auto,
        }
    }
}

/// The loss the factors minimise (scikit-learn's `beta_loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// ‖X_s − WH‖²_F.
    #[default]
    Frobenius,
    /// The generalized Kullback–Leibler divergence
    /// D(X_s ‖ WH) = Σ x ln(x / (WH)) − x + (WH), by multiplicative
    /// updates (Lee & Seung 2001; scikit-learn's `beta_loss=1`).
    KullbackLeibler,
}

impl Loss {
    /// The name used on the command line and in result files
    /// (scikit-learn's).
    pub fn as_str(self) -> &'static str {
        match self {
            Loss::Frobenius => "frobenius",
            Loss::KullbackLeibler => "kullback-leibler",
        }
    }

    /// The loss named `name` ([`Loss::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Loss::Frobenius, Loss::KullbackLeibler]
            .into_iter()
            .find(|l| l.as_str() == name)
    }
}

/// The penalties (W's, H's) of a run with `params` on an
/// `n_rows × n_cols` matrix.
pub(crate) fn penalties(params: &NmfParams, n_rows: usize, n_cols: usize) -> (Penalty, Penalty) {
    let reg = params.regularization;
    (
        Regularization::penalty(reg.alpha_w, reg.l1_ratio, n_cols),
        Regularization::penalty(reg.alpha_h, reg.l1_ratio, n_rows),
    )
}

/// How often a factor is updated from the products of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    /// Gillis & Glineur's rule, per row of W and per column of H: repeat
    /// while a sweep still changes the row by more than [`INNER_DELTA`]
    /// times the first sweep's change, at most `1 + ⌊α ρ⌋` times, with
    /// α = [`INNER_ALPHA`] and ρ the cost of the products over the cost of
    /// one update (their ρ_W, ρ_H).
    Auto,
    /// Exactly this many updates (1 = plain alternating updates).
    Fixed(usize),
}

impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::Auto => f.write_str("auto"),
            Inner::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// α of Gillis & Glineur's cap on inner repeats (their choice for A-HALS).
pub const INNER_ALPHA: f64 = 0.5;
/// δ of the inner stopping rule (Gillis & Glineur use 0.01 for the whole
/// factor; per row, 0.1 reached every error threshold soonest on the seed
/// data, docs/benchmarks.md).
pub const INNER_DELTA: f64 = 0.1;

/// scikit-learn's (≥ 1.0) regularization: α_W, α_H and the L1 ratio ρ.
/// The penalties are `n_cols·α_W·ρ` (L1) and `n_cols·α_W·(1 − ρ)` (L2) for
/// W, `n_rows·α_H·ρ` and `n_rows·α_H·(1 − ρ)` for H.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularization {
    /// α_W, ≥ 0.
    pub alpha_w: f64,
    /// α_H, ≥ 0.
    pub alpha_h: f64,
    /// The share of L1 in both penalties, in [0, 1].
    pub l1_ratio: f64,
}

impl Regularization {
    /// Whether no penalty applies.
    pub fn is_none(&self) -> bool {
        self.alpha_w == 0.0 && self.alpha_h == 0.0
    }

    fn penalty(alpha: f64, l1_ratio: f64, size: usize) -> Penalty {
        Penalty {
            l1: (size as f64 * alpha * l1_ratio) as f32,
            l2: (size as f64 * alpha * (1.0 - l1_ratio)) as f32,
        }
    }
}

/// What a solver does with the products of a pass. Called on column
/// chunks of H and row chunks of W, in parallel: implementations hold no
/// state that changes.
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

/// The settings a rule applies on both sides.
#[derive(Debug, Clone, Copy)]
struct Sides {
    w_penalty: Penalty,
    h_penalty: Penalty,
    w_sweeps: Sweeps,
    h_sweeps: Sweeps,
}

impl Sides {
    fn new(params: &NmfParams, n_rows: usize, n_cols: usize, n_stored: u64) -> Self {
        let k = params.k as f64;
        // Gillis & Glineur's ρ: flops of the products over flops of one update.
        let stored = n_stored as f64;
        let (m, n) = (n_rows as f64, n_cols as f64);
        let rho_w = 1.0 + ((stored + n * k) / (m * (k + 1.0))).floor();
        let rho_h = 1.0 + ((stored + m * k) / (n * (k + 1.0))).floor();
        let sweeps = |rho: f64| match params.inner {
            Inner::Fixed(n) => Sweeps::Fixed(n.max(1)),
            Inner::Auto => Sweeps::UntilSettled {
                cap: 1 + (INNER_ALPHA * rho).floor() as usize,
                rel_change_sq: (INNER_DELTA * INNER_DELTA) as f32,
            },
        };
        let (w_penalty, h_penalty) = penalties(params, n_rows, n_cols);
        Self {
            w_penalty,
            h_penalty,
            w_sweeps: sweeps(rho_w),
            h_sweeps: sweeps(rho_h),
        }
    }

    /// Whether these are the seed's plain updates (one, no penalty).
    fn plain(&self) -> bool {
        self.w_sweeps == Sweeps::Fixed(1)
            && self.h_sweeps == Sweeps::Fixed(1)
            && self.w_penalty == Penalty::default()
            && self.h_penalty == Penalty::default()
    }
}

/// Applies a row kernel to columns of H: holds them (and the same columns
/// of WᵀX_s) as rows, runs `kernel`, and writes them back.
fn on_h_columns(
    mut h: ArrayViewMut2<'_, f32>,
    wtx: ArrayView2<'_, f32>,
    kernel: impl FnOnce(ArrayViewMut2<'_, f32>, ArrayView2<'_, f32>),
) {
    let mut rows: Array2<f32> = h.t().as_standard_layout().into_owned();
    let num: Array2<f32> = wtx.t().as_standard_layout().into_owned();
    kernel(rows.view_mut(), num.view());
    h.assign(&rows.t());
}

/// A rule: row by row ([`kernels::update_rows`]) on both factors, or, for
/// the seed's plain multiplicative updates, the matrix-product kernels
/// ([`kernels::update_h_cols`], [`kernels::update_w_rows`]) bit for bit.
struct RowRule {
    update: RowUpdate,
    sides: Sides,
}

impl RowRule {
    /// The seed's plain multiplicative updates.
    fn plain(&self) -> bool {
        self.update == RowUpdate::Mu && self.sides.plain()
    }
}

impl UpdateRule for RowRule {
    fn update_h_cols(
        &self,
        h: ArrayViewMut2<'_, f32>,
        wtx: ArrayView2<'_, f32>,
        wtw: ArrayView2<'_, f32>,
        scratch: ArrayViewMut2<'_, f32>,
    ) {
        if self.plain() {
            return kernels::update_h_cols(h, wtx, wtw, scratch);
        }
        let mut row_scratch = vec![0.0; wtw.nrows()];
        on_h_columns(h, wtx, |rows, num| {
            kernels::update_rows(
                self.update,
                rows,
                num,
                wtw,
                self.sides.h_penalty,
                self.sides.h_sweeps,
                &mut row_scratch,
            )
        });
    }

    fn update_w_rows(
        &self,
        mut w: ArrayViewMut2<'_, f32>,
        xht: ArrayView2<'_, f32>,
        hht: ArrayView2<'_, f32>,
        wtw: ArrayViewMut2<'_, f64>,
        den: ArrayViewMut2<'_, f32>,
        gram: ArrayViewMut2<'_, f32>,
    ) -> f64 {
        if self.plain() {
            return kernels::update_w_rows(w, xht, hht, wtw, den, gram);
        }
        // The first row of the `b × k` scratch serves the row kernel: no
        // allocation per chunk.
        let k = hht.nrows();
        let row_scratch = den
            .into_slice()
            .map(|all| &mut all[..k])
            .expect("the W update's scratch is in standard layout");
        kernels::update_rows(
            self.update,
            w.view_mut(),
            xht,
            hht,
            self.sides.w_penalty,
            self.sides.w_sweeps,
            row_scratch,
        );
        kernels::w_rows_products(w.view(), xht, wtw, gram)
    }
}

/// The rule of a run with `params` on an `n_rows × n_cols` matrix with
/// `n_stored` stored entries (the inner repeats' cap depends on them).
pub(crate) fn rule(
    params: &NmfParams,
    n_rows: usize,
    n_cols: usize,
    n_stored: u64,
) -> Box<dyn UpdateRule> {
    let sides = Sides::new(params, n_rows, n_cols, n_stored);
    let update = match params.solver {
        Solver::Mu => RowUpdate::Mu,
        Solver::Hals => RowUpdate::Hals,
    };
    Box::new(RowRule { update, sides })
}
