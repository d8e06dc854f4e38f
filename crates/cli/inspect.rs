//! `nmflow inspect`.

use anyhow::Result;
use nmflow_core::{default_block_rows, estimate_memory, estimate_memory_sparse};
use nmflow_io::catalog::{list_datasets, list_sparse};
use nmflow_io::input::{InputKind, sniff};
use nmflow_io::npy::NpySource;
use serde::Serialize;

use crate::args::InspectArgs;

#[derive(Debug, Serialize)]
struct Entry {
    dataset: String,
    shape: Vec<usize>,
    dtype: String,
    chunks: Option<Vec<usize>>,
    filters: Vec<String>,
    storage_bytes: u64,
    factorizable: bool,
    memory: Option<Memory>,
    sparse: Option<Sparse>,
    /// With --memory: whether and how a fit fits the budget.
    plan: Option<String>,
    /// Bytes one pass reads (f32 values; CSR also u32 indices).
    pass_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Sparse {
    encoding: String,
    nnz: usize,
}

#[derive(Debug, Serialize)]
struct Memory {
    k: usize,
    block_rows: usize,
    w_bytes: u64,
    factor_bytes: u64,
    block_bytes: u64,
    total_bytes: u64,
}

pub fn run(args: InspectArgs) -> Result<()> {
    crate::session::probe(&args.file)?;
    let entries: Vec<Entry> = match sniff(&args.file)? {
        InputKind::Npy => {
            let source = NpySource::open(&args.file)?;
            let header = source.header();
            vec![Entry {
                dataset: "(npy array)".into(),
                shape: header.shape.clone(),
                dtype: header.dtype.name(),
                chunks: None,
                filters: vec![],
                storage_bytes: std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0),
                factorizable: header.shape.len() == 2,
                memory: None,
                plan: None,
                pass_bytes: None,
                sparse: None,
            }]
        }
        InputKind::Hdf5 => {
            let sparse = list_sparse(&args.file)?;
            let in_sparse = |path: &str| {
                sparse
                    .iter()
                    .any(|s| path.starts_with(&format!("{}/", s.path)))
            };
            let mut entries: Vec<Entry> = sparse
                .iter()
                .map(|s| Entry {
                    dataset: s.path.clone(),
                    shape: s.shape.to_vec(),
                    dtype: s.dtype.clone(),
                    chunks: None,
                    filters: s.filters.clone(),
                    storage_bytes: s.storage_bytes,
                    factorizable: true,
                    memory: None,
                    plan: None,
                    pass_bytes: None,
                    sparse: Some(Sparse {
                        encoding: s.encoding.clone(),
                        nnz: s.nnz,
                    }),
                })
                .collect();
            entries.extend(
                list_datasets(&args.file)?
                    .into_iter()
                    .filter(|d| !in_sparse(&d.path))
                    .map(|d| Entry {
                        factorizable: d.is_matrix(),
                        dataset: d.path,
                        shape: d.shape,
                        dtype: d.dtype,
                        chunks: d.chunk,
                        filters: d.filters,
                        storage_bytes: d.storage_bytes,
                        memory: None,
                        plan: None,
                        pass_bytes: None,
                        sparse: None,
                    }),
            );
            entries
        }
    };
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|mut e| {
            if let (true, &[n_rows, n_cols]) = (e.factorizable, e.shape.as_slice()) {
                let preferred = match &e.sparse {
                    Some(sp) => Some(nmflow_io::csr_source::sparse_block_rows(
                        sp.nnz as u64,
                        n_rows,
                    )),
                    None => e.chunks.as_ref().and_then(|c| c.first().copied()),
                };
                let nnz = e.sparse.as_ref().map(|sp| sp.nnz as u64);
                let planned = args.memory.map(|budget| {
                    crate::budget::plan_fit(nmflow_core::PlanInput {
                        n_rows,
                        n_cols,
                        k: args.k,
                        nnz,
                        preferred_rows: preferred,
                        budget,
                        w_on_disk: false,
                    })
                });
                let block_rows = match (&planned, args.block_rows) {
                    (_, Some(rows)) => rows.clamp(1, n_rows.max(1)),
                    (Some(Ok((plan, _))), None) => plan.block_rows,
                    _ => default_block_rows(n_rows, n_cols, preferred),
                };
                e.plan = planned.map(|p| match p {
                    Ok((plan, w_on_disk)) => format!(
                        "fits the budget: blocks of {} rows, W {}, predicted peak {:.1} MiB",
                        plan.block_rows,
                        if w_on_disk {
                            "in a memory-mapped temporary file"
                        } else {
                            "in memory"
                        },
                        plan.peak_bytes() as f64 / (1u64 << 20) as f64
                    ),
                    Err(err) => format!(
                        "does not fit: needs at least {:.1} MiB",
                        err.min_budget as f64 / (1u64 << 20) as f64
                    ),
                });
                e.pass_bytes = Some(nmflow_core::plan::pass_bytes(n_rows, n_cols, nnz));
                let m = match &e.sparse {
                    Some(sp) => {
                        estimate_memory_sparse(n_rows, n_cols, args.k, block_rows, sp.nnz as u64)
                    }
                    None => estimate_memory(n_rows, n_cols, args.k, block_rows),
                };
                e.memory = Some(Memory {
                    k: args.k,
                    block_rows,
                    w_bytes: m.w_bytes,
                    factor_bytes: m.factor_bytes,
                    block_bytes: m.block_bytes,
                    total_bytes: m.total_bytes(),
                });
            }
            e
        })
        .collect();
    let read_pass = if args.read_pass {
        Some(time_read_pass(&args.file, args.block_rows)?)
    } else {
        None
    };
    if args.json {
        match &read_pass {
            Some(pass) => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "datasets": entries,
                    "read_pass": pass,
                }))?
            ),
            None => println!("{}", serde_json::to_string_pretty(&entries)?),
        }
        return Ok(());
    }
    match sniff(&args.file)? {
        InputKind::Hdf5 => {
            let layout = nmflow_io::singlecell::detect_path(&args.file)?;
            println!("{} ({})", args.file.display(), layout.as_str());
        }
        InputKind::Npy => println!("{} (npy)", args.file.display()),
    }
    let mut any = false;
    for e in entries.iter().filter(|e| e.factorizable) {
        any = true;
        let chunks = match (&e.sparse, &e.chunks) {
            (Some(sp), _) => format!("{} with {} stored values", sp.encoding, sp.nnz),
            (None, Some(c)) => format!("chunks {c:?}"),
            (None, None) => "contiguous".to_owned(),
        };
        let filters = if e.filters.is_empty() {
            "no compression".to_owned()
        } else {
            e.filters.join("+")
        };
        println!(
            "  {}  {} × {}  {}  {}  {}  {}",
            e.dataset,
            e.shape[0],
            e.shape[1],
            e.dtype,
            chunks,
            filters,
            mib(e.storage_bytes)
        );
        if let Some(m) = &e.memory {
            println!(
                "      memory at k = {}: {} (W {}, H and products {}, blocks of {} rows {})",
                m.k,
                mib(m.total_bytes),
                mib(m.w_bytes),
                mib(m.factor_bytes),
                m.block_rows,
                mib(m.block_bytes)
            );
        }
        if let Some(bytes) = e.pass_bytes {
            println!(
                "      each iteration reads {} (one pass over X)",
                mib(bytes)
            );
        }
        if let Some(plan) = &e.plan {
            println!("      with --memory: {plan}");
        }
    }
    if !any {
        println!("  no 2-D numeric dataset: nothing to factorize");
    }
    if let Some(pass) = &read_pass {
        println!(
            "  read pass of {}: {} blocks of {} rows, {} stored values, {} in {:.2} s ({:.2} GB/s)",
            pass.matrix,
            pass.blocks,
            pass.block_rows,
            pass.stored_values,
            mib(pass.bytes),
            pass.seconds,
            pass.bytes as f64 / pass.seconds.max(1e-9) / 1e9
        );
    }
    let others: Vec<&Entry> = entries.iter().filter(|e| !e.factorizable).collect();
    if !others.is_empty() {
        println!("  other datasets:");
        for e in others {
            println!("    {}  shape {:?}  {}", e.dataset, e.shape, e.dtype);
        }
    }
    Ok(())
}

