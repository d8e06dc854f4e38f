//! The obviously correct solver the streaming engine is tested against:
//! the whole X in memory, f64, the same updates in the same order, and the
//! error computed by forming W·H.

use ndarray::{Array2, Axis};

/// Iterates of the reference solver.
#[derive(Debug, Clone)]
pub struct ReferenceFit {
    /// W after the last iteration.
    pub w: Array2<f64>,
    /// H after the last iteration.
    pub h: Array2<f64>,
    /// ‖X_s − WH‖_F / ‖X_s‖_F after every iteration.
    pub rel_error: Vec<f64>,
    /// The scaled matrix X_s.
    pub x_scaled: Array2<f64>,
}

/// Population standard deviation of every column, 1 where it is zero.
pub fn column_divisors(x: &Array2<f64>) -> Vec<f64> {
    let n = x.nrows() as f64;
    x.axis_iter(Axis(1))
        .map(|col| {
            let mean = col.sum() / n;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            if var > 0.0 { var.sqrt() } else { 1.0 }
        })
        .collect()
}

/// Runs `n_iter` multiplicative updates (H first, then W) from `w0`, `h0`,
/// on X scaled by its column standard deviations when `scale_columns`.
pub fn reference_fit(
    x: &Array2<f32>,
    w0: &Array2<f32>,
    h0: &Array2<f32>,
    scale_columns: bool,
    n_iter: usize,
) -> ReferenceFit {
    let eps = f64::from(f32::EPSILON);
    let xs = scaled(x, scale_columns);
    let x_norm = xs.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut w = w0.mapv(f64::from);
    let mut h = h0.mapv(f64::from);
    let mut rel_error = Vec::with_capacity(n_iter);
    for _ in 0..n_iter {
        let num = w.t().dot(&xs);
        let den = w.t().dot(&w).dot(&h);
        ndarray::Zip::from(&mut h)
            .and(&num)
            .and(&den)
            .for_each(|h, &n, &d| *h *= n / if d == 0.0 { eps } else { d });
        let num = xs.dot(&h.t());
        let den = w.dot(&h.dot(&h.t()));
        ndarray::Zip::from(&mut w)
            .and(&num)
            .and(&den)
            .for_each(|w, &n, &d| *w *= n / if d == 0.0 { eps } else { d });
        let residual = &xs - &w.dot(&h);
        rel_error.push(residual.iter().map(|v| v * v).sum::<f64>().sqrt() / x_norm);
    }
    ReferenceFit {
        w,
        h,
        rel_error,
        x_scaled: xs,
    }
}

/// The update of [`reference_rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceRule {
    /// Multiplicative updates.
    Mu,
    /// HALS (coordinate descent), components in order.
    Hals,
}

/// Settings of [`reference_rules`], with scikit-learn's (≥ 1.0) meanings
/// of the penalties.
#[derive(Debug, Clone, Copy)]
pub struct ReferenceSettings {
    /// The update.
    pub rule: ReferenceRule,
    /// Updates of each factor per iteration (a fixed number).
    pub repeats: usize,
    /// α_W.
    pub alpha_w: f64,
    /// α_H.
    pub alpha_h: f64,
    /// L1 ratio.
    pub l1_ratio: f64,
    /// Scale the columns by their standard deviations.
    pub scale_columns: bool,
}

/// Runs `n_iter` iterations (H first, then W, each updated `repeats`
/// times from the same products) by `settings.rule`, with the penalties
/// `l1 = size·α·ρ`, `l2 = size·α·(1 − ρ)` (size: columns for W, rows for
/// H). MU: `V ← V ∘ B ⊘ (V·G + l1 + l2·V)`, a zero denominator replaced by
/// f32's epsilon. HALS: for each component t in order,
/// `v_t ← max(0, v_t − ((G + l2 I)v − B + l1)_t / (G_tt + l2))`, skipped
/// when `G_tt + l2 = 0`. Every row of V on its own, in f64, recomputing the
/// gradient from scratch at every step.
pub fn reference_rules(
    x: &Array2<f32>,
    w0: &Array2<f32>,
    h0: &Array2<f32>,
    settings: ReferenceSettings,
    n_iter: usize,
) -> ReferenceFit {
    let xs = scaled(x, settings.scale_columns);
    let (m, n) = xs.dim();
    let x_norm = xs.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut w = w0.mapv(f64::from);
    let mut ht = h0.t().mapv(f64::from);
    let penalty = |alpha: f64, size: usize| {
        (
            size as f64 * alpha * settings.l1_ratio,
            size as f64 * alpha * (1.0 - settings.l1_ratio),
        )
    };
    let (pen_w, pen_h) = (penalty(settings.alpha_w, n), penalty(settings.alpha_h, m));
    let mut rel_error = Vec::with_capacity(n_iter);
    for _ in 0..n_iter {
        let (num, gram) = (xs.t().dot(&w), w.t().dot(&w));
        update_rows(&mut ht, &num, &gram, pen_h, settings);
        let (num, gram) = (xs.dot(&ht), ht.t().dot(&ht));
        update_rows(&mut w, &num, &gram, pen_w, settings);
        let residual = &xs - &w.dot(&ht.t());
        rel_error.push(residual.iter().map(|v| v * v).sum::<f64>().sqrt() / x_norm);
    }
    ReferenceFit {
        w,
        h: ht.t().to_owned(),
        rel_error,
        x_scaled: xs,
    }
}

