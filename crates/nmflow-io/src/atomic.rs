//! The one write protocol of every file nmflow creates for the user: the
//! content is written to a temporary file beside the target (same
//! directory, so the rename cannot cross filesystems), flushed to disk,
//! then renamed into place. A failed or interrupted write leaves nothing at
//! the final name, and no temporary file (it is removed on failure and on
//! unwinding; a SIGKILL can leave a `.nmflow-*.tmp` beside the target, never
//! a partial file at the target's name).
//!
//! [`reserve`] allocates the space of a file that will be memory-mapped,
//! so that a full disk is an error, never a SIGBUS.
//!
//! Created files get the mode the user's umask gives (`0666 & !umask`), as
//! files of every Unix tool do: the temporary file is created with that mode
//! and the rename keeps it.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::IoError;

/// Whether an existing file at the target may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`IoError::OutputExists`] if the target exists.
    Refuse,
    /// Replace the target.
    Replace,
}

impl Overwrite {
    /// [`Overwrite::Replace`] when `force` is set.
    pub(crate) fn from_force(force: bool) -> Self {
        if force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        }
    }
}

/// The directory a file at `path` lives in (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails if `output` is the file `input` (same device and inode: another
/// name, a symbolic or a hard link of it count too). An output that does
/// not exist yet is never the input.
pub fn check_not_input(output: &Path, input: &Path) -> Result<(), IoError> {
    if same_file(output, input) {
        return Err(IoError::OutputIsInput {
            output: output.to_path_buf(),
            input: input.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Fails if the file at `path` has no write permission bit set: the
/// owner's statement that it must not change, honoured even for root.
pub fn check_writable(path: &Path) -> Result<(), IoError> {
    let meta = std::fs::metadata(path).map_err(|e| IoError::os(path, e))?;
    if meta.permissions().readonly() {
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            meta.permissions().mode() & 0o7777
        };
        #[cfg(not(unix))]
        let mode = 0o444;
        return Err(IoError::ReadOnly {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Gives the file `file` a length of `bytes` with its space allocated, so
/// that a memory map of it can never fault for lack of disk space (SIGBUS on
/// a full filesystem); a full disk is an error here instead.
pub fn reserve(file: &std::fs::File, bytes: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let len = libc::off_t::try_from(bytes)
            .map_err(|_| std::io::Error::other("the file would be too large"))?;
        // SAFETY: a plain system call on a file descriptor we own.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc == 0 {
            return Ok(());
        }
        // Filesystems that cannot allocate ahead: a plain length.
        if rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    file.set_len(bytes)
}

/// What a writer given to [`write_beside`] may fail with.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The writer's own error.
    Write(E),
    /// Creating, flushing or renaming the file.
    Io(IoError),
}

/// Runs `write` on the path of a new temporary file beside `path` (the
/// writer may reopen it by path, as HDF5 does), flushes it, and renames it
/// to `path`. On any failure nothing is left behind.
pub fn write_beside<E>(
    path: &Path,
    overwrite: Overwrite,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), WriteError<E>> {
    let tmp = new_temp(path).map_err(WriteError::Io)?;
    write(tmp.path()).map_err(WriteError::Write)?;
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| WriteError::Io(IoError::os(path, e)))?;
    persist(tmp, path, overwrite).map_err(WriteError::Io)
}

/// [`write_beside`] for bytes already in memory.
pub fn write_bytes(path: &Path, overwrite: Overwrite, bytes: &[u8]) -> Result<(), IoError> {
    write_beside(path, overwrite, |tmp| std::fs::write(tmp, bytes)).map_err(|e| match e {
        WriteError::Write(e) => IoError::os(path, e),
        WriteError::Io(e) => e,
    })
}

/// A temporary file beside `path` with the umask's mode, removed when
/// dropped: `.nmflow-XXXXXX.tmp.EXT`, keeping the target's extension for
/// writers that choose the format from it.
pub(crate) fn new_temp(path: &Path) -> Result<tempfile::NamedTempFile, IoError> {
    let dir = parent_dir(path);
    let suffix = match path.extension() {
        Some(ext) => format!(".tmp.{}", ext.to_string_lossy()),
        None => ".tmp".to_owned(),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nmflow-").suffix(&suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // open(2) applies the umask to this mode.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(&dir).map_err(|e| IoError::os(&dir, e))
}

/// Renames the flushed temporary file `tmp` to `path`.
pub(crate) fn persist(
    tmp: tempfile::NamedTempFile,
    path: &Path,
    overwrite: Overwrite,
) -> Result<(), IoError> {
    match overwrite {
        Overwrite::Replace => tmp
            .persist(path)
            .map(drop)
            .map_err(|e| IoError::os(path, e.error)),
        Overwrite::Refuse => tmp.persist_noclobber(path).map(drop).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                IoError::OutputExists {
                    path: path.to_path_buf(),
                }
            } else {
                IoError::os(path, e.error)
            }
        }),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_take_the_umask_mode_and_leave_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        write_bytes(&path, Overwrite::Refuse, b"hello").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
        let err = write_bytes(&path, Overwrite::Refuse, b"again").unwrap_err();
        assert!(matches!(err, IoError::OutputExists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"hello");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1);
    }

    /// This process's umask, from /proc (reading it with umask(2) would
    /// change it for the other test threads meanwhile).
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("Umask:"))
            .expect("Umask line");
        u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).expect("octal")
    }

    #[test]
    fn a_failing_writer_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        let result = write_beside(&path, Overwrite::Replace, |tmp| {
            std::fs::write(tmp, b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(result, Err(WriteError::Write(_))));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
