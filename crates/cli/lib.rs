//! The `nmflow` command: argument parsing, progress, output. The work is
//! done by `nmflow-core` (numerics) and `nmflow-io` (files). The binary
//! (`main.rs`) calls [`main`]; [`embed`] runs the same fits for another
//! program (the Python package) and hands back arrays instead of files.
//!
//! Exit codes: 0 success; 1 the run failed (bad input, I/O error), with a
//! message naming the file, dataset, row or column at fault; 2 bad usage
//! (clap's parse errors and usage errors).

#![warn(clippy::too_many_lines)]

mod args;
mod budget;
#[cfg(feature = "mpi")]
mod distributed;
pub mod embed;
mod fit;
mod inspect;
mod outdir;
mod progress;
mod report;
mod session;
mod start;
mod sweep;
mod sweep_file;
mod system;
mod top_genes;
mod transform;
mod usage;
mod watchdog;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    ExitCode::from(run(std::env::args_os()))
}

/// Runs the command line `args` (the program's name first) and returns its
/// exit code, printing what the command prints.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    reset_sigpipe();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0, errors to stderr
            // with code 2, as clap's own exit does.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    #[cfg(feature = "mpi")]
    if !matches!(
        cli.command,
        Command::Fit(_) | Command::Transform(_) | Command::Sweep(_)
    ) && nmflow_mpi::launched_size().is_some_and(|n| n > 1)
    {
        eprintln!(
            "nmflow: error: only `nmflow fit`, `sweep` and `transform` run over MPI processes; \
             run this command without mpirun"
        );
        return 2;
    }
    let result = match cli.command {
        Command::Fit(args) => fit::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Transform(args) => transform::run(*args),
        Command::Report(args) => report::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::TopGenes(args) => top_genes::run(args),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "nmflow", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => 0,
        #[cfg(feature = "mpi")]
        Err(err) if err.is::<distributed::Reported>() => {
            let usage = err
                .downcast_ref::<distributed::Reported>()
                .is_some_and(|r| r.usage);
            if usage { 2 } else { 1 }
        }
        Err(err) => {
            eprintln!("nmflow: error: {err:#}");
            if usage::is_usage(&err) { 2 } else { 1 }
        }
    }
}

/// Dies quietly on a closed pipe (`nmflow inspect f.h5 | head`) as command-line
/// tools do, instead of panicking in `println!`.
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
