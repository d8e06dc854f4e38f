//! Reading a file's structure in a child process. The HDF5 library can
//! crash (SIGSEGV) or loop for ever on damaged metadata (seen with libhdf5
//! 1.10 on files with a few damaged bytes: a corrupted global heap while
//! reading a string attribute, an overwritten object header), inside calls
//! nmflow cannot interrupt or recover from. So every command first reads
//! the whole structure of each file it will open (`nmflow_io::catalog::probe`)
//! in a forked child: a crash or a child that takes longer than
//! `NMFLOW_METADATA_TIMEOUT` seconds (default 300; a sound file takes
//! milliseconds) becomes a clear error and exit code 1, with nothing
//! written. When the child reports an ordinary error, the parent reads the
//! file again for the message.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Seconds allowed when `NMFLOW_METADATA_TIMEOUT` is not set.
const DEFAULT_SECONDS: u64 = 300;

fn limit() -> Duration {
    let seconds = std::env::var("NMFLOW_METADATA_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs(seconds)
}

/// Runs `work` (reading the structure of `what`) in a child process first;
/// a crash or a hang there is an error, an ordinary failure is `work`'s own
/// error, run here. Must be called while this process has one thread (at
/// the start of a command), as `fork` requires.
#[cfg(unix)]
pub fn isolated<E>(what: &str, work: impl Fn() -> Result<(), E>) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    // SAFETY: the process has one thread here; the child only runs `work`
    // and leaves with _exit, running no exit handlers of the parent's.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        // No child: read here, unguarded.
        return work().map_err(Into::into);
    }
    if pid == 0 {
        let code = if work().is_ok() { 0 } else { 1 };
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    let limit = limit();
    let started = Instant::now();
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waits for our own child, without blocking.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if done < 0 {
            return work().map_err(Into::into);
        }
        if started.elapsed() > limit {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            bail!(
                "{what}: reading the file's structure did not finish in {} s; the file is most \
                 likely damaged (the HDF5 library does not return on some damaged metadata). \
                 Nothing was written.",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if libc::WIFSIGNALED(status) {
        bail!(
            "{what}: the HDF5 library crashed (signal {}) reading the file's structure; the file \
             is damaged. Nothing was written.",
            libc::WTERMSIG(status)
        );
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    work().map_err(Into::into)
}

/// Elsewhere: `work`, unguarded.
#[cfg(not(unix))]
pub fn isolated<E>(_what: &str, work: impl Fn() -> Result<(), E>) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    work().map_err(Into::into)
}
