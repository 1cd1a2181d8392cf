//! Nothing lost, nothing silently wrong: what an adversarial user tries against a run
//! folder (concurrent writers, outputs onto inputs, closed pipes, inputs that are not
//! files, a run.json left empty by a kill), each through the real binary.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until `what` holds, failing loudly after a generous `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A second writer into a run folder is refused, whether it starts the folder afresh
/// (`--force`), resumes it, or plots it, while the first one trains.
#[test]
fn a_second_writer_into_a_run_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut first = bin()
        .args(strs(&tiny_train(&out, "v10", &["--steps", "1000000", "--eval-every", "20"])))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "the first checkpoint", || out.join("v10.json").exists());
    let force = run(&strs(&tiny_train(&out, "v1", &["--force"])));
    let resume = run(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
    let plot = run(&["plot", out.to_str().unwrap()]);
    let _ = first.kill();
    let _ = first.wait();
    for (what, r) in [("--force", &force), ("--resume", &resume), ("plot", &plot)] {
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        let err = r.stderr.trim();
        assert!(err.contains("is in use by another chargpt (process ") && err.lines().count() == 1, "{what}: {err}");
    }
    assert!(std::fs::read_to_string(out.join("run.json")).unwrap().contains("\"v10\""), "the first run's record stays");
    // Killed, the first run's lock is gone with it: the folder is writable again.
    ok(&["plot", out.to_str().unwrap()]);
}

/// `generate --out` never writes onto the checkpoint, its JSON, any file of a run, or
/// the prompt it reads; a new file is written whole.
#[test]
fn generate_never_writes_onto_what_it_reads_or_a_run_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1,v4", &[])));
    let ckpt = out.join("v4.safetensors");
    let before: Vec<Vec<u8>> = std::fs::read_dir(&out).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    for target in ["v4.safetensors", "v4.json", "v1.resume.safetensors", "v1.csv", "run.json", "summary.csv", "v1.sample.txt"] {
        let t = out.join(target);
        fails_with(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--chars", "5", "--out", t.to_str().unwrap()], "--out");
    }
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "First").unwrap();
    let args =
        ["generate", "--checkpoint", ckpt.to_str().unwrap(), "--prompt-file", prompt.to_str().unwrap(), "--out", prompt.to_str().unwrap()];
    fails_with(&args, "is the file this command reads");
    let after: Vec<Vec<u8>> = std::fs::read_dir(&out).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(before == after, "no file of the run changed");
    assert_eq!(std::fs::read_to_string(&prompt).unwrap(), "First");
    let mine = out.join("mine.txt");
    ok(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--chars", "30", "--out", mine.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&mine).unwrap().chars().count() >= 30);
}

/// A training text inside --out named like a file chargpt writes is refused, --force or
/// not, and stays as it was.
#[test]
fn the_training_text_inside_the_run_folder_is_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fx");
    std::fs::create_dir(&out).unwrap();
    let text = out.join("v1.sample.txt");
    std::fs::copy(excerpt(), &text).unwrap();
    for extra in [&[][..], &["--force"]] {
        fails_with(&strs(&tiny_train_on(&out, "v1", &text, extra)), "is a file chargpt writes in");
        assert_eq!(std::fs::read(&text).unwrap(), std::fs::read(excerpt()).unwrap());
    }
    // Through a link, too.
    let link = dir.path().join("book.txt");
    std::os::unix::fs::symlink(&text, &link).unwrap();
    fails_with(&strs(&tiny_train_on(&out, "v1", &link, &["--force"])), "is a file chargpt writes in");
    assert_eq!(std::fs::read(&text).unwrap(), std::fs::read(excerpt()).unwrap());
}

/// A closed stderr (`2>&1 | head -3`) does not stop a training, as a closed stdout does not.
#[test]
fn a_closed_stderr_does_not_stop_a_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin().args(strs(&tiny_train(&out, "v1,v10", &[]))).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(out.join("v10.sample.txt").exists());
}

/// Inputs that are not regular files are refused before any byte is read.
#[test]
fn a_corpus_or_prompt_that_is_not_a_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for data in [std::path::Path::new("/dev/zero"), std::path::Path::new("/dev/urandom"), fifo.as_path()] {
        fails_with(&strs(&tiny_train_on(&dir.path().join("r"), "v1", data, &[])), "is not a regular file");
    }
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &[])));
    let ckpt = out.join("v1.safetensors");
    let r = fails_with(
        &["generate", "--checkpoint", ckpt.to_str().unwrap(), "--prompt-file", "/dev/zero"],
        "prompt file /dev/zero is not a regular file",
    );
    assert!(!r.stderr.contains("--data"), "the prompt's own words: {}", r.stderr);
    fails_with(
        &["generate", "--checkpoint", ckpt.to_str().unwrap(), "--prompt-file", "/no/such"],
        "prompt file /no/such does not exist (pass --prompt-file",
    );
}

/// A run.json left empty by a kill during its first write: nothing was trained, so the
/// folder is free again, and --resume says what to do.
#[test]
fn an_empty_run_json_after_a_kill_is_nothing_trained() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("run.json"), b"").unwrap();
    fails_with(
        &["train", "--resume", out.to_str().unwrap()],
        "run.json is empty: the run that claimed the folder stopped before training; start it again with --out",
    );
    ok(&strs(&tiny_train(&out, "v1", &[])));
}
