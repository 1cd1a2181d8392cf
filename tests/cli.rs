//! End-to-end: the real binary trains, generates, evaluates, and refuses bad input
//! with one clear line and a non-zero exit.

mod common;
use common::*;
use std::fs;

#[test]
fn train_generate_eval_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = ok(&strs(&tiny_train(&out, "v1,v4,v10", &[])));
    assert!(r.stdout.contains("v10 step 20: train loss"), "{}", r.stdout);
    for m in ["v1", "v4", "v10"] {
        for ext in ["csv", "safetensors", "json", "sample.txt"] {
            assert!(out.join(format!("{m}.{ext}")).exists(), "{m}.{ext}");
        }
    }
    let summary = fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.starts_with("model,parameters,final_train_loss,final_val_loss,final_loss_step,mean_s_per_step,tokens_per_s"));
    assert_eq!(summary.lines().count(), 4);
    let csv = fs::read_to_string(out.join("v10.csv")).unwrap();
    assert!(csv.starts_with("step,train_loss,val_loss,elapsed_s,tokens_per_s,val_bits_per_char,scheduled\n20,"), "{csv}");
    // With characters, bits per character are the loss over ln 2, exactly.
    for row in csv.lines().skip(1) {
        let f: Vec<f64> = row.split(',').take(6).map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[5], f[2] / 1.0 / std::f64::consts::LN_2, "{row}");
    }

    let ckpt = out.join("v10.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let a = ok(&["generate", "--checkpoint", ckpt, "--prompt", "the king", "--chars", "30", "--greedy"]);
    let b = ok(&["generate", "--checkpoint", ckpt, "--prompt", "the king", "--chars", "30", "--greedy"]);
    assert_eq!(a.stdout, b.stdout);
    assert!(a.stdout.starts_with("the king"));
    assert_eq!(a.stdout.trim_end_matches('\n').chars().count(), "the king".len() + 30);
    let s1 = ok(&["generate", "--checkpoint", ckpt, "--chars", "40", "--seed", "3"]);
    let s2 = ok(&["generate", "--checkpoint", ckpt, "--chars", "40", "--seed", "3"]);
    assert_eq!(s1.stdout, s2.stdout, "same seed, same sample");

    let excerpt = excerpt();
    let e = ok(&["eval", "--checkpoint", ckpt, "--data", excerpt.to_str().unwrap(), "--train"]);
    assert!(e.stdout.contains("v10 train loss") && e.stdout.contains("v10 val loss"), "{}", e.stdout);
    let again = ok(&["eval", "--checkpoint", ckpt, "--data", excerpt.to_str().unwrap(), "--train", "--batch-windows", "3"]);
    let parse = |s: &str| -> Vec<f64> { s.lines().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect() };
    for (x, y) in parse(&e.stdout).iter().zip(parse(&again.stdout)) {
        assert!((x - y).abs() < 1e-5, "eval does not depend on batching: {x} vs {y}");
    }

    for f in ["loss.png", "loss.svg"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    ok(&["plot", out.to_str().unwrap()]);
    assert!(out.join("loss.png").exists() && out.join("loss.svg").exists(), "plot draws them again");
}

#[test]
fn the_fast_path_trains_generates_and_resumes_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = ok(&strs(&tiny_train(&out, "v5,v10", &["--impl", "fast"])));
    assert!(r.stdout.contains("v10 step 40: train loss"), "{}", r.stdout);
    let run_json = fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("\"implementation\": \"fast\""), "{run_json}");
    // Same checkpoint format as the faithful path: it loads and generates.
    ok(&["generate", "--checkpoint", out.join("v10.safetensors").to_str().unwrap(), "--chars", "10"]);
}

#[test]
fn a_one_character_text_still_trains_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    fs::write(&text, "a".repeat(400)).unwrap();
    let out = dir.path().join("run");
    let mut args = tiny_train(&out, "v1,v3", &[]);
    let i = args.iter().position(|s| s == "--data").unwrap();
    args[i + 1] = text.display().to_string();
    ok(&strs(&args));
    assert_eq!(fs::read_to_string(out.join("v3.sample.txt")).unwrap(), "a".repeat(40));
}

