//! `nmflow inspect`.

use anyhow::Result;
use nmflow_core::{default_block_rows, estimate_memory, estimate_memory_sparse};
use nmflow_io::catalog::{list_datasets, list_sparse};
use nmflow_io::csr_source::BLOCK_NNZ;
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
                    // Sparse blocks hold about BLOCK_NNZ stored entries.
                    Some(sp) => Some((BLOCK_NNZ / (sp.nnz / n_rows.max(1)).max(1)).max(64)),
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
                e.pass_bytes = Some(match nnz {
                    Some(nnz) => 8 * nnz + 8 * n_rows as u64,
                    None => 4 * (n_rows * n_cols) as u64,
                });
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
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
    let others: Vec<&Entry> = entries.iter().filter(|e| !e.factorizable).collect();
    if !others.is_empty() {
        println!("  other datasets:");
        for e in others {
            println!("    {}  shape {:?}  {}", e.dataset, e.shape, e.dtype);
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
