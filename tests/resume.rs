//! Runs that survive a kill: `fit --checkpoint --resume` killed with SIGKILL
//! at many moments (the pre-pass, iterations, checkpoint and output writes)
//! ends bit-identical to the uninterrupted run, and no half-written file is
//! ever at a final name; a checkpoint of another input or other parameters
//! is refused, saying what differs.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

fn fit_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        data,
        "-k",
        "6",
        "--max-iter",
        "150",
        "--tol",
        "0",
        "-q",
        "--force",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    args
}

/// W, H, the error trace and the row sample's components of a result, as
/// raw bits.
type Bits = (Vec<u32>, Vec<u32>, Vec<u64>, Vec<u32>);

fn result_bits(path: &Path) -> Bits {
    let bits = |a: ndarray::Array2<f32>| a.iter().map(|v| v.to_bits()).collect();
    (
        bits(read2(path, "W")),
        bits(read2(path, "H")),
        read1::<f64>(path, "rel_error")
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        bits(read2(path, "sample/pca")),
    )
}

#[test]
fn a_fit_killed_at_many_moments_resumes_to_the_uninterrupted_result() {
    killed_and_resumed(&[]);
}

#[test]
fn hals_and_kullback_leibler_fits_killed_resume_to_the_uninterrupted_result() {
    killed_and_resumed(&["--solver", "hals", "--alpha-w", "0.0001"]);
    killed_and_resumed(&["--beta-loss", "kullback-leibler"]);
}

/// A fit with `extra` arguments, killed at many moments and resumed each
/// time, ends bit-identical to the uninterrupted one.
fn killed_and_resumed(extra: &[&str]) {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(30_000, 120, 6));
    let full = join(&dir, "full.h5");
    let out = run(&fit_args(path_str(&data), path_str(&full), extra));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = result_bits(&full);

    let part = join(&dir, "part.h5");
    let ckpt = join(&dir, "state.ckpt.h5");
    let mut with_checkpoint = vec![
        "--checkpoint",
        path_str(&ckpt),
        "--checkpoint-every",
        "3",
        "--resume",
    ];
    with_checkpoint.extend_from_slice(extra);
    let args = fit_args(path_str(&data), path_str(&part), &with_checkpoint);
    // Kill times from the start of each attempt: the pre-pass, early and
    // late iterations, around checkpoints and the output's write.
    let delays_ms = [5, 40, 90, 160, 230, 330, 450, 600, 800, 1100];
    let mut kills = 0;
    let mut finished = false;
    for delay in delays_ms.iter().cycle().take(40) {
        let mut child = nmflow().args(&args).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(*delay));
        if child.try_wait().expect("wait").is_some() {
            let status = child.wait().expect("wait");
            assert!(status.success(), "exit {status}");
            finished = true;
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
        // Whatever is at a final name is whole: the checkpoint reads back,
        // the output (renamed into place just before the kill) is the result.
        if part.exists() {
            assert_eq!(
                result_bits(&part),
                expected,
                "a partial output after {kills} kills"
            );
        }
        if ckpt.exists() {
            nmflow_io::checkpoint::read_checkpoint(&ckpt).expect("a whole checkpoint");
        }
    }
    if !finished {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert!(
        kills >= 5,
        "only {kills} kills: the run is too short to test"
    );
    assert_eq!(
        result_bits(&part),
        expected,
        "{extra:?}: resumed after {kills} kills"
    );
    assert!(
        !ckpt.exists(),
        "the checkpoint is removed once the result is written"
    );
}