#[test]
fn models_lists_the_table_of_models_md() {
    // What each model adds: `chargpt models` and the README's table say it in the words
    // of `ModelKind::adds` (which a unit test holds to each model's doc comment).
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let listed = ok(&["models"]).stdout;
    assert!(listed.contains("C=128"), "models follows train's default preset (cpu here): {listed}");
    let two = ok(&["models", "v1", "v10", "--preset", "blog"]).stdout;
    assert!(two.contains("10951380") && two.lines().count() == 4, "{two}");
    for kind in chargpt::model_kind::ModelKind::ALL {
        let n = kind.number();
        assert!(readme.contains(&format!("| V{n} | {} |", kind.adds())), "README's row of V{n} differs from `adds`");
        assert!(listed.contains(kind.adds()), "{listed}");
    }
    // The README's table is `chargpt models --markdown`, line for line.
    let markdown = ok(&["models", "--markdown"]).stdout;
    assert_eq!(markdown.lines().count(), 12, "{markdown}");
    for line in markdown.lines() {
        assert!(readme.lines().any(|l| l == line), "README lacks the line of `chargpt models --markdown`:\n{line}");
    }
    let r = ok(&["models", "--preset", "blog"]);
    assert!(r.stdout.contains("10951380"), "{}", r.stdout);
    let r = ok(&["models", "--n-embed", "128", "--num-heads", "4", "--block-size", "64", "--block-layers", "4"]);
    assert!(r.stdout.contains("838100") && r.stdout.contains("7056"), "{}", r.stdout);
}

#[test]
fn bad_data_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let with_data = |data: &str| {
        let mut a = tiny_train(&out, "v1", &[]);
        let i = a.iter().position(|s| s == "--data").unwrap();
        a[i + 1] = data.to_string();
        a
    };
    fails_with(&strs(&with_data("/no/such/file.txt")), "does not exist");
    fails_with(&strs(&with_data(dir.path().to_str().unwrap())), "is a directory");
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    fails_with(&strs(&with_data(empty.to_str().unwrap())), "is empty");
    let latin1 = dir.path().join("latin1.txt");
    fs::write(&latin1, b"caf\xe9 au lait").unwrap();
    fails_with(&strs(&with_data(latin1.to_str().unwrap())), "offset 3");
    let short = dir.path().join("short.txt");
    fs::write(&short, "a short text that is far too short for blocks").unwrap();
    fails_with(&strs(&with_data(short.to_str().unwrap())), "fewer than block_size + 1");
    assert!(!out.exists(), "nothing is written for a refused run");
}

#[test]
fn bad_sizes_and_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    fails_with(&strs(&tiny_train(&out, "v5", &["--n-embed", "10", "--num-heads", "4"])), "not divisible");
    fails_with(&strs(&tiny_train(&out, "v1", &["--steps", "0"])), "--steps must be a positive integer");
    fails_with(&strs(&tiny_train(&out, "v1", &["--batch-size", "-3"])), "--batch-size must be a positive integer");
    fails_with(&strs(&tiny_train(&out, "v1", &["--lr", "-0.1"])), "--lr must be a positive number");
    fails_with(&strs(&tiny_train(&out, "v1", &["--lr", "0"])), "--lr must be a positive number");
    fails_with(&strs(&tiny_train(&out, "v10", &["--dropout", "1.0"])), "--dropout must be in [0, 1)");
    fails_with(&strs(&tiny_train(&out, "v11", &[])), "unknown model \"v11\"");
    fails_with(&["train", "--preset", "huge", "--out", out.to_str().unwrap()], "invalid value 'huge'");
    fails_with(&["generate"], "--checkpoint");
    if !tch::Cuda::is_available() {
        fails_with(&strs(&tiny_train(&out, "v1", &["--device", "cuda"])), "no CUDA GPU");
        fails_with(&strs(&tiny_train(&out, "v1", &["--precision", "tf32"])), "--precision tf32 is for CUDA");
    }
    assert!(!out.exists());
}

#[test]
fn run_folders_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "keep me").unwrap();
    fails_with(&strs(&tiny_train(&file, "v1", &[])), "is a file");
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");

    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1", &[])));
    let before = fs::read(out.join("v1.safetensors")).unwrap();
    fails_with(&strs(&tiny_train(&out, "v1", &["--seed", "9"])), "already holds a run");
    assert!(fs::read(out.join("v1.safetensors")).unwrap() == before, "refused run left the checkpoint alone");
    ok(&strs(&tiny_train(&out, "v1", &["--seed", "9", "--force"])));
    assert!(fs::read(out.join("v1.safetensors")).unwrap() != before, "--force trained anew");
}

