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

/// W, H and the error trace of a result, as raw bits.
fn result_bits(path: &Path) -> (Vec<u32>, Vec<u32>, Vec<u64>) {
    let bits = |a: ndarray::Array2<f32>| a.iter().map(|v| v.to_bits()).collect();
    (
        bits(read2(path, "W")),
        bits(read2(path, "H")),
        read1::<f64>(path, "rel_error")
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    )
}

#[test]
fn a_fit_killed_at_many_moments_resumes_to_the_uninterrupted_result() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(30_000, 120, 6));
    let full = join(&dir, "full.h5");
    let out = run(&fit_args(path_str(&data), path_str(&full), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = result_bits(&full);

    let part = join(&dir, "part.h5");
    let ckpt = join(&dir, "state.ckpt.h5");
    let args = fit_args(
        path_str(&data),
        path_str(&part),
        &[
            "--checkpoint",
            path_str(&ckpt),
            "--checkpoint-every",
            "3",
            "--resume",
        ],
    );
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
    assert_eq!(result_bits(&part), expected, "resumed after {kills} kills");
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
    assert_eq!(without_resume.status.code(), Some(2));
    assert!(
        stderr(&without_resume).contains("--resume"),
        "{}",
        stderr(&without_resume)
    );

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