#[test]
fn a_checkpoint_of_another_command_or_input_is_refused_saying_what_differs() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(400, 30, 3));
    let out_path = join(&dir, "r.h5");
    let ckpt = join(&dir, "c.h5");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--max-iter",
            "30",
            "--tol",
            "0",
            "-q",
            "-o",
            path_str(&out_path),
            "--checkpoint",
            path_str(&ckpt),
            "--checkpoint-every",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // A checkpoint left by a run cut short: written at iteration 5, 10, ...;
    // made here by a run that fails when writing its output (a directory
    // stands at the output's name).
    std::fs::create_dir(&out_path).expect("mkdir");
    let args = base(&["--force"]);
    let first = nmflow().args(&args).output().expect("run");
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert!(ckpt.exists(), "a checkpoint stays when the run fails");
    std::fs::remove_dir(&out_path).expect("rmdir");

    let without_resume = nmflow().args(base(&[])).output().expect("run");
    assert_usage_error(&without_resume, &["--resume"]);

    let other_seed = nmflow()
        .args(base(&["--resume", "--seed", "9"]))
        .output()
        .expect("run");
    assert_fails(&other_seed, &["c.h5", "seed: checkpoint 0, now 9"]);
    assert!(!out_path.exists());

    // The input changed since the checkpoint was written.
    write_h5(&data, "extra", &seed_matrix(4, 4, 1));
    let changed = nmflow().args(base(&["--resume"])).output().expect("run");
    assert_fails(&changed, &["c.h5", "input size: checkpoint"]);
    assert!(!out_path.exists());
}

/// The files of a sweep directory that must not depend on how it was run.
fn sweep_files(dir: &Path, ks: &[usize]) -> (Vec<u8>, Vec<u8>, Vec<Bits>) {
    (
        std::fs::read(dir.join("sweep.tsv")).expect("sweep.tsv"),
        std::fs::read(dir.join("sweep.json")).expect("sweep.json"),
        ks.iter()
            .map(|k| result_bits(&dir.join(format!("k{k}.h5"))))
            .collect(),
    )
}

fn sweep_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sweep",
        data,
        "-k",
        "2..4",
        "--restarts",
        "3",
        "--max-iter",
        "60",
        "-q",
        "-o",
        out,
        "--block-rows",
        "500",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn identical_sweeps_write_identical_files_and_a_resumed_sweep_equals_them() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let (x, labels) = nmflow_testkit::SeedGenerator::new(8, 3, 40).matrix(3000);
    write_h5(&data, "X", &x);
    write_h5_1d(&data, "labels", &labels);
    let ks = [2, 3, 4];
    let sweep = |out: &Path, extra: &[&str]| {
        let mut extra = extra.to_vec();
        extra.extend_from_slice(&["--labels", "/labels"]);
        let out = run(&sweep_args(path_str(&data), path_str(out), &extra));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    let a = join(&dir, "a");
    let b = join(&dir, "b");
    sweep(&a, &[]);
    sweep(&b, &[]);
    let expected = sweep_files(&a, &ks);
    assert!(
        expected == sweep_files(&b, &ks),
        "two identical sweeps differ"
    );

    // A finished sweep resumed runs nothing again: each k's result file
    // holds its best run.
    let again = run(&sweep_args(
        path_str(&data),
        path_str(&b),
        &["--labels", "/labels", "--resume", "--json"],
    ));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&again)).expect("json");
    assert_eq!(summary["run"]["resumed_runs"], 9, "{}", stderr(&again));
    assert!(
        expected == sweep_files(&b, &ks),
        "the resumed sweep differs"
    );

    // A sweep cut short: some runs finished (records kept), the tables not
    // written, the best result of k = 3 lost, a record damaged.
    let c = join(&dir, "c");
    sweep(&c, &[]);
    for name in ["sweep.tsv", "sweep.json", "k3.h5"] {
        std::fs::remove_file(c.join(name)).expect("rm");
    }
    for (k, r) in [(2, 0), (4, 1), (4, 2)] {
        std::fs::remove_file(c.join(format!("runs/k{k}-r{r}.h5"))).expect("rm record");
    }
    let damaged = c.join("runs/k2-r1.h5");
    let len = std::fs::metadata(&damaged).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let resumed = run(&sweep_args(
        path_str(&data),
        path_str(&c),
        &["--labels", "/labels", "--resume", "--json"],
    ));
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&resumed)).expect("json");
    // 9 runs: 3 records removed and 1 damaged are run again, and so is the
    // best finished run of a k whose result file does not hold it (k = 3's
    // is lost; k = 2's and k = 4's hold a run whose record was removed when
    // that run was their best).
    let resumed = summary["run"]["resumed_runs"]
        .as_u64()
        .expect("resumed_runs");
    assert!((1..=4).contains(&resumed), "{}", summary["run"]);
    assert!(
        expected == sweep_files(&c, &ks),
        "the resumed sweep differs"
    );

    // Records of another command are refused, saying what differs.
    let other = run(&sweep_args(
        path_str(&data),
        path_str(&c),
        &["--labels", "/labels", "--resume", "--tol", "0.01"],
    ));
    assert_fails(
        &other,
        &["runs/k2-r0.h5", "tol: checkpoint 0.0001, now 0.01"],
    );
    assert!(
        expected == sweep_files(&c, &ks),
        "a refused resume changed the sweep"
    );
}

