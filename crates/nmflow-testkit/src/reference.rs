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
    let mut xs = x.mapv(f64::from);
    if scale_columns {
        let d = column_divisors(&xs);
        for (mut col, d) in xs.axis_iter_mut(Axis(1)).zip(d) {
            col.mapv_inplace(|v| v / d);
        }
    }
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
