//! NNDSVD starts for `fit --init nndsvd|nndsvda|nndsvdar`: the streamed
//! randomized SVD of the core writes W₀ into a temporary `.npy` file beside
//! the other temporary files, which the session then streams into every
//! run's W like a `--w0` file (the same checks, the same memory plan).

use std::io::Write;

use anyhow::{Context, Result};
use nmflow_core::{FactorStore, Init, NndsvdFill, NndsvdRequest, POWER_ITERATIONS};
use nmflow_io::factor_file::MappedFactor;
use nmflow_io::npy::{NpyValue, header_bytes, write_values};
use tempfile::TempPath;

use crate::args::FitArgs;
use crate::progress::Progress;
use crate::session::{self, Input, Prepared};

/// The temporary `.npy` file holding W₀ (removed when dropped).
pub struct NndsvdFiles {
    pub w0: TempPath,
}

/// Computes the NNDSVD start `fill` of the fit `args` asks for on `input`,
/// with the blocks and threads of `prepared` (whose run then starts from
/// it: its parameters get H₀; the caller streams the file of W₀).
pub fn nndsvd_start(
    args: &FitArgs,
    input: &mut Input,
    fill: NndsvdFill,
    prepared: &mut Prepared,
) -> Result<NndsvdFiles> {
    let (n_rows, n_cols) = (input.n_rows(), input.n_cols());
    let params = session::core_params(&args.run, args.k, args.run.seed, Init::Random);
    let request = NndsvdRequest {
        k: args.k,
        seed: args.run.seed,
        normalize: params.normalize,
        scale: params.scale,
        block_rows: prepared.plan.block_rows,
        fill,
        power_iterations: POWER_ITERATIONS,
    };
    let dir = input.tmp_dir();
    let l = request.basis_cols(prepared.share(n_rows).n_rows, n_cols);
    let mut basis = MappedFactor::new(n_rows, l, &dir)?;
    let mut w0 = MappedFactor::new(n_rows, args.k, &dir)?;
    let quiet = args.run.quiet || args.run.json;
    if !quiet {
        eprintln!(
            "start: {} from a randomized SVD of X ({} passes over X)",
            fill.as_str(),
            3 + 2 * POWER_ITERATIONS
        );
    }
    let progress = Progress::new(n_rows, 1, quiet, fill.as_str());
    let shard = prepared.share(n_rows);
    let start = prepared
        .pool
        .install(|| {
            nmflow_core::nndsvd_sharded(
                shard,
                input.opened.source.as_mut(),
                &request,
                &mut basis,
                &mut w0,
                &mut |event| progress.on_event(event),
            )
        })
        .with_context(|| format!("{}: computing the {} start", input.name, fill.as_str()))?;
    progress.finish();
    drop(basis);
    let file = tempfile::Builder::new()
        .prefix(".nmflow-w0-")
        .suffix(".npy")
        .tempfile_in(&dir)
        .with_context(|| format!("{}: creating the start's temporary file", dir.display()))?;
    let (file, path) = file.into_parts();
    let mut out = std::io::BufWriter::new(file);
    let write = |out: &mut std::io::BufWriter<std::fs::File>,
                 w0: &mut MappedFactor|
     -> std::io::Result<()> {
        out.write_all(&header_bytes(f32::DESCR, &[n_rows, args.k]))?;
        for first in (0..n_rows).step_by(request.block_rows.max(1)) {
            let rows = first..(first + request.block_rows.max(1)).min(n_rows);
            let block = w0.rows_mut(rows.clone());
            let values = block.as_standard_layout();
            write_values(out, values.as_slice().unwrap_or_default())?;
            w0.release(rows);
        }
        out.flush()
    };
    write(&mut out, &mut w0)
        .with_context(|| format!("{}: writing the start's temporary file", path.display()))?;
    let valid = session::core_params(
        &args.run,
        args.k,
        args.run.seed,
        Init::Custom { h0: start.h0 },
    )
    .check(n_rows, n_cols, None)
    .with_context(|| input.name.clone())?
    .with_block_rows(prepared.plan.block_rows);
    prepared.valid = vec![valid];
    Ok(NndsvdFiles { w0: path })
}
