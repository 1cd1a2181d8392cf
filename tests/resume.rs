//! Long runs that can be stopped: an interrupted and resumed run gives the same losses as
//! an uninterrupted one; Ctrl-C writes a checkpoint; SIGKILL never corrupts one.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn stopped_and_resumed_equals_uninterrupted() {
    stop_and_resume("faithful");
}

/// The fast path too: its dropout masks come from seeds drawn from the saved generator.
#[test]
fn stopped_and_resumed_equals_uninterrupted_on_the_fast_path() {
    stop_and_resume("fast");
}

fn stop_and_resume(implementation: &str) {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let flags = ["--steps", "61", "--eval-every", "10", "--impl", implementation];
    ok(&strs(&tiny_train(&straight, "v1,v10", &flags)));

    let stopped = dir.path().join("stopped");
    let first = run_stopped_after(&tiny_train(&stopped, "v1,v10", &flags), "31");
    assert_eq!(first.code, 130, "{}", first.stderr);
    assert!(first.stderr.contains("v1 stopped after 31 steps"), "{}", first.stderr);
    assert!(first.stderr.contains("resume with: chargpt train --resume"), "{}", first.stderr);
    assert!(stopped.join("v1.resume.safetensors").exists());
    // The hook stops v1 after 31 steps; the first resume finishes v1 and stops v10 after 31
    // steps; the second finishes v10.
    let resume = || -> Run {
        let mut cmd = hooked_bin();
        cmd.args(["train", "--resume", stopped.to_str().unwrap(), "--no-plot"]).env("CHARGPT_STOP_AFTER_STEPS", "31");
        cmd.output().unwrap().into()
    };
    let second = resume();
    assert_eq!(second.code, 130, "{}", second.stderr);
    assert!(second.stderr.contains("v10 stopped after 31 steps"), "{}", second.stderr);
    let last = resume();
    assert_eq!(last.code, 0, "{}", last.stderr);
    for m in ["v1", "v10"] {
        assert_eq!(losses(&straight, m), losses(&stopped, m), "{m}");
        let same = |f: String| fs::read(straight.join(&f)).unwrap() == fs::read(stopped.join(&f)).unwrap();
        assert!(same(format!("{m}.sample.txt")), "{m} sample");
        assert!(same(format!("{m}.safetensors")), "{m} weights");
    }
    assert!(stopped.join("v10.resume.safetensors").exists(), "the resume file stays: --steps extends a finished model from it");
    let again = ok(&["train", "--resume", stopped.to_str().unwrap(), "--no-plot"]);
    assert!(again.stdout.contains("v10: already finished"), "{}", again.stdout);
}

fn spawn(args: &[String]) -> std::process::Child {
    bin().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn ctrl_c_checkpoints_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = spawn(&tiny_train(&out, "v10", &["--steps", "100000", "--eval-every", "50"]));
    // Wait for the first checkpoint, then interrupt.
    for _ in 0..300 {
        if out.join("v10.resume.safetensors").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stderr.contains("stopped: v10 stopped after") && !r.stderr.contains("error"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("resume with: chargpt train --resume {}", out.display())), "{}", r.stderr);
    // The checkpoint written on interrupt loads.
    ok(&["eval", "--checkpoint", out.join("v10.safetensors").to_str().unwrap(), "--data", excerpt().to_str().unwrap()]);
}

/// Polls (every 2 ms, up to two minutes) until `seen()` holds; false if the child exits first.
fn wait_until(child: &mut std::process::Child, seen: impl Fn() -> bool) -> bool {
    for _ in 0..60_000 {
        if seen() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the run neither reached the awaited state nor exited within two minutes");
}

/// Rows in a model's CSV: one per checkpoint.
fn checkpoints(dir: &Path, model: &str) -> usize {
    fs::read_to_string(dir.join(format!("{model}.csv"))).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// A temporary file of an atomic write, complete but not yet renamed.
fn write_in_progress(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().contains(".tmp-")))
}