/// One bare pass over the matrix `fit FILE` would factorize.
#[derive(Debug, Serialize)]
struct ReadPass {
    matrix: String,
    block_rows: usize,
    blocks: usize,
    stored_values: u64,
    /// Bytes of values and indices delivered (as fit counts a pass).
    bytes: u64,
    seconds: f64,
}

fn time_read_pass(file: &std::path::Path, block_rows: Option<usize>) -> Result<ReadPass> {
    let spec = nmflow_io::InputSpec::parse(&file.display().to_string());
    let mut opened = nmflow_io::open_source(&spec, &nmflow_io::OpenOptions::default())?;
    let source = opened.source.as_mut();
    let (n_rows, n_cols) = (source.n_rows(), source.n_cols());
    let block_rows = block_rows
        .unwrap_or_else(|| default_block_rows(n_rows, n_cols, source.preferred_block_rows()))
        .max(1);
    let matrix = match &opened.dataset {
        Some(ds) => format!("{}:{ds}", file.display()),
        None => file.display().to_string(),
    };
    let started = std::time::Instant::now();
    let mut stored_values = 0u64;
    let mut blocks = 0;
    for start in (0..n_rows).step_by(block_rows) {
        let rows = start..(start + block_rows).min(n_rows);
        let block = source
            .block(rows.clone())
            .map_err(|e| anyhow::anyhow!("{matrix}: rows {}..{}: {e}", rows.start, rows.end))?;
        stored_values += match block {
            nmflow_core::RowBlock::Csr(x) => x.nnz() as u64,
            other => (other.n_rows() as u64).saturating_mul(other.n_cols() as u64),
        };
        blocks += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sparse = opened.source.nnz_hint().is_some();
    let bytes = if sparse {
        nmflow_core::plan::pass_bytes(n_rows, 0, Some(stored_values))
    } else {
        stored_values.saturating_mul(4)
    };
    Ok(ReadPass {
        matrix,
        block_rows,
        blocks,
        stored_values,
        bytes,
        seconds,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
