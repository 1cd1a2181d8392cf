//! `--tokenizer bpe:N` end to end through the real binary: train, resume, seeds, generate,
//! eval, and parity with the PyTorch reference (`scripts/reference.py`, Python's
//! `tokenizers` reading the run's tokenizer.json).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn py_ok(args: &[&str]) -> String {
    let py = root().join(".venv/bin/python");
    assert!(py.exists(), "{} is missing: run `make setup` (make test does)", py.display());
    let out = Command::new(py).arg(root().join("scripts/reference.py")).args(args).output().unwrap();
    assert!(out.status.success(), "reference.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A tiny BPE run of `models` on the excerpt, into `out`.
fn bpe_run(out: &Path, models: &str, extra: &[&str]) -> Run {
    let mut args = tiny_train(out, models, &["--tokenizer", "bpe:300"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(&strs(&args))
}

/// "v5 val loss 3.9" and "v5 val bits per character 2.9" lines, as (label, value).
fn numbers(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter(|l| l.contains(" loss ") || l.contains(" bits per character "))
        .map(|l| {
            let (label, value) = l.rsplit_once(' ').unwrap();
            (label.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn bpe_token_ids_are_pythons() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    bpe_run(&run, "v1", &[]);
    let tokenizer = run.join("tokenizer.json");
    let bpe = chargpt::tokenizer::Bpe::load(&tokenizer).unwrap();
    let odd = dir.path().join("odd.txt");
    // Characters the BPE never merged (CJK, emoji, accents), spaces before newlines, CRLF.
    std::fs::write(&odd, "Hello 世界 🙂, naïve café  \n  the KING:\r\nwhat?\n\n\nO, no!  \n").unwrap();
    for text in [excerpt(), odd] {
        let theirs: Vec<i64> = py_ok(&["encode", "--tokenizer-json", tokenizer.to_str().unwrap(), "--data", text.to_str().unwrap()])
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        let ours = bpe.encode(&std::fs::read_to_string(&text).unwrap()).unwrap();
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs, "{}", text.display());
    }
}

/// A same-seed BPE run prints the same evaluations and the same sample as PyTorch's,
/// for V1, V5 and V10; and the checkpoints load strictly into the reference and give the
/// same deterministic loss and bits per character.
#[test]
fn a_same_seed_bpe_run_is_the_references() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let flags = ["--seed", "42", "--steps", "61", "--eval-every", "20", "--eval-steps", "3", "--generate-chars", "60"];
    let ours = bpe_run(&run, "v1,v5,v10", &flags).stdout;
    let tokenizer = run.join("tokenizer.json");
    let data = excerpt();
    for m in ["v1", "v5", "v10"] {
        let mut py = vec!["train", "--preset", "tiny", "--model", m, "--data", data.to_str().unwrap()];
        py.extend(["--tokenizer-json", tokenizer.to_str().unwrap()]);
        py.extend(flags);
        let theirs = py_ok(&py);
        let pick = |s: &str| -> Vec<String> {
            let mut lines: Vec<String> = s.lines().filter(|l| l.starts_with(&format!("{m} step "))).map(String::from).collect();
            let head = format!("--- {m} sample ---\n");
            lines.push(s.split(&head).nth(1).unwrap().split("\n---").next().unwrap().to_string());
            lines
        };
        let (a, b) = (pick(&ours), pick(&theirs));
        assert_eq!(a.len(), 4, "{ours}");
        assert_eq!(a[3].chars().count(), 60, "the sample has --generate-chars characters: {:?}", a[3]);
        assert_eq!(a, b, "{m}: chargpt and PyTorch print the same evaluations and sample");

        let ckpt = run.join(format!("{m}.safetensors"));
        let args = ["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train"];
        let (ours, theirs) = (numbers(&ok(&args).stdout), numbers(&py_ok(&args)));
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours.iter().map(|o| &o.0).collect::<Vec<_>>(), theirs.iter().map(|t| &t.0).collect::<Vec<_>>());
        for ((label, x), (_, y)) in ours.iter().zip(&theirs) {
            assert!((x - y).abs() <= 1e-4, "{m} {label}: {x} vs {y}");
        }
    }
}

/// Every evaluation row, summary and checkpoint of a BPE run says what it was measured in;
/// bits per character are the loss over ln 2 at the split's characters per token.
#[test]
fn a_bpe_run_reports_bits_per_character_and_records_its_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = bpe_run(&run, "v2", &[]);
    assert!(out.stdout.contains("bpe:300: 300 tokens,") && out.stdout.contains("chars per token"), "{}", out.stdout);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let sha = chargpt::data::sha256_hex(&std::fs::read(run.join("tokenizer.json")).unwrap());
    assert_eq!(json["tokenizer"], "bpe:300");
    assert_eq!(json["tokenizer_sha256"], sha.as_str());
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("v2.json")).unwrap()).unwrap();
    assert_eq!(info["tokenizer"]["sha256"], sha.as_str());
    assert_eq!(info["config"]["vocab_size"], 300);
    let text = excerpt_text();
    let (_, val) = chargpt::data::split_text(&text);
    let bpe = chargpt::tokenizer::Bpe::load(&run.join("tokenizer.json")).unwrap();
    let chars_per_token = val.chars().count() as f64 / bpe.encode(val).unwrap().len() as f64;
    assert!(chars_per_token > 1.2, "the merges shorten the text: {chars_per_token}");
    let csv = std::fs::read_to_string(run.join("v2.csv")).unwrap();
    assert!(csv.starts_with("step,train_loss,val_loss,elapsed_s,tokens_per_s,val_bits_per_char,scheduled\n"), "{csv}");
    for row in csv.lines().skip(1) {
        let f: Vec<f64> = row.split(',').take(6).map(|x| x.parse().unwrap()).collect();
        assert!((f[5] - f[2] / chars_per_token / std::f64::consts::LN_2).abs() < 1e-9, "{row}");
    }
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(
        summary.lines().next().unwrap().ends_with(",final_val_bits_per_char,tokenizer,chars_per_step,final_loss_scheduled"),
        "{summary}"
    );
    assert!(summary.lines().nth(1).unwrap().contains(",bpe:300,"), "{summary}");
}

