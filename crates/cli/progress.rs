//! Progress on standard error: a bar over the rows of the pre-pass, then one
//! over iterations with the current relative error. Hidden with --quiet and
//! when standard error is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nmflow_core::{Event, PassKind};

pub struct Progress {
    prepare: ProgressBar,
    iterate: ProgressBar,
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
                "{prefix}pre-pass  [{bar:30}] {pos}/{len} rows {per_sec} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let iterate =
            ProgressBar::with_draw_target(Some(max_iter as u64), ProgressDrawTarget::hidden());
        iterate.set_style(
            ProgressStyle::with_template(
                "{prefix}iteration [{bar:30}] {pos}/{len} rel_error {msg} {per_sec} [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        prepare.set_prefix(label.to_owned());
        iterate.set_prefix(label.to_owned());
        let progress = Self { prepare, iterate };
        if !quiet {
            progress.iterate.set_draw_target(target());
        }
        progress
    }

    pub fn on_event(&self, event: Event) {
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
                // Runs sharing passes report in turn: show the furthest.
                if iteration as u64 >= self.iterate.position() {
                    self.iterate.set_position(iteration as u64);
                    self.iterate.set_message(format!("{rel_error:.6}"));
                }
            }
        }
    }

    pub fn finish(&self) {
        self.prepare.finish_and_clear();
        self.iterate.finish_and_clear();
    }
}