/// Updates every row v of `v` from its row b of `num` and `gram`.
fn update_rows(
    v: &mut Array2<f64>,
    num: &Array2<f64>,
    gram: &Array2<f64>,
    (l1, l2): (f64, f64),
    settings: ReferenceSettings,
) {
    let eps = f64::from(f32::EPSILON);
    let k = gram.nrows();
    for (mut v, b) in v.rows_mut().into_iter().zip(num.rows()) {
        for _ in 0..settings.repeats {
            match settings.rule {
                ReferenceRule::Mu => {
                    let den = gram.dot(&v);
                    for t in 0..k {
                        let d = den[t] + l1 + l2 * v[t];
                        v[t] *= b[t] / if d == 0.0 { eps } else { d };
                    }
                }
                ReferenceRule::Hals => {
                    for t in 0..k {
                        let hess = gram[(t, t)] + l2;
                        if hess == 0.0 {
                            continue;
                        }
                        let grad = gram.row(t).dot(&v) + l2 * v[t] - b[t] + l1;
                        v[t] = (v[t] - grad / hess).max(0.0);
                    }
                }
            }
        }
    }
}

/// X in f64, its columns divided by their standard deviations when
/// `scale_columns`.
fn scaled(x: &Array2<f32>, scale_columns: bool) -> Array2<f64> {
    let mut xs = x.mapv(f64::from);
    if scale_columns {
        let d = column_divisors(&xs);
        for (mut col, d) in xs.axis_iter_mut(Axis(1)).zip(d) {
            col.mapv_inplace(|v| v / d);
        }
    }
    xs
}

/// Runs `n_iter` Kullback–Leibler multiplicative updates (H first, then W)
/// as scikit-learn's `beta_loss=1` does them: X_s ⊘ WH with WH raised to
/// f32's epsilon where below it; H ← H ∘ Wᵀ(X_s ⊘ WH) ⊘ colsum(W) (a column
/// sum of 0 taken as 1), then entries of H below f64's epsilon set to 0;
/// W ← W ∘ (X_s ⊘ WH)Hᵀ ⊘ rowsum(H); a zero denominator replaced by f32's
/// epsilon. `rel_error` holds sqrt(2 D(X_s ‖ WH)) / ‖X_s‖_F, D summing
/// x ln(x / WH) over the entries above f32's epsilon.
pub fn reference_kl(
    x: &Array2<f32>,
    w0: &Array2<f32>,
    h0: &Array2<f32>,
    scale_columns: bool,
    n_iter: usize,
) -> ReferenceFit {
    let eps = f64::from(f32::EPSILON);
    let xs = scaled(x, scale_columns);
    let x_norm = xs.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut w = w0.mapv(f64::from);
    let mut h = h0.mapv(f64::from);
    let ratio = |w: &Array2<f64>, h: &Array2<f64>| {
        let mut r = w.dot(h);
        ndarray::Zip::from(&mut r)
            .and(&xs)
            .for_each(|r, &x| *r = x / r.max(eps));
        r
    };
    let mut rel_error = Vec::with_capacity(n_iter);
    for _ in 0..n_iter {
        let num = w.t().dot(&ratio(&w, &h));
        let w_sum: Vec<f64> = w
            .axis_iter(Axis(1))
            .map(|c| c.sum())
            .map(|s| if s == 0.0 { 1.0 } else { s })
            .collect();
        for ((mut h_row, num_row), &d) in h.rows_mut().into_iter().zip(num.rows()).zip(&w_sum) {
            for (h, &n) in h_row.iter_mut().zip(num_row) {
                *h *= n / if d == 0.0 { eps } else { d };
                if *h < f64::EPSILON {
                    *h = 0.0;
                }
            }
        }
        let num = ratio(&w, &h).dot(&h.t());
        let h_sum: Vec<f64> = h.rows().into_iter().map(|r| r.sum()).collect();
        for (mut w_row, num_row) in w.rows_mut().into_iter().zip(num.rows()) {
            for ((w, &n), &d) in w_row.iter_mut().zip(num_row).zip(&h_sum) {
                *w *= n / if d == 0.0 { eps } else { d };
            }
        }
        let wh = w.dot(&h);
        let mut divergence = wh.sum() - xs.sum();
        for (&x, &v) in xs.iter().zip(wh.iter()) {
            if x > eps {
                divergence += x * (x / v.max(eps)).ln();
            }
        }
        rel_error.push((2.0 * divergence.max(0.0)).sqrt() / x_norm);
    }
    ReferenceFit {
        w,
        h,
        rel_error,
        x_scaled: xs,
    }
}

/// The largest difference between `a` and `b`, relative to the largest
/// magnitude of `b`.
pub fn max_rel_diff(a: &Array2<f32>, b: &Array2<f64>) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - y).abs() / scale)
        .fold(0.0, f64::max)
}

/// Asserts that a fit's W, H (within 1e-3 of their largest entries) and
/// error trace (within 1e-4 at every iteration) are the reference's;
/// `label` names the case in the message.
pub fn assert_matches_reference(
    reference: &ReferenceFit,
    w: &Array2<f32>,
    h: &Array2<f32>,
    rel_error: &[f64],
    label: &str,
) {
    let dw = max_rel_diff(w, &reference.w);
    let dh = max_rel_diff(h, &reference.h);
    assert!(dw < 1e-3 && dh < 1e-3, "{label}: dW {dw:e}, dH {dh:e}");
    assert_eq!(rel_error.len(), reference.rel_error.len(), "{label}");
    for (it, (got, want)) in rel_error.iter().zip(&reference.rel_error).enumerate() {
        assert!(
            (got - want).abs() < 1e-4,
            "{label}, iteration {}: {got} vs {want}",
            it + 1
        );
    }
}
