//! Progress on standard error: a bar over the rows of the pre-pass, then one
//! over iterations with an ETA, a rounded rate and the relative error (of
//! runs sharing passes: how many still iterate and the best error among
//! them). Hidden with --quiet and when standard error is not a terminal.

use std::fmt::Write as _;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use nmflow_core::{Event, PassKind};

pub struct Progress {
    prepare: ProgressBar,
    iterate: ProgressBar,
    /// Each run's last reported iteration and error, by run index.
    runs: Mutex<Vec<Option<(usize, f64)>>>,
}

/// A rate rounded for reading: three significant digits at most, with k
/// and M for thousands and millions.
pub fn rounded_rate(per_sec: f64, unit: &str) -> String {
    let (value, prefix) = match per_sec {
        r if r >= 1e6 => (r / 1e6, "M "),
        r if r >= 1e3 => (r / 1e3, "k "),
        r => (r, ""),
    };
    let digits = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.digits$} {prefix}{unit}/s")
}

fn rate_key(unit: &'static str) -> impl Fn(&ProgressState, &mut dyn std::fmt::Write) + Clone {
    move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&rounded_rate(state.per_sec(), unit));
    }
}

impl Progress {
    pub fn new(n_rows: usize, max_iter: usize, quiet: bool, label: &str) -> Self {
        let target = || {
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            }
        };
        let prepare = ProgressBar::with_draw_target(Some(n_rows as u64), target());
        prepare.set_style(
            ProgressStyle::with_template(
                "{prefix}pre-pass  [{bar:30}] {pos}/{len} rows, {rows_rate}, ETA {eta}",
            )
            .map(|s| s.with_key("rows_rate", rate_key("rows")))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let iterate =
            ProgressBar::with_draw_target(Some(max_iter as u64), ProgressDrawTarget::hidden());
        iterate.set_style(
            ProgressStyle::with_template(
                "{prefix}iteration [{bar:30}] {pos}/{len} {msg}, {it_rate}, ETA {eta} [{elapsed}]",
            )
            .map(|s| s.with_key("it_rate", rate_key("it")))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        prepare.set_prefix(label.to_owned());
        iterate.set_prefix(label.to_owned());
        let progress = Self {
            prepare,
            iterate,
            runs: Mutex::new(Vec::new()),
        };
        if !quiet {
            progress.iterate.set_draw_target(target());
        }
        progress
    }

    /// An event of the only run.
    pub fn on_event(&self, event: Event) {
        self.on_run_event(0, event);
    }

    /// An event of run `run` (block events are shared by the runs).
    pub fn on_run_event(&self, run: usize, event: Event) {
        match event {
            Event::Block {
                kind: PassKind::Prepare,
                rows_done,
                n_rows,
            } => {
                self.prepare.set_position(rows_done as u64);
                if rows_done == n_rows {
                    self.prepare.finish_and_clear();
                }
            }
            Event::Block { .. } => {}
            Event::Iteration {
                iteration,
                rel_error,
                ..
            } => {
                let Ok(mut runs) = self.runs.lock() else {
                    return;
                };
                if runs.len() <= run {
                    runs.resize(run + 1, None);
                }
                runs[run] = Some((iteration, rel_error));
                // Runs sharing passes report in turn: the bar shows the
                // furthest; a run that stopped (its tolerance met) reports
                // no more and falls behind.
                let furthest = runs.iter().flatten().map(|r| r.0).max().unwrap_or(0);
                let going: Vec<f64> = runs
                    .iter()
                    .flatten()
                    .filter(|r| r.0 + 1 >= furthest)
                    .map(|r| r.1)
                    .collect();
                let best = going.iter().copied().fold(f64::INFINITY, f64::min);
                let mut msg = String::new();
                if runs.len() > 1 {
                    let _ = write!(
                        msg,
                        "{} of {} runs iterating, best ",
                        going.len(),
                        runs.len()
                    );
                }
                let _ = write!(msg, "rel_error {best:.6}");
                self.iterate.set_position(furthest as u64);
                self.iterate.set_message(msg);
            }
        }
    }

    pub fn finish(&self) {
        self.prepare.finish_and_clear();
        self.iterate.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_to_three_digits_with_a_prefix() {
        assert_eq!(rounded_rate(3.923_71, "it"), "3.92 it/s");
        assert_eq!(rounded_rate(39.237, "it"), "39.2 it/s");
        assert_eq!(rounded_rate(392.37, "it"), "392 it/s");
        assert_eq!(rounded_rate(1_234_567.0, "rows"), "1.23 M rows/s");
        assert_eq!(rounded_rate(45_600.0, "rows"), "45.6 k rows/s");
    }

    #[test]
    fn runs_sharing_passes_report_how_many_iterate_and_the_best_error() {
        let progress = Progress::new(10, 5, true, "");
        let iteration = |iteration, rel_error| Event::Iteration {
            iteration,
            rel_error,
            seconds: 0.1,
        };
        progress.on_run_event(0, iteration(1, 0.5));
        progress.on_run_event(1, iteration(1, 0.4));
        assert_eq!(
            progress.iterate.message(),
            "2 of 2 runs iterating, best rel_error 0.400000"
        );
        // Run 1 met its tolerance: it reports no more.
        progress.on_run_event(0, iteration(2, 0.45));
        progress.on_run_event(0, iteration(3, 0.44));
        assert_eq!(
            progress.iterate.message(),
            "1 of 2 runs iterating, best rel_error 0.440000"
        );
        assert_eq!(progress.iterate.position(), 3);
    }
}