/// SIGKILL at moments the test observes, not after sleeps: after the 3rd checkpoint; while
/// a checkpoint is being written (its temporary file complete, the rename not yet done);
/// after two more checkpoints of the resumed run. Each time a loadable checkpoint remains,
/// and the final resume ends with the losses of an uninterrupted run.
#[test]
fn sigkill_at_any_moment_leaves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--steps", "301", "--eval-every", "5", "--eval-steps", "1"];
    let straight = dir.path().join("straight");
    ok(&strs(&tiny_train(&straight, "v10", &flags)));

    let out = dir.path().join("killed");
    let resume: Vec<String> = ["train", "--resume", out.to_str().unwrap(), "--no-plot"].iter().map(|s| s.to_string()).collect();
    let loadable = || {
        ok(&["eval", "--checkpoint", out.join("v10.safetensors").to_str().unwrap(), "--data", excerpt().to_str().unwrap()]);
    };
    let kill = |mut child: std::process::Child| {
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    };

    let mut child = spawn(&tiny_train(&out, "v10", &flags));
    assert!(wait_until(&mut child, || checkpoints(&out, "v10") >= 3), "the run ended before its 3rd checkpoint");
    kill(child);
    loadable();

    let mut slow_writes = hooked_bin();
    slow_writes.args(&resume).env("CHARGPT_TEST_PAUSE_BEFORE_RENAME_MS", "3000").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = slow_writes.spawn().unwrap();
    assert!(wait_until(&mut child, || write_in_progress(&out)), "the resumed run ended without writing a checkpoint");
    kill(child);
    loadable();

    let before = checkpoints(&out, "v10");
    let mut child = spawn(&resume);
    assert!(wait_until(&mut child, || checkpoints(&out, "v10") >= before + 2), "the resumed run ended too early");
    kill(child);
    loadable();

    ok(&strs(&resume));
    assert_eq!(losses(&straight, "v10"), losses(&out, "v10"));
}

/// The same files, byte for byte or loss for loss, in two run folders.
fn same_results(a: &Path, b: &Path, model: &str) {
    assert_eq!(losses(a, model), losses(b, model), "{model} losses");
    for f in [format!("{model}.sample.txt"), format!("{model}.safetensors")] {
        assert!(fs::read(a.join(&f)).unwrap() == fs::read(b.join(&f)).unwrap(), "{f} differs");
    }
}

/// Ctrl-C during an evaluation, or during the sampling after training, stops there; the
/// resumed run redoes exactly that evaluation (or sample) and ends as an uninterrupted one.
#[test]
fn stopped_during_evaluation_or_sampling_resumes_into_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--steps", "41", "--eval-every", "20"];
    let straight = dir.path().join("straight");
    ok(&strs(&tiny_train(&straight, "v10", &flags)));
    for (phase, steps) in [("eval", 21), ("sample", 41)] {
        let out = dir.path().join(phase);
        let mut cmd = hooked_bin();
        cmd.args(strs(&tiny_train(&out, "v10", &flags))).env("CHARGPT_STOP_DURING", phase);
        let first: Run = cmd.output().unwrap().into();
        assert_eq!(first.code, 130, "{phase}: {}", first.stderr);
        assert!(first.stderr.contains(&format!("v10 stopped after {steps} steps")), "{phase}: {}", first.stderr);
        ok(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
        same_results(&straight, &out, "v10");
        // The evaluation redone after the resume measured the steps before it.
        let csv = fs::read_to_string(out.join("v10.csv")).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == "tokens_per_s").unwrap();
        for row in csv.lines().skip(1) {
            let rate: f64 = row.split(',').nth(at).unwrap().parse().unwrap();
            assert!(rate.is_finite() && rate > 0.0, "{phase}: tokens/s {rate} in {row}");
        }
    }
}

