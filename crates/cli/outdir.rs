//! Output directories of `sweep` and `report`: created only once the
//! inputs are validated, and removed again (with what the failed run wrote
//! into them) when nmflow created them and the run fails, so a refusal
//! leaves no empty or half-filled folder behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An output directory that is removed on drop unless [`OutputDir::keep`]
/// is called, when this run created it.
pub struct OutputDir {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl OutputDir {
    /// Creates `path` (and its parents) if it does not exist.
    pub fn create(path: &Path) -> Result<Self> {
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("{}: creating the output directory", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            created,
            keep: false,
        })
    }

    /// The run succeeded: the directory stays.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.created && !self.keep {
            // Best effort: the run's own error is what the user sees.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
