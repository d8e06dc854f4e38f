//! Usage errors: a wrong option or combination of options, found after
//! parsing. They exit with code 2, as clap's own parse errors do; every
//! other error (bad input, I/O) exits with 1. The value parsers of the
//! options live here too.

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

/// Inner repeats: `auto` or a whole number of at least 1.
pub fn inner(text: &str) -> Result<nmflow_core::Inner, String> {
    match text.trim() {
        "auto" => Ok(nmflow_core::Inner::Auto),
        n => positive(n)
            .map(nmflow_core::Inner::Fixed)
            .map_err(|e| format!("{e} (or auto)")),
    }
}

/// A penalty α: finite and non-negative.
pub fn penalty(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(a) if a.is_finite() && a >= 0.0 => Ok(a),
        Ok(_) => Err("must be finite and non-negative".into()),
        Err(_) => Err(format!("'{text}' is not a number")),
    }
}

/// A ratio in [0, 1].
pub fn ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err("must be in [0, 1]".into()),
        Err(_) => Err(format!("'{text}' is not a number")),
    }
}

/// Values of k of a sweep, sorted, without repeats.
#[derive(Debug, Clone)]
pub struct KList(pub Vec<usize>);

/// Values of k one sweep takes at most.
const MAX_KS: usize = 1000;

/// Parses `2..12` (inclusive), `3,5,8` or `5`.
pub fn parse_ks(text: &str) -> Result<KList, String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{t}' is not a whole number"))
    };
    let ks: Vec<usize> = if let Some((a, b)) = text.split_once("..") {
        let (a, b) = (parse(a)?, parse(b.trim_start_matches('='))?);
        if a > b {
            return Err(format!("the range {a}..{b} is empty"));
        }
        if b - a >= MAX_KS {
            return Err(format!(
                "the range {a}..{b} holds {} values of k; a sweep takes at most {MAX_KS}",
                (b - a).saturating_add(1)
            ));
        }
        (a..=b).collect()
    } else {
        text.split(',').map(parse).collect::<Result<_, _>>()?
    };
    if ks.contains(&0) {
        return Err("k must be at least 1".into());
    }
    let mut sorted = ks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != ks.len() {
        return Err("a value of k is repeated".into());
    }
    Ok(KList(sorted))
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

    #[test]
    fn k_lists_parse() {
        assert_eq!(parse_ks("2..5").unwrap().0, vec![2, 3, 4, 5]);
        assert_eq!(parse_ks("8,3,5").unwrap().0, vec![3, 5, 8]);
        assert_eq!(parse_ks("4").unwrap().0, vec![4]);
        assert!(parse_ks("5..2").is_err());
        assert!(parse_ks("0..3").is_err());
        assert!(parse_ks("3,3").is_err());
        assert!(parse_ks("a").is_err());
        assert!(
            parse_ks("1..18446744073709551615")
                .unwrap_err()
                .contains("at most")
        );
    }
}
