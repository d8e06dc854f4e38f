//! `nmflow inspect`.

use anyhow::Result;
use nmflow_core::plan::{Bytes, fit_held, names_bytes};
use nmflow_core::{Budget, Request, default_block_rows, plan_runs};
use nmflow_io::catalog::{list_datasets, list_sparse};
use nmflow_io::input::{InputKind, sniff};
use nmflow_io::npy::NpySource;
use nmflow_io::singlecell::is_graph_element;
use serde::Serialize;

use crate::args::{DEFAULT_SAMPLE, InspectArgs};

#[derive(Debug, Serialize)]
struct Entry {
    dataset: String,
    shape: Vec<usize>,
    dtype: String,
    chunks: Option<Vec<usize>>,
    filters: Vec<String>,
    storage_bytes: u64,
    factorizable: bool,
    /// The matrix `fit FILE` factorizes without an option that chooses one.
    default: bool,
    memory: Option<Memory>,
    sparse: Option<Sparse>,
    /// The plan `fit` makes (the text it prints), or why none fits.
    plan: Option<String>,
    /// Bytes one pass reads (f32 values; CSR also u32 indices).
    pass_bytes: Option<u64>,
    #[serde(skip)]
    npy: bool,
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
    let budget = crate::budget::budget(args.memory)?;
    let mut entries = list(&args.file)?;
    for e in entries.iter_mut().filter(|e| e.factorizable) {
        e.plan_for(&args, budget);
    }
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
    print_entries(&entries);
    if let Some(pass) = &read_pass {
        println!(
            "  read pass of {}: {} blocks of {} rows, {} stored values, {} in {:.2} s ({:.2} GB/s)",
            pass.matrix,
            pass.blocks,
            pass.block_rows,
            pass.stored_values,
            Bytes(pass.bytes),
            pass.seconds,
            pass.bytes as f64 / pass.seconds.max(1e-9) / 1e9
        );
    }
    Ok(())
}

/// Every dataset of `file` (sparse groups first), as fit would see it.
fn list(file: &std::path::Path) -> Result<Vec<Entry>> {
    Ok(match sniff(file)? {
        InputKind::Npy => {
            let source = NpySource::open(file)?;
            let header = source.header();
            vec![Entry {
                dataset: "(npy array)".into(),
                shape: header.shape.clone(),
                dtype: header.dtype.to_string(),
                chunks: None,
                filters: vec![],
                storage_bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
                factorizable: header.shape.len() == 2,
                default: header.shape.len() == 2,
                memory: None,
                plan: None,
                pass_bytes: None,
                sparse: None,
                npy: true,
            }]
        }
        InputKind::Hdf5 => {
            let sparse = list_sparse(file)?;
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
                    dtype: s.dtype.to_string(),
                    chunks: None,
                    filters: s.filters.clone(),
                    storage_bytes: s.storage_bytes,
                    factorizable: !is_graph_element(&s.path),
                    default: false,
                    memory: None,
                    plan: None,
                    pass_bytes: None,
                    sparse: Some(Sparse {
                        encoding: s.encoding.clone(),
                        nnz: s.nnz,
                    }),
                    npy: false,
                })
                .collect();
            entries.extend(
                list_datasets(file)?
                    .into_iter()
                    .filter(|d| !in_sparse(&d.path))
                    .map(|d| Entry {
                        factorizable: d.is_matrix() && !is_graph_element(&d.path),
                        default: false,
                        dataset: d.path,
                        shape: d.shape,
                        dtype: d.dtype.to_string(),
                        chunks: d.chunk,
                        filters: d.filters,
                        storage_bytes: d.storage_bytes,
                        memory: None,
                        plan: None,
                        pass_bytes: None,
                        sparse: None,
                        npy: false,
                    }),
            );
            mark_default(file, &mut entries)?;
            entries
        }
    })
}

/// Marks the matrix `fit FILE` factorizes when no option chooses one.
fn mark_default(file: &std::path::Path, entries: &mut [Entry]) -> Result<()> {
    if let Some(element) = nmflow_io::singlecell::default_element(file)? {
        let same = |path: &str| path.trim_start_matches('/') == element.trim_start_matches('/');
        for e in entries
            .iter_mut()
            .filter(|e| e.factorizable && same(&e.dataset))
        {
            e.default = true;
        }
    }
    Ok(())
}

impl Entry {
    /// The plan `fit` makes for this matrix at `-k` (with its defaults: a
    /// plain HDF5 result, the default sample), and its memory estimate.
    fn plan_for(&mut self, args: &InspectArgs, budget: Budget) {
        let &[n_rows, n_cols] = self.shape.as_slice() else {
            return;
        };
        let nnz = self.sparse.as_ref().map(|sp| sp.nnz as u64);
        let names = if self.npy { 0 } else { names_bytes(n_cols) };
        let request = Request {
            shape: (n_rows, n_cols),
            nnz,
            preferred_rows: match nnz {
                Some(nnz) => Some(nmflow_io::csr_source::sparse_block_rows(nnz, n_rows)),
                None => self.chunks.as_ref().and_then(|c| c.first().copied()),
            },
            block_rows: args.block_rows,
            ks: vec![args.k],
            held: fit_held((n_rows, n_cols), nnz, DEFAULT_SAMPLE, 0, names),
            budget,
            ratio_block: false,
        };
        self.pass_bytes = Some(nmflow_core::plan::pass_bytes(n_rows, n_cols, nnz));
        match plan_runs(&request) {
            Ok(plan) => {
                let m = plan.estimate;
                self.memory = Some(Memory {
                    k: args.k,
                    block_rows: plan.block_rows,
                    w_bytes: m.w_bytes,
                    factor_bytes: m.factor_bytes,
                    block_bytes: m.block_bytes,
                    total_bytes: m.total_bytes(),
                });
                self.plan = Some(plan.to_string());
            }
            Err(err) => self.plan = Some(format!("does not fit: {err}")),
        }
    }
}

/// The text listing: the matrices with their memory and plan, then the
/// other datasets.
fn print_entries(entries: &[Entry]) {
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
            "  {}{}  {} × {}  {}  {}  {}  {}",
            e.dataset,
            if e.default {
                "  (what fit factorizes by default)"
            } else {
                ""
            },
            e.shape[0],
            e.shape[1],
            e.dtype,
            chunks,
            filters,
            Bytes(e.storage_bytes)
        );
        if let Some(m) = &e.memory {
            println!(
                "      memory at k = {}: {} (W {}, H and products {}, blocks of {} rows {})",
                m.k,
                Bytes(m.total_bytes),
                Bytes(m.w_bytes),
                Bytes(m.factor_bytes),
                m.block_rows,
                Bytes(m.block_bytes)
            );
        }
        if let Some(bytes) = e.pass_bytes {
            println!(
                "      each iteration reads {} (one pass over X)",
                Bytes(bytes)
            );
        }
        if let Some(plan) = &e.plan {
            println!("      plan: {plan}");
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