/// A stopped BPE run resumes with its own tokenizer.json into what an uninterrupted run
/// writes; a missing or changed tokenizer.json is refused in one line by resume,
/// generate and eval.
#[test]
fn a_bpe_run_resumes_exactly_and_needs_its_own_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    // One thread, fixed: this test is about the resume and the tokenizer. At two threads
    // two identical runs of this size can end a few ulps apart (the losses do not):
    // docs/REPRODUCIBILITY.md, "A known exception".
    bpe_run(&whole, "v5", &["--threads", "1"]);
    let args = tiny_train(&cut, "v5", &["--tokenizer", "bpe:300", "--threads", "1"]);
    let stopped = hooked_bin().args(&args).env("CHARGPT_STOP_AFTER_STEPS", "25").output().unwrap();
    assert_ne!(stopped.status.code(), Some(0));
    ok(&["train", "--resume", cut.to_str().unwrap(), "--no-plot"]);
    for f in ["v5.csv", "v5.sample.txt", "v5.safetensors", "tokenizer.json"] {
        let (a, b) = (std::fs::read(whole.join(f)).unwrap(), std::fs::read(cut.join(f)).unwrap());
        if f == "v5.csv" {
            // elapsed_s and tokens_per_s are timings: compare step and losses.
            let cols = |b: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(|l| {
                        l.split(',').enumerate().filter(|(i, _)| [0, 1, 2, 5].contains(i)).map(|(_, c)| c).collect::<Vec<_>>().join(",")
                    })
                    .collect()
            };
            assert_eq!(cols(&a), cols(&b));
        } else {
            assert!(a == b, "{f} differs after a stop and a resume");
        }
    }
    let ckpt = cut.join("v5.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let tokenizer = cut.join("tokenizer.json");
    let original = std::fs::read(&tokenizer).unwrap();
    std::fs::write(&tokenizer, [original.as_slice(), b"\n"].concat()).unwrap();
    fails_with(&["generate", "--checkpoint", ckpt, "--chars", "5"], "has changed since the run was trained");
    std::fs::remove_file(&tokenizer).unwrap();
    fails_with(&["eval", "--checkpoint", ckpt], "tokenizer.json is missing");
    fails_with(&["train", "--resume", cut.to_str().unwrap(), "--steps", "61", "--no-plot"], "tokenizer.json is missing");
    std::fs::write(&tokenizer, &original).unwrap();
    ok(&["train", "--resume", cut.to_str().unwrap(), "--steps", "61", "--no-plot"]);
}

/// Generation and evaluation with a BPE checkpoint take any UTF-8 text: a prompt of
/// characters the BPE never merged, another text for eval; an empty prompt starts from
/// token 1, as the blog does; every sample has exactly --chars characters.
#[test]
fn a_bpe_model_generates_and_evaluates_any_text() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    bpe_run(&run, "v3", &[]);
    let ckpt = run.join("v3.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let prompt = "世界 🙂 naïve";
    let out = ok(&["generate", "--checkpoint", ckpt, "--prompt", prompt, "--chars", "50"]).stdout;
    assert!(out.starts_with(prompt), "{out}");
    assert_eq!(out.trim_end_matches('\n').chars().count(), prompt.chars().count() + 50, "{out:?}");
    let again = ok(&["generate", "--checkpoint", ckpt, "--like-training"]).stdout;
    assert_eq!(again, std::fs::read_to_string(run.join("v3.sample.txt")).unwrap(), "--like-training draws the training sample again");
    let a = ok(&["generate", "--checkpoint", ckpt, "--chars", "30", "--seed", "9"]).stdout;
    let b = ok(&["generate", "--checkpoint", ckpt, "--chars", "30", "--seed", "9", "--prompt", ""]).stdout;
    assert_eq!(a, b, "no prompt and an empty one both start from token 1, deterministically for a seed");
    assert_eq!(a.trim_end_matches('\n').chars().count(), 30);
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "Καλημέρα κόσμε, 你好世界 🙂🙂 — something else entirely. ".repeat(20)).unwrap();
    let got = numbers(&ok(&["eval", "--checkpoint", ckpt, "--data", other.to_str().unwrap()]).stdout);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(_, v)| v.is_finite() && *v > 0.0), "{got:?}");
}