#[test]
fn bad_checkpoints_and_prompts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v4,v5", &[])));
    let v4 = out.join("v4.safetensors");
    let v5 = out.join("v5.safetensors");
    let gen = |p: &std::path::Path, extra: &[&str]| {
        let mut a = vec!["generate".to_string(), "--checkpoint".into(), p.display().to_string(), "--chars".into(), "5".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    fails_with(&strs(&gen(&out.join("v9.safetensors"), &[])), "does not exist");
    fails_with(&strs(&gen(&out, &[])), "is a directory");
    fails_with(&strs(&gen(&v4, &["--prompt", "the queen\u{e9}\u{2603}"])), "not in the model's vocabulary: '\u{e9}', '\u{2603}'");

    // Truncated.
    let bytes = fs::read(&v4).unwrap();
    let cut = dir.path().join("cut.safetensors");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fs::copy(out.join("v4.json"), dir.path().join("cut.json")).unwrap();
    fails_with(&strs(&gen(&cut, &[])), "not a valid safetensors file");
    // Not safetensors at all.
    let junk = dir.path().join("junk.safetensors");
    fs::write(&junk, "this is not a checkpoint").unwrap();
    fs::copy(out.join("v4.json"), dir.path().join("junk.json")).unwrap();
    fails_with(&strs(&gen(&junk, &[])), "not a valid safetensors file");
    // The tensors of another model under v4's description.
    let other = dir.path().join("other.safetensors");
    fs::copy(&v5, &other).unwrap();
    fs::copy(out.join("v4.json"), dir.path().join("other.json")).unwrap();
    fails_with(&strs(&gen(&other, &[])), "do not belong to a v4 model");
    // A JSON whose sizes do not match the tensors.
    let json = fs::read_to_string(out.join("v5.json")).unwrap().replace("\"n_embed\": 16", "\"n_embed\": 32");
    let wrong = dir.path().join("wrong.safetensors");
    fs::copy(&v5, &wrong).unwrap();
    fs::write(dir.path().join("wrong.json"), json).unwrap();
    fails_with(&strs(&gen(&wrong, &[])), "has shape");
    // No JSON beside the tensors.
    let bare = dir.path().join("bare.safetensors");
    fs::copy(&v5, &bare).unwrap();
    fails_with(&strs(&gen(&bare, &[])), "needs the JSON written beside");
    // The original files are untouched by all of this.
    assert!(fs::read(&v4).unwrap() == bytes, "the original checkpoint is untouched");
}

#[test]
fn a_diverging_loss_stops_with_the_model_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = fails_with(&strs(&tiny_train(&out, "v2", &["--lr", "1e6", "--steps", "200"])), "v2: the training loss became");
    assert!(r.stderr.contains("at step"), "{}", r.stderr);
    // It failed before any checkpoint: the folder is given back, and the printed advice works.
    assert!(r.stderr.contains("no checkpoint was written") && r.stderr.contains("retry with the same --out"), "{}", r.stderr);
    assert!(!out.join("run.json").exists());
    ok(&strs(&tiny_train(&out, "v2", &[])));
}

/// Files chargpt did not write in this run are never overwritten without --force, and
/// --force removes chargpt's own files only.
#[test]
fn a_folder_with_files_a_run_would_overwrite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mine");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("loss.png"), "my own plot").unwrap();
    fs::write(out.join("notes.txt"), "my notes").unwrap();
    fails_with(&strs(&tiny_train(&out, "v1", &[])), "holds files a run would overwrite (loss.png)");
    assert_eq!(fs::read_to_string(out.join("loss.png")).unwrap(), "my own plot");
    ok(&strs(&tiny_train(&out, "v1", &["--force"])));
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "my notes", "--force keeps what is not chargpt's");
}