/// A real SIGTERM in the middle of a long evaluation ends the process promptly (not after
/// the evaluation's millions of batches), with the checkpoint loadable.
#[test]
fn sigterm_during_a_long_evaluation_stops_promptly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = tiny_train(&out, "v1", &["--steps", "21", "--eval-every", "20", "--eval-steps", "100000000"]);
    let mut child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // The piped progress prints "v1 21/21" after the last step, just before the evaluation.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("21/21") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the run ended before its evaluation");
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let sent = std::time::Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(20), "took {:?} to stop", sent.elapsed());
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("v1 stopped after 21 steps"), "{rest}");
    ok(&["eval", "--checkpoint", out.join("v1.safetensors").to_str().unwrap(), "--data", excerpt().to_str().unwrap()]);
}

/// `--steps N` with --resume extends a finished run: the result equals a run of N steps.
#[test]
fn steps_with_resume_extends_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    ok(&strs(&tiny_train(&straight, "v1,v10", &["--steps", "61", "--eval-every", "20"])));
    let out = dir.path().join("extended");
    ok(&strs(&tiny_train(&out, "v1,v10", &["--steps", "41", "--eval-every", "20"])));
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--steps", "61", "--no-plot"]);
    assert!(r.stdout.contains("resuming after step 41"), "{}", r.stdout);
    for m in ["v1", "v10"] {
        same_results(&straight, &out, m);
    }
    let run_json = fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("\"steps\": 61"), "{run_json}");
    fails_with(&["train", "--resume", out.to_str().unwrap(), "--steps", "30"], "can only extend");
}

#[test]
fn resume_refuses_flags_that_would_change_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &[])));
    let dir_s = out.to_str().unwrap();
    for flag in
        [&["--lr", "0.1"][..], &["--seed", "3"], &["--batch-size", "4"], &["--models", "v2"], &["--dropout", "0.5"], &["--impl", "fast"]]
    {
        let mut args = vec!["train", "--resume", dir_s];
        args.extend_from_slice(flag);
        fails_with(&args, &format!("{} cannot be given with --resume", flag[0]));
    }
}

/// A run recorded on CUDA is not silently continued elsewhere: where libtorch sees no GPU,
/// the error names --device; with it, the run continues on the CPU. (Where there is a
/// GPU, the plain resume continues on it.)
#[test]
fn resume_uses_the_recorded_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = hooked_bin();
    cmd.args(strs(&tiny_train(&out, "v1", &[]))).env("CHARGPT_STOP_AFTER_STEPS", "10");
    assert_eq!(Run::from(cmd.output().unwrap()).code, 130);
    let run_json = out.join("run.json");
    let text = fs::read_to_string(&run_json)
        .unwrap()
        .replace("\"device\": \"cpu\"", "\"device\": \"cuda\"")
        .replace("\"precision\": \"fp32\"", "\"precision\": \"tf32\"");
    fs::write(&run_json, text).unwrap();
    if tch::Cuda::is_available() {
        let r = ok(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
        assert!(r.stdout.contains("on cuda"), "{}", r.stdout);
        return;
    }
    fails_with(&["train", "--resume", out.to_str().unwrap()], "pass --device cpu");
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--device", "cpu", "--no-plot"]);
    assert!(r.stdout.contains("continuing a cuda run on cpu"), "{}", r.stdout);
}

/// A training text that changed since the run started (here: as many characters, one of
/// them another) is refused on resume, the hashes named.
#[test]
fn resume_refuses_a_changed_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    fs::copy(excerpt(), &text).unwrap();
    let out = dir.path().join("run");
    let mut cmd = hooked_bin();
    cmd.args(strs(&tiny_train_on(&out, "v1", &text, &[]))).env("CHARGPT_STOP_AFTER_STEPS", "25");
    assert_eq!(Run::from(cmd.output().unwrap()).code, 130);
    let changed = fs::read_to_string(&text).unwrap().replace('e', "\u{263a}");
    fs::write(&text, changed).unwrap();
    let r = fails_with(&["train", "--resume", out.to_str().unwrap()], "changed since this run started (sha256 ");
    assert!(r.stderr.contains("resume with the original text"), "{}", r.stderr);
}
