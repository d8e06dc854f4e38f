//! The tables of a sweep as sweep.json holds them: written by `sweep`, read
//! back by `report` through the same types.

use serde::{Deserialize, Serialize};

/// One row of sweep.tsv.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KSummary {
    pub k: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub best_rel_error: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_rel_error: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub sd_rel_error: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub cophenetic: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub spectra_stability: f64,
    pub ari: Option<f64>,
    pub nmi: Option<f64>,
    pub mean_ari: Option<f64>,
    pub mean_nmi: Option<f64>,
    pub best_restart: usize,
    pub best_seed: u64,
    pub result: String,
    pub best_rel_error_trace: Vec<f64>,
}

/// One (k, restart) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub k: usize,
    pub restart: usize,
    pub seed: u64,
    pub n_iter: usize,
    pub converged: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub rel_error: f64,
    pub ari: Option<f64>,
    pub nmi: Option<f64>,
}

/// The content of sweep.json.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepSummary {
    pub input: String,
    pub n_rows: usize,
    pub n_cols: usize,
    pub ks: Vec<usize>,
    pub restarts: usize,
    pub seed: u64,
    pub max_iter: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub tol: f64,
    /// The update rule (`mu` in files written before there was a choice).
    #[serde(default = "mu")]
    pub solver: String,
    /// Inner repeats per pass (`1` in files written before there was a choice).
    #[serde(default = "one")]
    pub inner: String,
    /// The loss (`frobenius` in files written before there was a choice).
    #[serde(default = "frobenius")]
    pub beta_loss: String,
    /// How every restart started (`random` in files written before there was a choice).
    #[serde(default = "random")]
    pub init: String,
    pub normalize: String,
    pub scale: String,
    pub labels: Option<String>,
    pub n_sample_rows: usize,
    pub per_k: Vec<KSummary>,
    pub runs: Vec<RunSummary>,
}

fn mu() -> String {
    "mu".into()
}

fn one() -> String {
    "1".into()
}

fn frobenius() -> String {
    "frobenius".into()
}

fn random() -> String {
    "random".into()
}

/// JSON has no NaN: serde_json writes it as `null`, read back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_goes_out_as_null_and_comes_back() {
        let row = RunSummary {
            k: 2,
            restart: 0,
            seed: 1,
            n_iter: 3,
            converged: false,
            rel_error: f64::NAN,
            ari: None,
            nmi: Some(0.5),
        };
        let text = serde_json::to_string(&row).expect("json");
        assert!(text.contains("\"rel_error\":null"), "{text}");
        let back: RunSummary = serde_json::from_str(&text).expect("read back");
        assert!(back.rel_error.is_nan());
        assert_eq!(back.nmi, Some(0.5));
    }
}
