//! `cargo xtask man`: the manual page and the shell completions, generated
//! from nmflow's own clap definitions (`nmflow man`, `nmflow completions`)
//! into `target/man/nmflow.1` and `target/completions/`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The shells completions are written for, with their file names.
const SHELLS: [(&str, &str); 3] = [
    ("bash", "nmflow.bash"),
    ("zsh", "_nmflow"),
    ("fish", "nmflow.fish"),
];

pub fn run() -> Result<()> {
    let binary = crate::bench::release_binary()?;
    let man = Path::new("target/man/nmflow.1");
    write_output(&binary, &["man"], man)?;
    println!("wrote {}", man.display());
    for (shell, name) in SHELLS {
        let path = Path::new("target/completions").join(name);
        write_output(&binary, &["completions", shell], &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `binary args` and writes what it prints to `path`.
fn write_output(binary: &Path, args: &[&str], path: &Path) -> Result<()> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "{} {} failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, &out.stdout).with_context(|| format!("writing {}", path.display()))
}
