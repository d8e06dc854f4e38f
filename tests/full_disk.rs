//! A full disk: outputs, the block cache, the transposition file and
//! checkpoints on a small tmpfs that fills up give a clear error (exit 1),
//! leave nothing behind on it and leave the input as it was. Mounting needs
//! root (as CI runs); elsewhere the test says that it skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// A tmpfs of `size` mounted at a new folder, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(parent: &Path, size: &str) -> Option<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("tmpfs-{n}-{size}"));
        std::fs::create_dir(&dir).ok()?;
        let done = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .ok()?;
        done.status.success().then_some(Self { dir })
    }

    fn files(&self) -> Vec<String> {
        files_in(&self.dir)
    }

    /// Nothing was left on the full filesystem.
    fn assert_empty(&self) {
        assert!(
            self.files().is_empty(),
            "left on the full disk: {:?}",
            self.files()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn checksum(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read input")
}

#[test]
fn a_full_filesystem_gives_a_clear_error_and_leaves_nothing() {
    let dir = tempdir();
    let Some(probe) = Tmpfs::mount(dir.path(), "64k") else {
        eprintln!("full_disk: skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    drop(probe);
    let data = join(&dir, "data.h5");
    // Compressed: read through the block cache (a contiguous dataset would
    // be memory-mapped, with no cache to write).
    write_h5_gzip(&data, "X", &seed_matrix(20_000, 60, 4), 1000);
    let before = checksum(&data);
    let fit = |extra: &[&str]| -> std::process::Output {
        let mut args = vec!["fit", path_str(&data), "--max-iter", "25", "-q"];
        args.extend_from_slice(extra);
        run(&args)
    };

    // The result (W alone is 640 KB) on 256 KiB.
    let fs = Tmpfs::mount(dir.path(), "256k").expect("mount");
    let out = fs.dir.join("result.h5");
    let done = fit(&["-k", "8", "-o", path_str(&out)]);
    assert_fails(&done, &["result.h5", "No space left on device"]);
    fs.assert_empty();
    drop(fs);

    // The checkpoint (W again) on 256 KiB.
    let fs = Tmpfs::mount(dir.path(), "256k").expect("mount");
    let ckpt = fs.dir.join("state.h5");
    let result = join(&dir, "r.h5");
    let done = fit(&[
        "-k",
        "8",
        "-o",
        path_str(&result),
        "--checkpoint",
        path_str(&ckpt),
        "--checkpoint-every",
        "5",
    ]);
    assert_fails(
        &done,
        &[
            "writing the checkpoint after iteration 5",
            "No space left on device",
        ],
    );
    fs.assert_empty();
    assert!(!result.exists());
    drop(fs);

    // The block cache (4.6 MiB) fits the check, then the output (W alone
    // 2.3 MiB) on the same filesystem does not.
    let fs = Tmpfs::mount(dir.path(), "6m").expect("mount");
    let out = fs.dir.join("result.h5");
    let done = fit(&[
        "-k",
        "30",
        "-o",
        path_str(&out),
        "--cache",
        path_str(&fs.dir),
    ]);
    assert_fails(&done, &["result.h5", "No space left on device"]);
    fs.assert_empty();
    drop(fs);

    // The transposition of a CSC matrix (8 bytes per stored value) on 64 KiB.
    let csc = join(&dir, "cells.h5ad");
    let x = seed_matrix(3000, 40, 3);
    let (values, indices, indptr) = compressed(&x, true);
    sparse_h5ad(
        &csc,
        "X",
        "csc_matrix",
        Some(&[3000, 40]),
        &values,
        &indices,
        &indptr,
    );
    let csc_before = checksum(&csc);
    let fs = Tmpfs::mount(dir.path(), "64k").expect("mount");
    let done = run(&[
        "fit",
        path_str(&csc),
        "-k",
        "3",
        "--max-iter",
        "3",
        "-q",
        "-o",
        path_str(&join(&dir, "csc.h5")),
        "--tmp-dir",
        path_str(&fs.dir),
    ]);
    assert_fails(&done, &["No space left on device"]);
    fs.assert_empty();
    drop(fs);

    assert_eq!(checksum(&data), before, "the input changed");
    assert_eq!(checksum(&csc), csc_before, "the CSC input changed");
    assert!(!join(&dir, "csc.h5").exists());
}
