//! Same seed, same machine, same numbers, whatever else runs on it (docs/REPRODUCIBILITY.md):
//! a run computes with one thread count from start to end, in MKL's strict reproducibility
//! mode, and records both with the CPU and the libtorch. The sizes are the `cpu` preset's
//! (C 128, B 32, Tmax 64), where MKL splits its matrix multiplies across threads.

mod common;
use common::*;
use std::path::Path;

/// The `cpu` preset's model and batch sizes, 16 steps, on the excerpt, into `out`.
fn cpu_sized(out: &Path, models: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["train", "--preset", "cpu", "--models", models, "--steps", "16", "--eval-every", "8"].iter().map(|s| s.to_string()).collect();
    args.extend(["--eval-steps", "2", "--generate-chars", "40", "--no-plot", "--data"].map(String::from));
    args.push(excerpt().display().to_string());
    args.push("--out".into());
    args.push(out.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn same_files(a: &Path, b: &Path, models: &[&str]) {
    for m in models {
        for f in [format!("{m}.safetensors"), format!("{m}.sample.txt")] {
            assert!(std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(), "{f} differs");
        }
        assert_eq!(losses(a, m), losses(b, m), "{m}");
    }
}

/// MKL's strict mode makes the thread count irrelevant: without it, 1 and 2 threads give
/// different V8 and V10 weights on the Intel Xeon this was measured on.
#[test]
fn one_and_two_threads_give_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(&strs(&cpu_sized(&one, "v8,v10", &["--threads", "1"])));
    ok(&strs(&cpu_sized(&two, "v8,v10", &["--threads", "2"])));
    same_files(&one, &two, &["v8", "v10"]);
}

/// The fast path's own kernels split their work by rows, sequences and heads, never by
/// thread, and sum in fixed chunks: at the same sizes they give the same weights at 1 and
/// 2 threads too, dropout on.
#[test]
fn the_fast_path_gives_the_same_weights_at_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(&strs(&cpu_sized(&one, "v5,v10", &["--impl", "fast", "--threads", "1"])));
    ok(&strs(&cpu_sized(&two, "v5,v10", &["--impl", "fast", "--threads", "2"])));
    same_files(&one, &two, &["v5", "v10"]);
}

/// The default thread count follows the load, and the load changes the speed of a run,
/// not its numbers.
#[test]
fn a_run_beside_a_busy_process_equals_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (alone, beside) = (dir.path().join("alone"), dir.path().join("beside"));
    ok(&strs(&cpu_sized(&alone, "v10", &[])));
    let mut busy = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
    let r = run(&strs(&cpu_sized(&beside, "v10", &[])));
    busy.kill().unwrap();
    busy.wait().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    same_files(&alone, &beside, &["v10"]);
}

/// Stopped after 9 of 16 steps at 2 threads and resumed: the very run.
#[test]
fn a_stopped_and_resumed_run_at_two_threads_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, stopped) = (dir.path().join("straight"), dir.path().join("stopped"));
    ok(&strs(&cpu_sized(&straight, "v10", &["--threads", "2"])));
    let first = run_stopped_after(&cpu_sized(&stopped, "v10", &["--threads", "2"]), "9");
    assert_eq!(first.code, 130, "{}", first.stderr);
    let resumed = ok(&["train", "--resume", stopped.to_str().unwrap(), "--no-plot"]);
    assert!(resumed.stdout.contains("on cpu (2 threads"), "the recorded count: {}", resumed.stdout);
    same_files(&straight, &stopped, &["v10"]);
}

#[test]
fn run_json_and_each_checkpoint_record_the_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &["--threads", "2"])));
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["threads"], 2);
    let machine = &run["machine"];
    assert_eq!(machine["libtorch"], "2.11.0");
    assert_eq!(machine["mkl_cbwr"], "AUTO,STRICT");
    let cpu = machine["cpu"].as_str().unwrap();
    assert!(cpu.contains("family") || !cpu.is_empty(), "{cpu}");
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("v1.json")).unwrap()).unwrap();
    let a = &info["arithmetic"];
    assert_eq!((a["threads"].as_i64(), a["device"].as_str(), a["implementation"].as_str()), (Some(2), Some("cpu"), Some("faithful")));
    assert_eq!((a["precision"].as_str(), a["cpu"].as_str(), a["libtorch"].as_str()), (Some("fp32"), Some(cpu), Some("2.11.0")));
}

/// The default follows the load (auto), which the header and run.json say; a count the
/// user gives is kept; bad counts are refused in one line.
#[test]
fn the_default_follows_the_load_a_given_count_is_kept_and_bad_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auto = dir.path().join("auto");
    let r = ok(&strs(&tiny_train(&auto, "v1", &[])));
    assert!(r.stdout.contains("on cpu (up to 2 threads, following the load)"), "{}", r.stdout);
    assert!(std::fs::read_to_string(auto.join("run.json")).unwrap().contains("\"threads\": \"auto\""));
    let fixed = dir.path().join("fixed");
    let r = ok(&strs(&tiny_train(&fixed, "v1", &["--threads", "1"])));
    assert!(r.stdout.contains("on cpu (1 thread)"), "{}", r.stdout);
    for bad in ["0", "x", "5000"] {
        fails_with(
            &strs(&tiny_train(&dir.path().join("bad"), "v1", &["--threads", bad])),
            "--threads takes a count from 1 to 1024 or `auto`",
        );
    }
}

/// A resume keeps the recorded count, names a changed one, and says when the machine
/// differs from the one the run started on.
#[test]
fn a_resume_keeps_the_thread_count_and_names_a_different_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &["--threads", "1"])));
    let path = out.join("run.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut run: serde_json::Value = serde_json::from_str(&text).unwrap();
    run["machine"]["cpu"] = "Another CPU (family 1, model 2)".into();
    std::fs::write(&path, serde_json::to_string_pretty(&run).unwrap()).unwrap();
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--steps", "45", "--no-plot"]);
    assert!(r.stdout.contains("on cpu (1 thread"), "{}", r.stdout);
    assert!(r.stdout.contains("this run started elsewhere (CPU \"Another CPU (family 1, model 2)\" then"), "{}", r.stdout);
    assert!(r.stdout.contains("its numbers will part from an uninterrupted run's"), "{}", r.stdout);
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--steps", "50", "--threads", "2", "--no-plot"]);
    assert!(r.stdout.contains("continuing with --threads 2 instead of the run's 1"), "{}", r.stdout);
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"threads\": 2"));
}