/// Runs started at the same moment without --out get folders of their own.
#[test]
fn default_run_folders_are_never_shared() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["train", "--preset", "tiny", "--models", "v1", "--no-plot", "--data", excerpt().to_str().unwrap()].map(String::from);
    // The names of the next minute are taken already (by another run's claim), so every run
    // here meets a collision and must pick a name of its own.
    let now = chrono::Local::now();
    let taken: Vec<std::path::PathBuf> = (0..60)
        .map(|s| dir.path().join("runs").join(format!("excerpt-tiny-{}", (now + chrono::Duration::seconds(s)).format("%Y%m%d-%H%M%S"))))
        .collect();
    for t in &taken {
        fs::create_dir_all(t).unwrap();
        fs::write(t.join("run.json"), "another run's").unwrap();
    }
    let started: Vec<_> =
        (0..3).map(|_| bin().args(&args).current_dir(dir.path()).stdout(std::process::Stdio::null()).spawn().unwrap()).collect();
    for child in started {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for t in &taken {
        assert_eq!(fs::read_to_string(t.join("run.json")).unwrap(), "another run's", "a taken folder was written into");
    }
    let folders: Vec<_> =
        fs::read_dir(dir.path().join("runs")).unwrap().map(|e| e.unwrap().path()).filter(|p| !taken.contains(p)).collect();
    assert_eq!(folders.len(), 3, "{folders:?}");
    for f in folders {
        assert!(f.join("summary.csv").exists(), "{}", f.display());
    }
}

/// A steps/eval-every combination without any evaluation is refused before training; the
/// summary names the step its final losses come from (the blog's schedule).
#[test]
fn runs_without_an_evaluation_are_refused_and_the_final_step_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for (steps, every) in [("10", "50"), ("5", "5")] {
        fails_with(&strs(&tiny_train(&dir.path().join("no"), "v1", &["--steps", steps, "--eval-every", every])), "never evaluates");
    }
    assert!(!dir.path().join("no").exists(), "refused before anything was written");
    // One evaluation on the schedule (after step 10): said up front, and the finished
    // model is evaluated after its last step, 19, marked as off the schedule.
    let out = dir.path().join("run");
    let r = ok(&strs(&tiny_train(&out, "v1", &["--steps", "20", "--eval-every", "10"])));
    assert!(r.stdout.contains("note: --steps 20 with --eval-every 10 evaluates once"), "{}", r.stdout);
    assert!(r.stdout.contains("v1 step 19 (the last step, off the blog's schedule)"), "{}", r.stdout);
    let summary = fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.starts_with("model,parameters,final_train_loss,final_val_loss,final_loss_step,"), "{summary}");
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((row[4], row[10]), ("19", "false"), "{summary}");
    // --no-final-eval: the schedule's last evaluation, after step 10, is the summary's.
    let out = dir.path().join("scheduled-only");
    ok(&strs(&tiny_train(&out, "v1", &["--steps", "20", "--eval-every", "10", "--no-final-eval"])));
    let summary = fs::read_to_string(out.join("summary.csv")).unwrap();
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((row[4], row[10]), ("10", "true"), "{summary}");
}

/// The evaluation of the finished model changes nothing the blog's trainer computes: the
/// scheduled losses, the sample and the weights equal those of the same run without it,
/// and it happens once (a run whose last step is on the schedule gets no second one).
#[test]
fn the_final_evaluation_leaves_the_training_and_the_sample_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    ok(&strs(&tiny_train(&with, "v10", &["--steps", "30", "--eval-every", "20"])));
    ok(&strs(&tiny_train(&without, "v10", &["--steps", "30", "--eval-every", "20", "--no-final-eval"])));
    let (a, b) = (common::losses(&with, "v10"), common::losses(&without, "v10"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[..1], b[..], "the scheduled evaluation");
    assert_eq!(a[1].0, "29");
    for f in ["v10.sample.txt", "v10.safetensors"] {
        assert!(fs::read(with.join(f)).unwrap() == fs::read(without.join(f)).unwrap(), "{f} differs");
    }
    // The resume file keeps the generators as they were after the last step, before the
    // sample and the final evaluation drew: the sample is drawn again from it.
    let again = ok(&["generate", "--checkpoint", with.join("v10.safetensors").to_str().unwrap(), "--like-training"]);
    assert_eq!(again.stdout.trim_end(), fs::read_to_string(with.join("v10.sample.txt")).unwrap().trim_end());
    let on_schedule = dir.path().join("on-schedule");
    ok(&strs(&tiny_train(&on_schedule, "v10", &["--steps", "41", "--eval-every", "20"])));
    let rows = common::losses(&on_schedule, "v10");
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["20", "40"]);
}

