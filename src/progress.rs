//! What a person watching a run sees: a progress bar on a terminal, plain periodic
//! lines otherwise (CI, `| tee`), never escape codes in a log.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    last_line: Instant,
    last_loss: Option<f64>,
    last_eval: Option<(f64, f64)>,
    note: Option<String>,
    visible: bool,
}

/// True when progress bars should be drawn (stderr is a terminal).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    /// Starts a bar (or plain logging) for `total` units of `label`'s work, from `start`;
    /// `visible: false` shows nothing (library use, tests, parity runs).
    pub fn new(label: &str, total: u64, start: u64, unit: &str, visible: bool) -> Self {
        let bar = (visible && interactive()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
            let template = format!("{{prefix:>4}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}");
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(label.to_string());
            bar.set_position(start);
            bar
        });
        Progress { bar, label: label.to_string(), total, last_line: Instant::now(), last_loss: None, last_eval: None, note: None, visible }
    }

    fn message(&self) -> String {
        let mut msg = String::new();
        if let Some(l) = self.last_loss {
            msg += &format!("loss {l:.4}");
        }
        if let Some((t, v)) = self.last_eval {
            msg += &format!(" | eval train {t:.4} val {v:.4}");
        }
        if let Some(note) = &self.note {
            msg += &format!(" | {note}");
        }
        msg
    }

    /// `done` units finished; `loss` is the latest training loss, if any.
    pub fn update(&mut self, done: u64, loss: Option<f64>) {
        if loss.is_some() {
            self.last_loss = loss;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(self.message());
            }
            None if !self.visible => {}
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(30) || done == self.total {
                    self.last_line = Instant::now();
                    crate::tell!("{} {done}/{} {}", self.label, self.total, self.message());
                }
            }
        }
    }

    /// A remark shown after the losses while it holds (None: no remark).
    pub fn set_note(&mut self, note: Option<String>) {
        if note.is_some() && self.note.is_none() && self.bar.is_none() && self.visible {
            // Plain logging: say it once when it starts, not only on the next periodic line.
            crate::tell!("{} {}", self.label, note.as_deref().unwrap_or_default());
        }
        self.note = note;
    }

    pub fn set_eval(&mut self, train: f64, val: f64) {
        self.last_eval = Some((train, val));
    }

    /// Prints a line to stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::say!("{line}")),
            None => crate::say!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `println!` that ignores a closed standard output: a training's results are its run
/// folder, so `chargpt train ... | head -1` must not stop it (println! would panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed standard error: `chargpt train ... 2>&1 | head -3`
/// must not stop a training either (eprintln! would panic, and the panic's own report to
/// the closed stderr would abort the process).
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
