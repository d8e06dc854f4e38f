//! `nmflow top-genes`: each program's top genes of a result, and the same
//! table `fit` and `sweep` write beside each result they write.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nmflow_io::output::FitOutput;
use nmflow_report::{RankBy, programs_tsv, top_genes};

use crate::args::TopGenesArgs;

/// Genes per program in the table written beside every result.
pub const BESIDE_RESULT: usize = 50;

pub fn run(args: TopGenesArgs) -> Result<()> {
    let result = nmflow_io::read_result(&args.result, 0)?;
    let rows = top_genes(result.h.view(), args.n, args.by.rank_by());
    let text = programs_tsv(&rows, result.col_names.as_deref());
    match &args.output {
        Some(path) => nmflow_report::write_atomically(path, text.as_bytes())
            .with_context(|| format!("{}: writing the table", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Where the table of the result at `result` goes: beside it, its name with
/// `.programs.tsv` for the extension (`run.h5` → `run.programs.tsv`).
pub fn beside(result: &Path) -> PathBuf {
    result.with_extension("programs.tsv")
}

/// Writes the table of `output`'s loadings (in the data's units) beside the
/// result at `result`, ranked by loading ([`BESIDE_RESULT`] genes per
/// program), genes named by `names`.
pub fn write_beside(
    result: &Path,
    output: &FitOutput<'_>,
    names: Option<&[String]>,
) -> Result<PathBuf> {
    let path = beside(result);
    let h = nmflow_io::output::input_units(output.h, output.col_scale);
    let text = programs_tsv(&top_genes(h.view(), BESIDE_RESULT, RankBy::Loading), names);
    nmflow_report::write_atomically(&path, text.as_bytes())
        .with_context(|| format!("{}: writing the programs' top genes", path.display()))?;
    Ok(path)
}