/// `--seeds` with a BPE: one tokenizer, in each seed's folder beside its checkpoints; the
/// top summary carries bits per character.
#[test]
fn a_multi_seed_bpe_run_keeps_a_tokenizer_beside_each_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    bpe_run(&run, "v1", &["--seeds", "2"]);
    let top = std::fs::read(run.join("tokenizer.json")).unwrap();
    for seed in ["seed-1337", "seed-1338"] {
        assert_eq!(std::fs::read(run.join(seed).join("tokenizer.json")).unwrap(), top, "{seed}");
        let ckpt = run.join(seed).join("v1.safetensors");
        ok(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--chars", "10"]);
    }
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("seeds"), "2");
    assert_eq!(col("tokenizer"), "bpe:300");
    assert!(col("val_bits_per_char_mean").parse::<f64>().unwrap() > 0.0, "{summary}");
}

/// What a BPE cannot be: fewer tokens than the 256 bytes, or more than the guard; a size
/// the text cannot give is the library's behaviour (fewer tokens), said in a line.
#[test]
fn bpe_sizes_out_of_reach_are_refused_or_said() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    for (spec, says) in [("bpe:100", "from 256"), ("bpe:100000", "65536"), ("words", "`char` or `bpe:N`")] {
        let mut args = tiny_train(&out, "v1", &[]);
        args.extend(["--tokenizer".to_string(), spec.to_string()]);
        let r = run(&strs(&args));
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(says), "{spec}: {}", r.stderr);
    }
    let big = bpe_run_with(&out, "bpe:5000");
    assert!(big.contains("(its training split has no more merges to give than"), "{big}");
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("v1.json")).unwrap()).unwrap();
    let v = info["config"]["vocab_size"].as_i64().unwrap();
    assert!((256..5000).contains(&v), "{v}");
    let table = ok(&["models", "--tokenizer", "bpe:300", "--data", excerpt().to_str().unwrap(), "v1"]).stdout;
    assert!(table.contains("V=300") && table.contains("90000"), "V1 is a V x V table: {table}");
}

fn bpe_run_with(out: &Path, spec: &str) -> String {
    let mut args = tiny_train(out, "v1", &["--tokenizer", spec]);
    args.push("--force".into());
    ok(&strs(&args)).stdout
}

/// The tokenizer tables of the README and docs/TOKENIZERS.md are
/// `scripts/tokenizer_table.py`'s output for the committed runs, line for line, and each
/// run is the experiment's: V1, V6, V9 and V10, three seeds, the flags the docs give.
#[test]
fn the_tokenizer_tables_come_from_the_committed_runs() {
    let runs: Vec<_> = ["char", "bpe-512", "bpe-2048"].iter().map(|r| root().join("results/tokenizers-cpu").join(r)).collect();
    for (run, tokenizer) in runs.iter().zip(["char", "bpe:512", "bpe:2048"]) {
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
        assert_eq!(cfg["tokenizer"], tokenizer, "{}", run.display());
        assert_eq!(cfg["seeds"], serde_json::json!([1337, 1338, 1339]), "{}", run.display());
        assert_eq!(cfg["models"], serde_json::json!(["v1", "v6", "v9", "v10"]), "{}", run.display());
        assert_eq!((cfg["implementation"].as_str(), cfg["threads"].as_i64(), cfg["preset"].as_str()), (Some("fast"), Some(1), Some("cpu")));
    }
    let out = Command::new("python3")
        .arg(root().join("scripts/tokenizer_table.py"))
        .args(&runs)
        .args(["--models", "v1,v6,v9,v10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 2 + 12, "a header and 12 rows:\n{table}");
    for doc in ["README.md", "docs/TOKENIZERS.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for line in table.lines() {
            assert!(text.lines().any(|l| l == line), "{doc} lacks the line of scripts/tokenizer_table.py:\n{line}");
        }
    }
    // The comparison at equal characters seen (docs/TOKENIZERS.md): the char run's rows at
    // its last step, each BPE run's at its first evaluation past the char run's total.
    let out = Command::new("python3")
        .arg(root().join("scripts/tokenizer_table.py"))
        .args(&runs)
        .args(["--models", "v1,v6,v9,v10", "--equal-chars"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let equal = String::from_utf8(out.stdout).unwrap();
    assert_eq!(equal.lines().count(), 2 + 12, "a header and 12 rows:\n{equal}");
    assert!(equal.contains("| V9 | char | 3,000 | 6.14M |"), "{equal}");
    let text = std::fs::read_to_string(root().join("docs/TOKENIZERS.md")).unwrap();
    for line in equal.lines() {
        assert!(text.lines().any(|l| l == line), "docs/TOKENIZERS.md lacks the line of --equal-chars:\n{line}");
    }
}