#[test]
fn a_sweep_killed_at_many_moments_resumes_to_the_uninterrupted_result() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(6000, 60, 3));
    let ks = [2, 3, 4];
    let full = join(&dir, "full");
    let out = run(&sweep_args(path_str(&data), path_str(&full), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = sweep_files(&full, &ks);
    let part = join(&dir, "part");
    let args = sweep_args(path_str(&data), path_str(&part), &["--resume"]);
    let mut kills = 0;
    let mut finished = false;
    for delay in [10u64, 60, 150, 250, 400, 600].iter().cycle().take(30) {
        let mut child = nmflow().args(&args).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(*delay));
        if child.try_wait().expect("wait").is_some() {
            assert!(child.wait().expect("wait").success());
            finished = true;
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
        for k in ks {
            let result = part.join(format!("k{k}.h5"));
            if result.exists() {
                nmflow_io::read_result(&result, 10).expect("a whole result file");
            }
        }
    }
    if !finished {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert!(kills >= 2, "only {kills} kills");
    assert!(
        expected == sweep_files(&part, &ks),
        "resumed after {kills} kills"
    );
}

#[test]
fn a_checkpoint_holds_w_kept_on_disk_and_resumes_to_the_same_result() {
    // W of 600,000 × 12 (27 MiB) does not fit half of 56 MiB: it lives in a
    // memory-mapped file, and the checkpoint copies it block by block.
    let dir = tempdir();
    let data = join(&dir, "tall.npy");
    write_npy(&data, &seed_matrix(600_000, 14, 3));
    let fit = |out: &Path, extra: &[&str]| -> std::process::Output {
        let mut args = vec![
            "fit",
            path_str(&data),
            "-k",
            "12",
            "--max-iter",
            "4",
            "--tol",
            "0",
            "--block-rows",
            "20000",
            "--memory",
            "56MiB",
            "--tmp-dir",
            path_str(dir.path()),
            "-q",
            "-o",
            path_str(out),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let full = join(&dir, "full.h5");
    assert!(fit(&full, &[]).status.success());
    // A run that fails when it writes its output (a folder stands at the
    // name) after checkpoints at iterations 1, 2 and 3.
    let part = join(&dir, "part.h5");
    let ckpt = join(&dir, "state.h5");
    std::fs::create_dir(&part).expect("mkdir");
    let with_ckpt = [
        "--checkpoint",
        path_str(&ckpt),
        "--checkpoint-every",
        "1",
        "--resume",
        "--force",
    ];
    let first = fit(&part, &with_ckpt);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let state = nmflow_io::checkpoint::read_checkpoint(&ckpt).expect("checkpoint");
    assert_eq!(state.resume.iteration, 3);
    std::fs::remove_dir(&part).expect("rmdir");
    let second = fit(&part, &with_ckpt);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(result_bits(&part), result_bits(&full));
    assert!(!ckpt.exists());
}
