//! Each program's top genes: the table `nmflow top-genes` prints and `fit`
//! and `sweep` write beside each result (`<result>.programs.tsv`).
//!
//! Two scores per (program, gene), both from the loadings in the units of
//! the matrix factorized (H, not the column-scaled H_scaled):
//! - **loading**: H[p, g], what the program adds to the gene's expression
//!   (genes expressed highly everywhere, e.g. ribosomal ones, rank high in
//!   many programs);
//! - **specificity**: the z-score of the gene's loading across the k
//!   programs, (H[p, g] − mean_p' H[p', g]) / std_p' H[p', g] (population
//!   standard deviation; 0 for a gene loaded equally everywhere), as cNMF
//!   reads its spectra: marker genes of the program rank high.

use std::fmt::Write as _;

use ndarray::ArrayView2;

/// What the programs' genes are ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    /// The loading H[p, g].
    Loading,
    /// The z-score of the loading across programs.
    Specificity,
}

impl RankBy {
    /// The name used on the command line and in the table's header.
    pub fn as_str(self) -> &'static str {
        match self {
            RankBy::Loading => "loading",
            RankBy::Specificity => "specificity",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramGene {
    /// The program (component), from 0.
    pub program: usize,
    /// The gene's rank in the program, from 1.
    pub rank: usize,
    /// The gene's index (column of H).
    pub gene: usize,
    /// H[program, gene].
    pub loading: f32,
    /// The z-score of the loading across programs.
    pub specificity: f64,
}

/// The z-score of every loading across programs (`k × n_genes`, as H).
pub fn specificity(h: ArrayView2<'_, f32>) -> ndarray::Array2<f64> {
    let k = h.nrows() as f64;
    let mut z = h.mapv(f64::from);
    for mut gene in z.columns_mut() {
        let mean = gene.sum() / k;
        let var = gene.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k;
        let std = var.sqrt();
        gene.mapv_inplace(|v| if std > 0.0 { (v - mean) / std } else { 0.0 });
    }
    z
}

/// The `n` top genes of every program of `h` (`k × n_genes`, loadings in
/// the data's units) by `by`; ties go to the higher other score, then to
/// the lower gene index.
pub fn top_genes(h: ArrayView2<'_, f32>, n: usize, by: RankBy) -> Vec<ProgramGene> {
    let z = specificity(h);
    let mut rows = Vec::with_capacity(h.nrows() * n.min(h.ncols()));
    for program in 0..h.nrows() {
        let key = |g: usize| {
            let (l, s) = (f64::from(h[(program, g)]), z[(program, g)]);
            match by {
                RankBy::Loading => (l, s),
                RankBy::Specificity => (s, l),
            }
        };
        let mut genes: Vec<usize> = (0..h.ncols()).collect();
        genes.sort_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            kb.0.total_cmp(&ka.0)
                .then(kb.1.total_cmp(&ka.1))
                .then(a.cmp(&b))
        });
        rows.extend(
            genes
                .into_iter()
                .take(n)
                .enumerate()
                .map(|(i, gene)| ProgramGene {
                    program,
                    rank: i + 1,
                    gene,
                    loading: h[(program, gene)],
                    specificity: z[(program, gene)],
                }),
        );
    }
    rows
}

/// The table as tab-separated text with a header (`program`, `rank`,
/// `gene`, `loading`, `specificity`), readable by pandas' `read_csv(sep="\t")`
/// and R's `read.delim` without options. Genes are named by `names` (the
/// result's column names) or, without them, `gene_<index>`; tabs and line
/// breaks in a name become spaces.
pub fn programs_tsv(rows: &[ProgramGene], names: Option<&[String]>) -> String {
    let mut out = String::from("program\trank\tgene\tloading\tspecificity\n");
    for row in rows {
        let name = match names.and_then(|n| n.get(row.gene)) {
            Some(name) => name.replace(['\t', '\n', '\r'], " "),
            None => format!("gene_{}", row.gene),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{name}\t{}\t{:.4}",
            row.program, row.rank, row.loading, row.specificity
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_gene_loaded_everywhere_ranks_by_loading_not_by_specificity() {
        // Gene 0 high in every program (housekeeping), gene 1 only in
        // program 0, gene 2 only in program 1.
        let h = array![[10.0f32, 2.0, 0.0], [9.0, 0.0, 3.0], [9.5, 0.0, 0.0]];
        let by_loading = top_genes(h.view(), 2, RankBy::Loading);
        assert_eq!(
            by_loading
                .iter()
                .map(|r| (r.program, r.gene))
                .collect::<Vec<_>>(),
            vec![(0, 0), (0, 1), (1, 0), (1, 2), (2, 0), (2, 1)]
        );
        let by_specificity = top_genes(h.view(), 1, RankBy::Specificity);
        assert_eq!(
            by_specificity
                .iter()
                .map(|r| (r.program, r.gene))
                .collect::<Vec<_>>(),
            vec![(0, 1), (1, 2), (2, 0)]
        );
        let z = specificity(h.view());
        // Gene 1: loadings 2, 0, 0: mean 2/3, population std √8/3.
        let expected = (2.0 - 2.0 / 3.0) / (8.0f64.sqrt() / 3.0);
        assert!((z[(0, 1)] - expected).abs() < 1e-12, "{}", z[(0, 1)]);
        assert!(specificity(array![[1.0f32], [1.0]].view())[(0, 0)] == 0.0);
    }

    #[test]
    fn the_table_has_a_header_and_one_line_per_row() {
        let h = array![[1.0f32, 3.0], [2.0, 0.5]];
        let names = vec!["A\tB".to_owned(), "C".to_owned()];
        let text = programs_tsv(&top_genes(h.view(), 2, RankBy::Loading), Some(&names));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "program\trank\tgene\tloading\tspecificity");
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[1], "0\t1\tC\t3\t1.0000");
        assert_eq!(lines[2], "0\t2\tA B\t1\t-1.0000");
        assert!(programs_tsv(&top_genes(h.view(), 1, RankBy::Loading), None).contains("gene_1"));
    }
}
