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

/// A resume finds the text where run.json recorded it (absolute), from any folder, and
/// takes --data for the same text moved elsewhere; another text is refused by its hash.
#[test]
fn a_resume_finds_its_text_from_anywhere_and_after_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("book.txt");
    std::fs::copy(excerpt(), &text).unwrap();
    let out = dir.path().join("run");
    // A relative --data, from the folder the text is in.
    let args = tiny_train_on(&out, "v1", std::path::Path::new("book.txt"), &[]);
    let r: Run = bin().args(strs(&args)).current_dir(dir.path()).output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r: Run =
        bin().args(["train", "--resume", out.to_str().unwrap(), "--steps", "45", "--no-plot"]).current_dir("/").output().unwrap().into();
    assert_eq!(r.code, 0, "from another folder: {}", r.stderr);
    let moved = dir.path().join("moved.txt");
    std::fs::rename(&text, &moved).unwrap();
    fails_with(&["train", "--resume", out.to_str().unwrap(), "--steps", "50", "--no-plot"], "does not exist");
    ok(&["train", "--resume", out.to_str().unwrap(), "--steps", "50", "--no-plot", "--data", moved.to_str().unwrap()]);
    std::fs::write(&moved, "another text entirely, with other letters: qqq zzz").unwrap();
    fails_with(
        &["train", "--resume", out.to_str().unwrap(), "--steps", "55", "--no-plot", "--data", moved.to_str().unwrap()],
        "changed since this run started",
    );
}

/// Ctrl-C is a stop, not an error: its line says so and how to resume, exit 130.
#[test]
fn a_stop_reads_as_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = run_stopped_after(&tiny_train(&out, "v1", &[]), "21");
    assert_eq!(r.code, 130, "{}", r.stderr);
    let last = r.stderr.trim().lines().last().unwrap();
    assert!(last.starts_with("stopped: v1 stopped after 21 steps, checkpoint written; resume with: chargpt train --resume"), "{last}");
    assert!(!r.stderr.contains("error"), "{}", r.stderr);
}

/// An unfinished checkpoint is named as such by generate and eval; a temperature so
/// small that the probabilities overflow is one line with advice.
#[test]
fn generate_and_eval_say_what_they_were_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = run_stopped_after(&tiny_train(&out, "v1", &[]), "21");
    assert_eq!(r.code, 130, "{}", r.stderr);
    let ckpt = out.join("v1.safetensors");
    for args in [&["generate", "--chars", "5"][..], &["eval"]] {
        let mut a = args.to_vec();
        a.extend(["--checkpoint", ckpt.to_str().unwrap()]);
        let r = ok(&a);
        assert!(r.stderr.contains("is the checkpoint after 21 steps of a training that has not finished"), "{args:?}: {}", r.stderr);
    }
    let r = fails_with(
        &["generate", "--checkpoint", ckpt.to_str().unwrap(), "--temperature", "1e-40"],
        "sampling failed: the probabilities are not finite",
    );
    assert!(r.stderr.len() < 400, "one short line: {}", r.stderr);
}

/// A flag given to the resume of a finished run changes no record: nothing trains.
#[test]
fn resuming_a_finished_run_with_other_flags_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &[])));
    let before = std::fs::read(out.join("run.json")).unwrap();
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--precision", "bf16", "--threads", "1", "--no-plot"]);
    assert!(r.stdout.contains("has finished its 41 steps; run.json is unchanged"), "{}", r.stdout);
    assert_eq!(std::fs::read(out.join("run.json")).unwrap(), before);
}

