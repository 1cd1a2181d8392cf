//! The hooks the end-to-end tests drive the real binary with: a Ctrl-C at a chosen step
//! or phase, a pause inside every atomic write (so a test can SIGKILL at a moment it
//! observes), and a bug's panic. Compiled only with the `test-hooks` feature, which
//! `make test` enables: the binary a user builds (`cargo build --release`) reads no
//! CHARGPT_* variable; without the feature every hook is a no-op.

/// CHARGPT_STOP_AFTER_STEPS=N: behave as if Ctrl-C came once N steps of a model are done.
pub fn stop_after_steps() -> Option<i64> {
    #[cfg(feature = "test-hooks")]
    return std::env::var("CHARGPT_STOP_AFTER_STEPS").ok().and_then(|v| v.parse().ok());
    #[cfg(not(feature = "test-hooks"))]
    None
}

/// CHARGPT_STOP_DURING=eval (or sample): true once, during the process's first
/// evaluation (or sampling), so that a test can check that such a stop resumes exactly.
pub fn stop_during(phase: &str) -> bool {
    #[cfg(feature = "test-hooks")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static FIRED: AtomicBool = AtomicBool::new(false);
        std::env::var("CHARGPT_STOP_DURING").is_ok_and(|p| p == phase) && !FIRED.swap(true, Ordering::SeqCst)
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = phase;
        false
    }
}

/// CHARGPT_TEST_PAUSE_BEFORE_RENAME_MS=N: every atomic write waits N ms between its
/// complete temporary file and the rename.
pub fn pause_before_rename() {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CHARGPT_TEST_PAUSE_BEFORE_RENAME_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// CHARGPT_TEST_INTERNAL_PANIC: a bug's panic, for the test of how internal errors read.
pub fn internal_panic() {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("CHARGPT_TEST_INTERNAL_PANIC").is_some() {
        panic!("test hook: an internal panic");
    }
}

/// CHARGPT_TEST_OUT_OF_MEMORY: libtorch's out-of-memory failure, raised where the command
/// starts, for the tests of what each command advises.
pub fn out_of_memory() {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("CHARGPT_TEST_OUT_OF_MEMORY").is_some() {
        crate::ffi::raise(crate::ffi::LibtorchError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes (test hook)"
                .into(),
        ));
    }
}