/// A plot that cannot be drawn after a finished training is a warning: the run is done.
#[test]
fn a_plot_failure_after_training_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut first = hooked_bin();
    first.args(strs(&tiny_train(&out, "v1", &[]))).env("CHARGPT_STOP_AFTER_STEPS", "10");
    assert_eq!(Run::from(first.output().unwrap()).code, 130);
    fs::create_dir(out.join("loss.png")).unwrap(); // the plot cannot be written there
    let r = run(&["train", "--resume", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: the plots were not drawn") && r.stderr.contains("chargpt plot"), "{}", r.stderr);
    assert!(out.join("v1.sample.txt").exists());
}

/// A panic that is not libtorch's is a bug: reported as an internal error, with where it
/// happened, and a backtrace under RUST_BACKTRACE=1 (none without).
#[test]
fn a_bug_is_reported_as_an_internal_error_with_a_backtrace_on_request() {
    let run = |backtrace: &str| -> Run {
        hooked_bin().args(["models"]).env("CHARGPT_TEST_INTERNAL_PANIC", "1").env("RUST_BACKTRACE", backtrace).output().unwrap().into()
    };
    let plain = run("0");
    assert_eq!(plain.code, 2);
    assert!(plain.stderr.contains("error: internal error (a bug in chargpt, please report it): test hook"), "{}", plain.stderr);
    assert!(plain.stderr.contains("src/test_hooks.rs"), "where it happened: {}", plain.stderr);
    assert!(!plain.stderr.contains("libtorch"), "{}", plain.stderr);
    let traced = run("1");
    assert!(traced.stderr.lines().count() > plain.stderr.lines().count() + 3, "{}", traced.stderr);
    assert!(traced.stderr.contains("panic_fmt") && traced.stderr.contains("chargpt::main"), "{}", traced.stderr);
}

/// nanoGPT's sampling flags. Temperature 1 and no top-k are the blog's sampling, draw for
/// draw (the parity tests hold the training sample to PyTorch's); top-k 1 is greedy.
#[test]
fn generate_takes_temperature_top_k_samples_prompt_files_and_an_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v3", &[])));
    let ckpt = out.join("v3.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "--checkpoint", ckpt, "--chars", "60"];
        if !extra.contains(&"--seed") {
            args.extend_from_slice(&["--seed", "4"]);
        }
        args.extend_from_slice(extra);
        ok(&args).stdout
    };
    let plain = gen(&[]);
    assert_eq!(plain, gen(&["--temperature", "1"]), "temperature 1 draws exactly as the default");
    assert_ne!(plain, gen(&["--seed", "5"]), "the seed matters");
    assert_eq!(gen(&["--top-k", "1"]), gen(&["--greedy"]), "top-k 1 is greedy");
    assert_eq!(gen(&["--temperature", "0.0001"]), gen(&["--greedy"]), "a tiny temperature is greedy");
    let two = gen(&["--num-samples", "2"]);
    let parts: Vec<&str> = two.trim_end().split("\n---------------\n").collect();
    assert_eq!(parts.len(), 2, "{two}");
    assert_eq!(parts[0], plain.trim_end(), "the first sample is the single one");
    let prompt = dir.path().join("prompt.txt");
    fs::write(&prompt, "the ").unwrap();
    assert!(gen(&["--prompt-file", prompt.to_str().unwrap()]).starts_with("the "));
    let file = dir.path().join("sample.txt");
    let r = gen(&["--out", file.to_str().unwrap()]);
    assert!(r.contains("wrote"), "{r}");
    assert_eq!(fs::read_to_string(&file).unwrap(), plain);
    for (flag, value) in [("--temperature", "0"), ("--top-k", "0"), ("--num-samples", "0")] {
        fails_with(&["generate", "--checkpoint", ckpt, flag, value], flag);
    }
}

/// Weights that are NaN or infinite are refused on load, with the tensor named.
#[test]
fn a_checkpoint_with_non_finite_weights_is_refused() {
    use chargpt::checkpoint::{read_safetensors, to_safetensors_bytes};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v2", &[])));
    let weights = out.join("v2.safetensors");
    let (tensors, meta) = read_safetensors(&weights).unwrap();
    let poisoned: Vec<(String, tch::Tensor)> =
        tensors.into_iter().map(|(n, t)| if n == "fc.bias" { (n, t.fill(f64::NAN)) } else { (n, t) }).collect();
    fs::write(&weights, to_safetensors_bytes(&poisoned, Some(meta)).unwrap()).unwrap();
    let w = weights.to_str().unwrap();
    fails_with(&["generate", "--checkpoint", w, "--greedy"], "tensor fc.bias holds NaN or infinite values");
    fails_with(&["eval", "--checkpoint", w, "--data", excerpt().to_str().unwrap()], "fc.bias");
}