/// A finished model whose checkpoint or CSV was deleted is restored from its resume file,
/// byte for byte; without its resume file it is skipped with a notice, never retrained.
#[test]
fn a_finished_model_with_a_deleted_checkpoint_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1,v4", &[])));
    let files = ["v4.safetensors", "v4.csv", "v4.sample.txt"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    for f in &files[..2] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
    assert!(r.stdout.contains("v4: finished, but v4.safetensors, v4.csv missing; restoring them from"), "{}", r.stdout);
    assert!(r.stdout.contains("v1: already finished"), "{}", r.stdout);
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    assert!(before == after, "restored byte for byte");
    // Kept without its weights and resume file (as results/ and packed GPU runs are): the
    // record stands, nothing trains again, and the line says what is missing.
    for f in ["v4.safetensors", "v4.resume.safetensors"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let json = std::fs::read(out.join("v4.json")).unwrap();
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
    assert!(
        r.stdout.contains("v4: finished in") && r.stdout.contains("but v4.safetensors and its resume file are not there: skipped"),
        "{}",
        r.stdout
    );
    assert!(!out.join("v4.safetensors").exists() && std::fs::read(out.join("v4.json")).unwrap() == json, "nothing trained again");
    assert!(std::fs::read_to_string(out.join("summary.csv")).unwrap().lines().any(|l| l.starts_with("v4,")), "its summary stays");
}

/// Rewrites the `chargpt_resume` metadata of a resume file with `edit`.
fn edit_resume_metadata(path: &std::path::Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(header["__metadata__"]["chargpt_resume"].as_str().unwrap()).unwrap();
    edit(&mut state);
    header["__metadata__"]["chargpt_resume"] = state.to_string().into();
    let mut text = header.to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Values read from files are checked like flags, and the errors name the file and field.
#[test]
fn values_read_from_files_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = run_stopped_after(&tiny_train(&out, "v10", &[]), "21");
    assert_eq!(r.code, 130, "{}", r.stderr);
    let resume = out.join("v10.resume.safetensors");
    let original = std::fs::read(&resume).unwrap();
    let dir_s = out.to_str().unwrap();
    edit_resume_metadata(&resume, |s| s["steps_done"] = 5000.into());
    fails_with(&["train", "--resume", dir_s, "--no-plot"], "field steps_done is 5000, outside the run's 0..=41 steps");
    std::fs::write(&resume, &original).unwrap();
    edit_resume_metadata(&resume, |s| s["adam_steps"] = serde_json::json!({}));
    fails_with(&["train", "--resume", dir_s, "--no-plot"], "field adam_steps names 0 parameters");
    std::fs::write(&resume, &original).unwrap();
    // run.json's values, named as fields of run.json.
    let run_json = out.join("run.json");
    let text = std::fs::read_to_string(&run_json).unwrap();
    std::fs::write(&run_json, text.replace("\"eval_every\": 20", "\"eval_every\": 0")).unwrap();
    let r = fails_with(&["train", "--resume", dir_s, "--no-plot"], "run.json: field eval_every must be a positive integer, got 0");
    assert!(!r.stderr.contains("--eval-every"), "{}", r.stderr);
    std::fs::write(&run_json, text).unwrap();
    // A checkpoint JSON whose sizes no machine holds is refused before anything is built.
    let info = out.join("v10.json");
    let json = std::fs::read_to_string(&info).unwrap();
    std::fs::write(&info, json.replace("\"block_size\": 16", "\"block_size\": 5000000")).unwrap();
    fails_with(&["generate", "--checkpoint", out.join("v10.safetensors").to_str().unwrap()], "v10.json: its sizes (block_size 5000000");
}

/// A model with steps behind it continues in the precision they were computed in, unless
/// `--precision` says otherwise; both are said, and its history records which steps are which.
#[test]
fn each_model_continues_in_the_precision_it_was_trained_with() {
    let dir = tempfile::tempdir().unwrap();
    let (out, straight) = (dir.path().join("run"), dir.path().join("straight"));
    let dir_s = out.to_str().unwrap();
    ok(&strs(&tiny_train(&out, "v1,v4", &[])));
    // v1 goes on in bf16 (the flag) and stops at step 51: run.json now says bf16.
    let r = run_stopped_after(&["train", "--resume", dir_s, "--steps", "61", "--precision", "bf16", "--no-plot"].map(String::from), "51");
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stdout.contains("v1: continuing in bf16 (--precision); its first 41 steps were computed in fp32"), "{}", r.stdout);
    // No flag: v1 keeps bf16, v4 (fp32 so far) keeps fp32 although run.json says bf16.
    let r = ok(&["train", "--resume", dir_s, "--no-plot"]);
    assert!(r.stdout.contains("v4: continuing in fp32, as its first 41 steps were trained (run.json's bf16"), "{}", r.stdout);
    assert!(!r.stdout.contains("v1: continuing"), "v1's record and run.json agree: {}", r.stdout);
    let history = |model: &str| -> Vec<(i64, i64, String)> {
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(format!("{model}.json"))).unwrap()).unwrap();
        let stretches = info["history"].as_array().unwrap_or_else(|| panic!("{model}.json has a history: {info}")).clone();
        stretches
            .iter()
            .map(|s| (s["from_step"].as_i64().unwrap(), s["to_step"].as_i64().unwrap(), s["precision"].as_str().unwrap().into()))
            .collect()
    };
    assert_eq!(history("v1"), [(0, 41, "fp32".into()), (41, 61, "bf16".into())]);
    assert_eq!(history("v4"), [(0, 61, "fp32".into())]);
    // v4's 61 steps are those of a straight fp32 run: it really continued in fp32.
    ok(&strs(&tiny_train(&straight, "v4", &["--steps", "61"])));
    assert_eq!(losses(&out, "v4"), losses(&straight, "v4"));
}

