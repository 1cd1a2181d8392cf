//! What a panic means for the user. libtorch reports its failures as panics inside tch
//! (and our shim raises a [`LibtorchError`] payload where it cannot return a `Result`);
//! those become one line about libtorch. Any other panic is a bug in chargpt, reported as
//! an internal error, with where it happened and, under RUST_BACKTRACE=1, a backtrace.

use crate::ffi::LibtorchError;
use std::any::Any;
use std::cell::Cell;

thread_local! {
    /// Whether the last panic on this thread was raised inside tch (a libtorch error).
    static LAST_PANIC_IN_TCH: Cell<bool> = const { Cell::new(false) };
}

/// What to try when memory runs out, in the running command's flags (`advise_on_memory`).
static MEMORY_ADVICE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets, once per process, what an out-of-memory error advises: only flags the running
/// command has (`train`'s sizes, `eval`'s `--batch-windows`, ...).
pub fn advise_on_memory(advice: &'static str) {
    let _ = MEMORY_ADVICE.set(advice);
}

fn memory_advice() -> &'static str {
    MEMORY_ADVICE.get().copied().unwrap_or("close other programs, or use a machine with more memory")
}

/// A caught panic, told apart.
#[derive(Debug)]
pub enum PanicError {
    /// libtorch failed (bad sizes, out of memory, ...): its message's first line.
    Libtorch(String),
    /// A bug in chargpt.
    Internal(String),
}

impl std::fmt::Display for PanicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PanicError::Libtorch(m) => write!(f, "{}", libtorch_message(m)),
            PanicError::Internal(m) => write!(f, "internal error (a bug in chargpt, please report it): {m}"),
        }
    }
}

impl std::error::Error for PanicError {}

/// Installs the hook that stays silent for libtorch's panics (reported as one line later)
/// and says where any other panic happened, with the backtrace when RUST_BACKTRACE asks.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let in_tch = info.location().is_some_and(|l| {
            let file = l.file().replace('\\', "/");
            file.contains("/tch-") || file.contains("/torch-sys-")
        });
        LAST_PANIC_IN_TCH.with(|c| c.set(in_tch));
        if in_tch || info.payload().downcast_ref::<LibtorchError>().is_some() {
            return;
        }
        let location = info.location().map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let backtrace = std::backtrace::Backtrace::capture();
        crate::tell!("chargpt panicked{location}");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            crate::tell!("{backtrace}");
        }
    }));
}

/// The caught panic's payload as a [`PanicError`] (on the thread that panicked).
pub fn to_error(payload: Box<dyn Any + Send>) -> PanicError {
    if let Some(e) = payload.downcast_ref::<LibtorchError>() {
        return PanicError::Libtorch(e.0.clone());
    }
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    if LAST_PANIC_IN_TCH.with(|c| c.get()) {
        PanicError::Libtorch(text)
    } else {
        PanicError::Internal(text.lines().next().unwrap_or("").trim().to_string())
    }
}

/// The first line of libtorch's message, with advice where there is an obvious one.
fn libtorch_message(text: &str) -> String {
    let lower = text.to_lowercase();
    if lower.contains("out of memory") {
        return format!("the GPU ran out of memory; {}", memory_advice());
    }
    if lower.contains("can't allocate memory") || lower.contains("cannot allocate memory") {
        return format!("the machine ran out of memory; {}", memory_advice());
    }
    // tch's `unwrap()` panics carry libtorch's message inside `Torch("...")`, its trace
    // after an escaped newline: keep the message.
    let inner = text.split_once("Torch(\"").map_or(text, |(_, rest)| rest.split("\\n").next().unwrap_or(rest));
    let inner = inner.trim_end_matches("\")").trim_end_matches('"');
    if inner.contains("probability tensor contains either") {
        return "sampling failed: the probabilities are not finite numbers (a --temperature this small overflows them); use a larger --temperature, or --greedy".to_string();
    }
    let first = inner.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.starts_with("failed printing") {
        return "output closed early (broken pipe)".to_string();
    }
    format!("libtorch error: {}", first.trim_start_matches("libtorch error: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_failures_become_one_line_with_advice() {
        let trace = "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes.\nframe #0: c10::...";
        // Unit tests set no command's advice: the general one.
        assert_eq!(
            PanicError::Libtorch(trace.into()).to_string(),
            "the machine ran out of memory; close other programs, or use a machine with more memory"
        );
        let other = PanicError::Libtorch("shape '[2, 3]' is invalid for input of size 5\nframe #0".into()).to_string();
        assert_eq!(other, "libtorch error: shape '[2, 3]' is invalid for input of size 5");
        assert!(PanicError::Internal("oops".into()).to_string().starts_with("internal error (a bug in chargpt"));
        let tch = r#"called `Result::unwrap()` on an `Err` value: Torch("shape mismatch here\nException raised from f at a.cpp:1 (most recent call first):\nframe #0: c10::Error")"#;
        assert_eq!(PanicError::Libtorch(tch.into()).to_string(), "libtorch error: shape mismatch here");
        let nan = r#"called `Result::unwrap()` on an `Err` value: Torch("probability tensor contains either `inf`, `nan` or element < 0\nException raised")"#;
        assert!(PanicError::Libtorch(nan.into()).to_string().starts_with("sampling failed: the probabilities are not finite"));
    }
}
