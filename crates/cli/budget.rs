//! Memory budgets: parsing sizes, the default budget.

use anyhow::{Result, bail};
use nmflow_core::{Budget, BudgetSource};

/// Parses `2GiB`, `512MiB`, `1.5G`, `300M`, `4096` (bytes). K, M, G, T and
/// their `iB` forms are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 2GiB, 512MiB or 1.5G"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    let bytes = value * factor;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("'{text}' is not a positive size"));
    }
    Ok(bytes as u64)
}

/// Human-readable bytes.
pub fn human(bytes: u64) -> String {
    nmflow_core::plan::Bytes(bytes).to_string()
}

/// The budget: `--memory`, or half of the available memory.
pub fn budget(given: Option<u64>) -> Result<Budget> {
    if let Some(bytes) = given {
        return Ok(Budget {
            bytes,
            source: BudgetSource::Given,
        });
    }
    match crate::system::available_memory() {
        Some(available) => Ok(Budget {
            bytes: available / 2,
            source: BudgetSource::HalfOfAvailable { available },
        }),
        None => bail!("cannot read the available memory; give a budget with --memory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("0").is_err());
    }
}