/// A closed standard output does not stop a training: its results are the run folder.
#[test]
fn training_goes_on_when_its_output_is_closed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(strs(&tiny_train(&out, "v1,v2", &[])))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then the pipe closes, as `| head -1`
    assert!(first.starts_with("chargpt: training"), "{first}");
    assert!(child.wait().unwrap().success());
    assert!(out.join("summary.csv").exists() && out.join("v2.sample.txt").exists());
}

/// run.json and each checkpoint's JSON record the corpus (path, absolute path, size,
/// sha256); `eval` defaults to it, from any folder, and warns when it changed.
#[test]
fn eval_defaults_to_the_recorded_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("book.txt");
    fs::copy(excerpt(), &text).unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train_on(&out, "v2", &text, &[])));
    let info = fs::read_to_string(out.join("v2.json")).unwrap();
    for field in ["\"corpus\"", "\"sha256\"", "\"absolute\"", "\"bytes\""] {
        assert!(info.contains(field), "{info}");
    }
    assert!(fs::read_to_string(out.join("run.json")).unwrap().contains("\"sha256\""));
    let elsewhere = tempfile::tempdir().unwrap();
    let eval = || -> Run {
        bin()
            .args(["eval", "--checkpoint", out.join("v2.safetensors").to_str().unwrap()])
            .current_dir(elsewhere.path())
            .output()
            .unwrap()
            .into()
    };
    let r = eval();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("v2 val loss"), "{}", r.stdout);
    let changed = fs::read_to_string(&text).unwrap() + " ";
    fs::write(&text, changed).unwrap();
    let r = eval();
    assert!(r.stderr.contains("warning") && r.stderr.contains("changed since this model was trained"), "{}", r.stderr);
}

/// `chargpt` alone prints its help (not an error), and every subcommand's help lets a user
/// run it: the flags are explained.
#[test]
fn help_is_there_when_asked_for_or_nothing_is_given() {
    let r = run(&[]);
    assert!(r.stdout.contains("Usage") || r.stderr.contains("Usage"), "{} {}", r.stdout, r.stderr);
    assert!(!r.stderr.starts_with("error"), "{}", r.stderr);
    let train = ok(&["train", "--help"]).stdout;
    assert!(train.contains("B 64, Tmax 256"), "the presets' values are in the help");
    let lines: Vec<&str> = train.lines().collect();
    for flag in ["--batch-size", "--lr", "--seed", "--resume", "--steps", "--impl"] {
        let at = lines.iter().position(|l| l.trim_start().starts_with(&format!("{flag} "))).unwrap_or_else(|| panic!("{flag} missing"));
        assert!(!lines[at + 1].trim().is_empty(), "{flag} has no help text");
    }
    let generate = ok(&["generate", "--help"]).stdout;
    for flag in ["--chars", "--seed", "--temperature", "--top-k", "--num-samples", "--out", "--prompt-file"] {
        assert!(generate.contains(flag), "{flag}");
    }
    assert!(ok(&["eval", "--help"]).stdout.contains("trained on"));
}

