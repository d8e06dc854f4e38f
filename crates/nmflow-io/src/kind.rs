//! Telling an input's kind from its first bytes (a leaf: everything that
//! opens files asks it first).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::IoError;

const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// The kind of file an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// HDF5 (any userblock size up to 2 KiB).
    Hdf5,
    /// NumPy `.npy`.
    Npy,
}

/// Tells the kind of the file at `path` from its first bytes.
pub fn sniff(path: &Path) -> Result<InputKind, IoError> {
    let mut file = File::open(path).map_err(|e| IoError::os(path, e))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(IoError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(2056);
    file.by_ref()
        .take(2056)
        .read_to_end(&mut head)
        .map_err(|e| IoError::os(path, e))?;
    if head.starts_with(NPY_MAGIC) {
        return Ok(InputKind::Npy);
    }
    for offset in [0usize, 512, 1024, 2048] {
        if head.get(offset..offset + HDF5_MAGIC.len()) == Some(HDF5_MAGIC) {
            return Ok(InputKind::Hdf5);
        }
    }
    Err(IoError::UnknownFormat {
        path: path.to_path_buf(),
    })
}
