//! Progress of long steps: a bar on an interactive terminal, and otherwise a
//! plain log line every tenth of the way, so orchestrator logs stay readable.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    next_log: u64,
}

impl Progress {
    /// Progress over `total` units of `label` (e.g. "users").
    pub fn new(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Progress { bar, label: label.to_string(), total, done: 0, next_log: total / 10 }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.done >= self.next_log && self.done < self.total => {
                tracing::info!(step = %self.label, done = self.done, total = self.total, "progress");
                self.next_log = self.done + (self.total / 10).max(1);
            }
            None => {}
        }
    }

    /// A short status shown beside the bar (e.g. the current loss).
    pub fn message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