/// `generate --like-training` draws the very sample `train` wrote, and the checkpoint's
/// JSON says how that sample was drawn.
#[test]
fn generate_can_draw_the_training_sample_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v3,v10", &[])));
    for m in ["v3", "v10"] {
        let ckpt = out.join(format!("{m}.safetensors"));
        let again = ok(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--like-training"]).stdout;
        assert_eq!(again, fs::read_to_string(out.join(format!("{m}.sample.txt"))).unwrap(), "{m}: byte for byte");
        let file = dir.path().join(format!("{m}.again.txt"));
        ok(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--like-training", "--out", file.to_str().unwrap()]);
        assert_eq!(fs::read(&file).unwrap(), fs::read(out.join(format!("{m}.sample.txt"))).unwrap(), "{m}: --out, byte for byte");
        let info = fs::read_to_string(out.join(format!("{m}.json"))).unwrap();
        assert!(info.contains("\"training_sample\"") && info.contains("--like-training"), "{info}");
    }
    let r = fails_with(
        &["generate", "--checkpoint", out.join("v3.safetensors").to_str().unwrap(), "--like-training", "--seed", "3"],
        "cannot be used with",
    );
    assert_eq!(r.code, 2);
}

/// Sizes no machine can hold are refused before anything is allocated, in one line that
/// names the flags, instead of filling the RAM (or 5 KB of libtorch's trace).
#[test]
fn sizes_that_cannot_fit_in_memory_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for flags in [&["--n-embed", "100000000"][..], &["--batch-size", "100000000000"]] {
        fails_with(&strs(&tiny_train(&dir.path().join("big"), "v2", flags)), "GB to train, more than the");
    }
    assert!(!dir.path().join("big").exists(), "refused before the run folder was made");
}

/// `models` counts parameters from the shapes, without building a model: any size lists
/// at once, V1 (V x V) included, and the count is the built model's (footprint's tests).
#[test]
fn models_counts_parameters_without_building_them() {
    let r = ok(&["models", "v1", "v10", "--vocab-size", "1000000000"]);
    assert!(r.stdout.contains("v1    1000000000000000000  a V x V"), "{}", r.stdout);
}

/// `--precision bf16` trains on the CPU too (autocast), and the run records it.
#[test]
fn bf16_trains_on_the_cpu_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1,v10", &["--precision", "bf16", "--impl", "fast"])));
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["precision"], "bf16");
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.lines().count() == 3 && !summary.contains("NaN"), "{summary}");
}

#[test]
fn bench_steps_at_the_batch_size_asked_for() {
    let line = |b: &str| -> Vec<String> {
        let r = ok(&["bench", "--models", "v5", "--impl", "fast", "--batch-size", b, "--budget-s", "0.05", "--generate-chars", "0"]);
        let mut lines = r.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        assert_eq!(header.len(), row.len(), "{}", r.stdout);
        let at = |k: &str| row[header.iter().position(|h| *h == k).unwrap_or_else(|| panic!("no {k} in {header:?}"))].clone();
        vec![at("batch_size"), at("flops_per_step"), at("floor_ms")]
    };
    let (two, four) = (line("2"), line("4"));
    assert_eq!((two[0].as_str(), four[0].as_str()), ("2", "4"));
    // A step's FLOPs are per sequence: twice the batch, twice the work.
    let flops = |v: &Vec<String>| v[1].parse::<f64>().unwrap();
    assert_eq!(2.0 * flops(&two), flops(&four));
    assert!(two[2].parse::<f64>().unwrap() > 0.0, "the floor is measured at that batch size too");
    fails_with(&["bench", "--models", "v5", "--batch-size", "0"], "--batch-size");
}

/// Without a terminal, a model's last progress line carries its last evaluation (the one
/// printed just before it) and the latest loss; while an evaluation runs, the line says so
/// instead of showing the previous evaluation's losses.
#[test]
fn the_last_progress_line_shows_the_last_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let r = ok(&strs(&tiny_train(&dir.path().join("run"), "v10", &["--steps", "41", "--eval-every", "20"])));
    let eval = r.stdout.lines().find(|l| l.starts_with("v10 step 40:")).expect("the evaluation after step 40");
    let (train, val) = (eval.split("train loss ").nth(1).unwrap().split(',').next().unwrap(), eval.split("val loss ").nth(1).unwrap());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("v10 41/41")).collect();
    // "evaluating" while the evaluation after step 40 runs, then its losses.
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(lines[0].ends_with("| evaluating"), "{}", lines[0]);
    assert!(lines[1].contains(&format!("eval train {train} val {val}")), "{}\nafter {eval}", lines[1]);
}

