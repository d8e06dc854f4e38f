//! Agreement between two clusterings of the same rows: the adjusted Rand
//! index (Hubert & Arabie 1985) and the normalised mutual information with
//! the arithmetic-mean normalisation (scikit-learn's default).

use std::collections::{BTreeMap, HashMap};

/// The contingency table of two labelings: counts per (a, b) pair, and
/// the marginal counts.
struct Contingency {
    cells: Vec<u64>,
    a_counts: Vec<u64>,
    b_counts: Vec<u64>,
    n: u64,
}

fn contingency(a: &[u32], b: &[u32]) -> Contingency {
    assert_eq!(a.len(), b.len(), "labelings of different lengths");
    let mut a_ids = HashMap::new();
    let mut b_ids = HashMap::new();
    // Ordered: the cells are summed in a fixed order, so the scores are the
    // same to the last bit in every run.
    let mut pairs: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        let next_a = a_ids.len();
        let i = *a_ids.entry(x).or_insert(next_a);
        let next_b = b_ids.len();
        let j = *b_ids.entry(y).or_insert(next_b);
        *pairs.entry((i, j)).or_default() += 1;
    }
    let mut a_counts = vec![0u64; a_ids.len()];
    let mut b_counts = vec![0u64; b_ids.len()];
    let mut cells = Vec::with_capacity(pairs.len());
    for (&(i, j), &c) in &pairs {
        a_counts[i] += c;
        b_counts[j] += c;
        cells.push(c);
    }
    Contingency {
        cells,
        a_counts,
        b_counts,
        n: a.len() as u64,
    }
}

fn pairs(n: u64) -> f64 {
    let n = n as f64;
    n * (n - 1.0) / 2.0
}

/// The adjusted Rand index of two labelings of the same rows: 1 for
/// identical partitions (up to renaming), about 0 for independent ones.
/// Two labelings that each put every row in one cluster score 1.
///
/// # Panics
/// If the labelings have different lengths.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    let t = contingency(a, b);
    let index: f64 = t.cells.iter().map(|&c| pairs(c)).sum();
    let sum_a: f64 = t.a_counts.iter().map(|&c| pairs(c)).sum();
    let sum_b: f64 = t.b_counts.iter().map(|&c| pairs(c)).sum();
    let total = pairs(t.n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_a * sum_b / total;
    let max = (sum_a + sum_b) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

fn entropy(counts: &[u64], n: f64) -> f64 {
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// The normalised mutual information of two labelings,
/// MI(a, b) / ((H(a) + H(b)) / 2): 1 for identical partitions, 0 for
/// independent ones. Two single-cluster labelings score 1.
///
/// # Panics
/// If the labelings have different lengths.
pub fn normalized_mutual_info(a: &[u32], b: &[u32]) -> f64 {
    let t = contingency(a, b);
    if t.a_counts.len() == 1 && t.b_counts.len() == 1 {
        return 1.0;
    }
    let n = t.n as f64;
    let h_a = entropy(&t.a_counts, n);
    let h_b = entropy(&t.b_counts, n);
    // MI = H(a) + H(b) − H(a, b).
    let h_ab = entropy(&t.cells, n);
    let mi = (h_a + h_b - h_ab).max(0.0);
    let norm = (h_a + h_b) / 2.0;
    if norm <= 0.0 {
        0.0
    } else {
        (mi / norm).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_the_same_to_the_last_bit_every_time() {
        let a: Vec<u32> = (0..5000u32).map(|i| (i * 7919) % 23).collect();
        let b: Vec<u32> = (0..5000u32).map(|i| (i * 104_729 + i / 3) % 31).collect();
        let nmi = normalized_mutual_info(&a, &b);
        let ari = adjusted_rand_index(&a, &b);
        for _ in 0..50 {
            assert_eq!(normalized_mutual_info(&a, &b).to_bits(), nmi.to_bits());
            assert_eq!(adjusted_rand_index(&a, &b).to_bits(), ari.to_bits());
        }
    }

    // Values from scikit-learn 1.x's `adjusted_rand_score` and
    // `normalized_mutual_info_score` documentation and by hand.
    #[test]
    fn ari_known_values() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 1]), 1.0);
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        assert!((adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]) - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(adjusted_rand_index(&[0, 0, 0, 0], &[0, 1, 2, 3]), 0.0);
        // scikit-learn: adjusted_rand_score([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.24242424...
        let v = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]);
        assert!((v - 8.0 / 33.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn nmi_known_values() {
        assert_eq!(normalized_mutual_info(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        assert_eq!(normalized_mutual_info(&[0, 0, 0, 0], &[0, 1, 2, 3]), 0.0);
        // b determines a: MI = H(a) = ln 2, H(b) = 1.5 ln 2, NMI = 1 / 1.25.
        let v = normalized_mutual_info(&[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((v - 0.8).abs() < 1e-12, "{v}");
    }
}
