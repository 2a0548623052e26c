//! Live progress of a drill: a spinner per stage on a terminal, plain lines
//! otherwise (CI logs, `journalctl`), or nothing. Progress goes to stderr;
//! stdout carries the verdict and the bundle path only.

use std::io::Write;
use std::sync::Mutex;

use crate::drill::{Progress, Stage, StageRecord, StageStatus};

fn mark(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Passed => "ok",
        StageStatus::Warning => "warn",
        StageStatus::Failed => "FAIL",
        StageStatus::Errored => "ERROR",
        StageStatus::Skipped => "skip",
        StageStatus::Interrupted => "INTERRUPTED",
    }
}

/// `ok     1.23s — detail`: a stage's result without its name.
fn result(r: &StageRecord) -> String {
    let detail = if r.detail.is_empty() {
        String::new()
    } else {
        format!(" — {}", r.detail)
    };
    format!(
        "{:<5} {:>6.2}s{detail}",
        mark(r.status),
        r.duration_ms as f64 / 1000.0
    )
}

fn line(r: &StageRecord) -> String {
    format!("{:<9} {}", r.stage.name(), result(r))
}

/// One line per event on stderr.
pub(crate) struct Plain;

impl Progress for Plain {
    fn stage_started(&self, stage: Stage) {
        let _ = writeln!(std::io::stderr(), "[{}] started", stage.name());
    }
    fn stage_finished(&self, r: &StageRecord) {
        let _ = writeln!(std::io::stderr(), "[{}] {}", r.stage.name(), result(r));
    }
    fn note(&self, m: &str) {
        let _ = writeln!(std::io::stderr(), "  {m}");
    }
}

/// A spinner for the running stage, a line per finished stage.
pub(crate) struct Terminal {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Default for Terminal {
    fn default() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }
}

impl Terminal {
    fn with_bar(&self, f: impl FnOnce(&mut Option<indicatif::ProgressBar>)) {
        let mut g = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
}

impl Progress for Terminal {
    fn stage_started(&self, stage: Stage) {
        self.with_bar(|b| {
            let pb = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            {
                pb.set_style(style);
            }
            pb.set_message(format!("{} …", stage.name()));
            pb.enable_steady_tick(std::time::Duration::from_millis(100));
            *b = Some(pb);
        });
    }
    fn stage_finished(&self, r: &StageRecord) {
        self.with_bar(|b| match b.take() {
            Some(pb) => {
                // The finished line keeps the result only: no spinner, no clock.
                if let Ok(style) = indicatif::ProgressStyle::with_template("{msg}") {
                    pb.set_style(style);
                }
                pb.finish_with_message(line(r));
            }
            None => errln!("{}", line(r)),
        });
    }
    fn note(&self, m: &str) {
        self.with_bar(|b| match b {
            Some(pb) => pb.println(format!("  {m}")),
            None => errln!("  {m}"),
        });
    }
}

/// Picks [`Terminal`] when stderr is a terminal, else [`Plain`].
pub(crate) fn auto() -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Box::new(Terminal::default())
    } else {
        Box::new(Plain)
    }
}