/// The rough edges a newcomer met: a parity run away from reference/ says how to point at
/// it; `models --data` counts the text's characters without --tokenizer; a bad flag points
/// to the subcommand's help; `bench --matmul-peak` prints a CSV with its header.
#[test]
fn errors_and_outputs_point_where_a_newcomer_looks() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    fails_with(&["parity", "--reference", missing.to_str().unwrap()], "pass --reference DIR");
    // The excerpt has 54 distinct characters: V1 is a 54 x 54 table.
    let r = ok(&["models", "v1", "--data", excerpt().to_str().unwrap()]);
    assert!(r.stdout.lines().any(|l| l.starts_with("v1") && l.contains(" 2916 ")), "{}", r.stdout);
    let r = fails_with(&["train", "--bogus"], "unexpected argument '--bogus'");
    assert!(r.stderr.contains("see `chargpt train --help`"), "{}", r.stderr);
    assert_eq!(r.code, 2);
    let r = ok(&["bench", "--matmul-peak", "--device", "cpu"]);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("matmul_gflops,threads,precision"), "{}", r.stdout);
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(row[0].parse::<f64>().unwrap() > 0.0 && row[2] == "fp32", "{row:?}");
}

/// Every flag README.md and docs/CLI.md name is a flag of chargpt (other programs' flags
/// excepted: the scripts', on lines that run them, and nanoGPT's, in the first column of
/// the `sample.py` table), and docs/CLI.md names every flag of every subcommand.
#[test]
fn the_docs_and_the_binary_agree_on_every_flag() {
    let flag = |w: &str| -> Option<String> {
        let w = w.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let rest = w.strip_prefix("--")?;
        (rest.chars().next()?.is_ascii_lowercase() && rest.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .then(|| w.to_string())
    };
    let mut per_command = std::collections::BTreeMap::new();
    for sub in ["train", "generate", "eval", "models", "plot", "parity", "bench"] {
        let help = ok(&[sub, "--help"]).stdout;
        let flags: std::collections::BTreeSet<String> =
            help.split(|c: char| c.is_whitespace() || c == ',' || c == '=').filter_map(flag).collect();
        per_command.insert(sub, flags);
    }
    let all: std::collections::BTreeSet<&String> = per_command.values().flatten().collect();
    for doc in ["README.md", "docs/CLI.md"] {
        let text = fs::read_to_string(common::root().join(doc)).unwrap();
        for line in text.lines() {
            if line.contains("scripts/") || line.contains("python") {
                continue; // the scripts' own flags
            }
            let line = if line.starts_with("| `--") { line.splitn(3, '|').nth(2).unwrap_or("") } else { line };
            for word in line.split(|c: char| c.is_whitespace() || c == '`' || c == '[' || c == ']' || c == '(' || c == '"') {
                if let Some(f) = flag(word) {
                    assert!(all.contains(&f), "{doc} names {f}, which no chargpt subcommand has:\n{line}");
                }
            }
        }
    }
    let cli = fs::read_to_string(common::root().join("docs/CLI.md")).unwrap();
    for (sub, flags) in &per_command {
        for f in flags {
            assert!(cli.contains(f.as_str()), "docs/CLI.md does not name `chargpt {sub} {f}`");
        }
    }
}

/// Plots a reader can read: two runs of one tokenizer are told apart by their folders; a
/// wall-time axis under a second has decimals; a run of one evaluation gets a step axis
/// from 0 and every line its name at its end.
#[test]
fn plots_name_their_lines_and_label_their_axes_readably() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("first"), dir.path().join("second"));
    ok(&strs(&tiny_train(&a, "v1,v10", &["--steps", "30", "--eval-every", "20", "--no-final-eval"])));
    ok(&strs(&tiny_train(&b, "v1", &["--steps", "41", "--eval-every", "20"])));
    let svg = dir.path().join("cmp.svg");
    ok(&["plot", a.to_str().unwrap(), b.to_str().unwrap(), "--compare", svg.to_str().unwrap()]);
    // An SVG's texts are its lines that are not tags.
    let texts = |path: &std::path::Path| -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().filter(|l| !l.starts_with('<')).map(|l| l.trim().to_string()).collect()
    };
    let text = texts(&svg);
    assert!(text.iter().any(|t| t == "V1 char (first)") && text.iter().any(|t| t == "V1 char (second)"), "runs told apart: {text:?}");
    assert!(text.iter().any(|t| t == "0.10" || t == "0.20"), "a sub-second wall-time axis has decimals: {text:?}");
    // The one-evaluation run's own plot: an axis from step 0, and each line named.
    ok(&["plot", a.to_str().unwrap()]);
    let own = texts(&a.join("loss.svg"));
    for t in ["0", "V1", "V10"] {
        assert!(own.iter().any(|x| x == t), "{t} missing: {own:?}");
    }
}
