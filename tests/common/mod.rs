//! Helpers for tests that drive the real `chargpt` binary.
#![allow(dead_code)]

use chargpt::config::RunConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chargpt"))
}

/// The binary with its test hooks (src/test_hooks.rs): a test that sets a CHARGPT_*
/// variable must run against a build that reads it, or it would test nothing.
pub fn hooked_bin() -> Command {
    if !cfg!(feature = "test-hooks") {
        panic!("this test drives the test hooks: run it with --features test-hooks (make test does)");
    }
    bin()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference excerpt (3,000 characters of the corpus, committed) as a small training text.
pub fn excerpt() -> PathBuf {
    root().join("reference/excerpt.txt")
}

/// The excerpt's text (what in-process tests train on).
pub fn excerpt_text() -> String {
    std::fs::read_to_string(excerpt()).expect("reference/excerpt.txt is committed")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn run(args: &[&str]) -> Run {
    bin().args(args).output().expect("chargpt runs").into()
}

/// A run must have succeeded; shows its output otherwise.
pub fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "chargpt {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// A run must fail with one clean line on stderr that contains `needle`.
pub fn fails_with(args: &[&str], needle: &str) -> Run {
    let r = run(args);
    assert_ne!(r.code, 0, "chargpt {args:?} should fail:\n{}", r.stdout);
    let err = r.stderr.trim();
    assert!(err.contains(needle), "chargpt {args:?}: expected {needle:?} in stderr, got:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace") && !err.contains("RUST_BACKTRACE"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {err}");
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    r
}

/// Tiny training flags on the excerpt, into `out`.
pub fn tiny_train<'a>(out: &'a Path, models: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["train", "--preset", "tiny", "--models", models, "--no-plot", "--out"].iter().map(|s| s.to_string()).collect();
    args.push(out.display().to_string());
    args.push("--data".into());
    args.push(excerpt().display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// As [`tiny_train`], on the text at `data` instead of the excerpt.
pub fn tiny_train_on<'a>(out: &'a Path, models: &'a str, data: &Path, extra: &[&'a str]) -> Vec<String> {
    let mut args = tiny_train(out, models, extra);
    let at = args.iter().position(|a| a == "--data").expect("tiny_train passes --data") + 1;
    args[at] = data.display().to_string();
    args
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A small model and trainer (C 32, H 4, Tmax 16, L 2, B 16) for in-process training tests.
pub fn small_options(steps: i64, seed: i64, lr: f64) -> RunConfig {
    RunConfig {
        batch_size: 16,
        block_size: 16,
        n_embed: 32,
        num_heads: 4,
        block_layers: 2,
        dropout: 0.1,
        lr,
        steps,
        eval_every: 100,
        eval_steps: 4,
        generate_chars: 20,
        seed,
        ..RunConfig::default()
    }
}

/// (step, train_loss, val_loss) of a model's CSV; the timing columns differ run to run.
pub fn losses(dir: &Path, model: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join(format!("{model}.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// Runs `chargpt` with `args`, acting as if Ctrl-C came once `steps` steps of a model are
/// done (the CHARGPT_STOP_AFTER_STEPS hook).
pub fn run_stopped_after(args: &[String], steps: &str) -> Run {
    hooked_bin().args(args).env("CHARGPT_STOP_AFTER_STEPS", steps).output().expect("chargpt runs").into()
}
