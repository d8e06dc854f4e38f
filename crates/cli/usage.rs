//! Usage errors: a wrong option or combination of options, found after
//! parsing. They exit with code 2, as clap's own parse errors do; every
//! other error (bad input, I/O) exits with 1.

use std::fmt;

/// An error in how nmflow was called.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`] built like `format!`.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::usage::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// Whether `err` (or one of its causes) is a usage error.
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<UsageError>())
}

/// A whole number of at least 1 (clap value parser).
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// The number of components of `fit`: a whole number of at least 1; a
/// range or list is pointed to `nmflow sweep`.
pub fn one_k(text: &str) -> Result<usize, String> {
    if text.contains("..") || text.contains(',') {
        return Err(format!(
            "'{text}' is several values of k: `nmflow fit` takes one; ranges and lists of k \
             belong to `nmflow sweep` (nmflow sweep INPUT -k {text} -o DIR)"
        ));
    }
    positive(text).map_err(|e| format!("k {e}"))
}

/// A tolerance: finite and non-negative.
pub fn tolerance(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(_) => Err("must be finite and non-negative (0 runs every iteration)".into()),
        Err(_) => Err(format!("'{text}' is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_ranges_point_to_sweep_and_zero_is_refused() {
        assert!(one_k("2..8").unwrap_err().contains("nmflow sweep"));
        assert!(one_k("0").unwrap_err().contains("at least 1"));
        assert_eq!(one_k("7"), Ok(7));
        assert!(tolerance("nan").is_err() && tolerance("-1").is_err());
        assert_eq!(tolerance("1e-4"), Ok(1e-4));
    }
}
