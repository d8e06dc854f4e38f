//! `cargo xtask`: synthetic data sets (`synth`), end-to-end benchmarks
//! (`bench`), long runs of the corruption properties (`fuzz`), and the
//! manual page with the shell completions (`man`).

mod bench;
mod budget_bench;
mod fuzz;
mod man;
mod mpi_bench;
mod ooc_bench;
mod scaling;
mod startup_bench;
mod sweep_bench;
mod synth;
mod synth_sc;
mod time_to_error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "nmflow project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a synthetic data set, streaming, of any size.
    #[command(subcommand)]
    Synth(synth::SynthCommand),
    /// Run the end-to-end benchmarks and rewrite docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Run the corruption properties of tests/fuzz.rs with fresh seeds for some minutes and record
    /// the figures in docs/fuzzing.md.
    Fuzz(fuzz::FuzzArgs),
    /// Write the manual page (target/man/nmflow.1) and the bash, zsh and fish completions
    /// (target/completions/), generated from nmflow's command-line definitions.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(cmd) => synth::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Man => man::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
