//! The error channel of the C++ shim in `csrc/`. Every `extern "C"` entry point there
//! catches its C++ exceptions (none may unwind into Rust), reports failure with a status
//! value, and keeps libtorch's message for [`last_error`].

use std::fmt;

extern "C" {
    fn chargpt_last_error() -> *const std::os::raw::c_char;
}

/// A failure inside libtorch, with libtorch's own message. Raised as a panic payload where
/// the caller cannot return a `Result` (a forward pass, like tch's own ops), so that the
/// CLI can tell a libtorch failure from a bug in chargpt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibtorchError(pub String);

impl fmt::Display for LibtorchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libtorch error: {}", self.0)
    }
}

impl std::error::Error for LibtorchError {}

/// The message of the last failed shim call on this thread, as `what: message`.
pub fn last_error(what: &str) -> LibtorchError {
    // SAFETY: chargpt_last_error returns a pointer to a thread-local, NUL-terminated
    // std::string that lives as long as the thread and changes only on the next failure
    // on this thread; it is copied here before anything else runs on this thread.
    let message = unsafe { std::ffi::CStr::from_ptr(chargpt_last_error()) }.to_string_lossy().into_owned();
    LibtorchError(format!("{what}: {}", message.lines().next().unwrap_or("").trim()))
}

/// `Ok` for a status of 0 or more, else the shim's message.
pub fn check(status: i64, what: &str) -> Result<(), LibtorchError> {
    if status < 0 {
        Err(last_error(what))
    } else {
        Ok(())
    }
}

/// Raises a libtorch failure as a panic with a [`LibtorchError`] payload (see above).
pub fn raise(error: LibtorchError) -> ! {
    std::panic::panic_any(error)
}