/// A seed's sub-folder resumed on its own to more steps: the top summary leaves that seed
/// out (its losses are after another step), says so, and the seed keeps its record.
#[test]
fn a_seed_resumed_on_its_own_leaves_the_top_summary_true() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &["--seeds", "2"])));
    let seeds_column =
        || std::fs::read_to_string(out.join("summary.csv")).unwrap().lines().nth(1).unwrap().split(',').nth(2).unwrap().to_string();
    assert_eq!(seeds_column(), "2");
    let sub = out.join("seed-1338");
    let r = ok(&["train", "--resume", sub.to_str().unwrap(), "--steps", "61", "--no-plot"]);
    assert!(r.stdout.contains("seed 1338's v1 has trained 61 steps, the run 41: it is left out of summary.csv"), "{}", r.stdout);
    assert_eq!(seeds_column(), "1", "only seed 1337 is after step 40");
    let r = ok(&["train", "--resume", out.to_str().unwrap(), "--no-plot"]);
    assert_eq!(r.stdout.matches("left out of summary.csv").count(), 1, "said once: {}", r.stdout);
    assert_eq!(seeds_column(), "1");
    let sub_run: serde_json::Value = serde_json::from_slice(&std::fs::read(sub.join("run.json")).unwrap()).unwrap();
    assert_eq!(sub_run["steps"], 61, "the seed's record matches its models");
    // Extending the whole run brings every seed to the same step again.
    ok(&["train", "--resume", out.to_str().unwrap(), "--steps", "61", "--no-plot"]);
    assert_eq!(seeds_column(), "2");
}

/// Out of memory, each command advises only flags it has.
#[test]
fn memory_advice_names_only_the_commands_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &[])));
    let weights = out.join("v1.safetensors");
    let oom = |args: &[&str]| -> String {
        let r: Run = hooked_bin().args(args).env("CHARGPT_TEST_OUT_OF_MEMORY", "1").output().unwrap().into();
        assert_eq!(r.code, 1, "{}", r.stderr);
        let err = r.stderr.trim().to_string();
        assert!(err.starts_with("error: the machine ran out of memory; ") && err.lines().count() == 1, "{err}");
        err
    };
    assert!(oom(&strs(&tiny_train(&dir.path().join("other"), "v1", &[]))).contains("--batch-size"));
    let eval = oom(&["eval", "--checkpoint", weights.to_str().unwrap()]);
    assert!(eval.contains("--batch-windows") && !eval.contains("--batch-size"), "{eval}");
    for args in [vec!["generate", "--checkpoint", weights.to_str().unwrap()], vec!["models"]] {
        let err = oom(&args);
        assert!(!err.contains("--batch") && !err.contains("--block-size"), "{err}");
    }
    let bench = oom(&["bench", "--models", "v1"]);
    assert!(bench.contains("--config") && bench.contains("--batch-size"), "{bench}");
    // The same for the other limits: a sample's length, a text too short for eval.
    fails_with(&["generate", "--checkpoint", weights.to_str().unwrap(), "--chars", "1000000000"], "more than the 100000000 characters");
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "ab").unwrap();
    let r = fails_with(&["eval", "--checkpoint", weights.to_str().unwrap(), "--data", short.to_str().unwrap()], "use a longer text");
    assert!(!r.stderr.contains("--block-size"), "{}", r.stderr);
}
