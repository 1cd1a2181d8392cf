//! What a person watching a run sees: a progress bar on a terminal, plain periodic
//! lines otherwise (CI, `| tee`), never escape codes in a log.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    last_line: Instant,
    last_loss: Option<f64>,
    last_eval: Option<(f64, f64)>,
    /// An evaluation is running (said instead of the previous one's losses).
    evaluating: bool,
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
            let template = format!("{{prefix:>4}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{rate}} ETA {{eta}} {{msg}}");
            let style = ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> ");
            let style = style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            });
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.set_position(start);
            bar
        });
        let last_line = Instant::now();
        Progress {
            bar,
            label: label.to_string(),
            total,
            done: start,
            last_line,
            last_loss: None,
            last_eval: None,
            evaluating: false,
            note: None,
            visible,
        }
    }

    fn message(&self) -> String {
        let mut msg = String::new();
        if let Some(l) = self.last_loss {
            msg += &format!("loss {l:.4}");
        }
        match (self.evaluating, self.last_eval) {
            (true, _) => msg += " | evaluating",
            (false, Some((t, v))) => msg += &format!(" | eval train {t:.4} val {v:.4}"),
            (false, None) => {}
        }
        if let Some(note) = &self.note {
            msg += &format!(" | {note}");
        }
        msg
    }

    /// `done` units finished; `loss` is the latest training loss, if any. Without a bar, a
    /// line every 30 s; the last one comes from [`Self::finish`], once the work's last
    /// evaluation is in.
    pub fn update(&mut self, done: u64, loss: Option<f64>) {
        self.done = done;
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
                if self.last_line.elapsed() >= Duration::from_secs(30) {
                    self.print_line();
                }
            }
        }
    }

    fn print_line(&mut self) {
        self.last_line = Instant::now();
        let line = format!("{} {}/{} {}", self.label, self.done, self.total, self.message());
        crate::tell!("{}", line.trim_end());
    }

    /// A remark shown after the losses while it holds (None: no remark).
    pub fn set_note(&mut self, note: Option<String>) {
        if note.is_some() && self.note.is_none() && self.bar.is_none() && self.visible {
            // Plain logging: say it once when it starts, not only on the next periodic line.
            crate::tell!("{} {}", self.label, note.as_deref().unwrap_or_default());
        }
        self.note = note;
    }

    /// An evaluation begins: said at once (without a bar, in a line of its own), so that
    /// a long one is not mistaken for a hang.
    pub fn evaluating(&mut self) {
        self.evaluating = true;
        match &self.bar {
            Some(bar) => bar.set_message(self.message()),
            None if self.visible => self.print_line(),
            None => {}
        }
    }

    /// The latest evaluation, shown from now on.
    pub fn set_eval(&mut self, train: f64, val: f64) {
        self.last_eval = Some((train, val));
        self.evaluating = false;
        if let Some(bar) = &self.bar {
            bar.set_message(self.message());
        }
    }

    /// Prints a line to stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::say!("{line}")),
            None => crate::say!("{line}"),
        }
    }

    /// Clears the bar; without one, prints the last line (with the latest loss and
    /// evaluation), once.
    pub fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.visible && self.done > 0 => {
                self.print_line();
                self.visible = false;
            }
            None => {}
        }
    }
}

/// A rate as a person reads it: one decimal under 100 a second ("40.5/s"), whole numbers
/// with thousands separated above ("1,047/s").
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return String::new();
    }
    if per_sec < 100.0 {
        return format!("{per_sec:.1}/s");
    }
    let digits = format!("{:.0}", per_sec);
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}/s")
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

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_read_as_a_person_reads_them() {
        assert_eq!(rate(40.4857), "40.5/s");
        assert_eq!(rate(0.26), "0.3/s");
        assert_eq!(rate(1047.3), "1,047/s");
        assert_eq!(rate(1234567.0), "1,234,567/s");
        assert_eq!(rate(100.0), "100/s");
        assert_eq!(rate(f64::NAN), "");
    }
}
