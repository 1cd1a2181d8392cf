//! Interoperability with PyTorch, both ways, through `scripts/reference.py` in the
//! project's .venv (which `make test` creates): checkpoints cross over and give the same
//! loss, and the same seed gives the same printed training run.

mod common;
use common::*;
use std::process::Command;

fn python() -> Command {
    let py = root().join(".venv/bin/python");
    assert!(py.exists(), "{} is missing: run `make setup` (make test does)", py.display());
    let mut cmd = Command::new(py);
    cmd.arg(root().join("scripts/reference.py"));
    cmd
}

fn py_ok(args: &[&str]) -> String {
    let out = python().args(args).output().unwrap();
    assert!(out.status.success(), "reference.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The number at the end of each "model split loss X" line.
fn losses(out: &str) -> Vec<f64> {
    out.lines().filter(|l| l.contains(" loss ")).map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect()
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    assert!(!a.is_empty());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-4, "{what}: {x} vs {y}");
    }
}

#[test]
fn chargpt_checkpoints_load_strictly_into_pytorch_with_the_same_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&strs(&tiny_train(&out, "v1,v4,v9,v10", &[])));
    let data = excerpt();
    for m in ["v1", "v4", "v9", "v10"] {
        let ckpt = out.join(format!("{m}.safetensors"));
        let ours = ok(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train"]).stdout;
        let theirs = py_ok(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train"]);
        assert_close(&losses(&ours), &losses(&theirs), m);
    }
}

#[test]
fn pytorch_state_dicts_load_into_chargpt_generate_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = excerpt();
    for m in ["v2", "v6", "v8", "v10"] {
        py_ok(&["export", "--model", m, "--seed", "3", "--data", data.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
        let ckpt = dir.path().join(format!("{m}.safetensors"));
        let theirs = py_ok(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
        let ours = ok(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]).stdout;
        assert_close(&losses(&ours), &losses(&theirs), m);
        let text = ok(&["generate", "--checkpoint", ckpt.to_str().unwrap(), "--chars", "20"]).stdout;
        assert_eq!(text.trim_end_matches('\n').chars().count(), 20);
    }
}

#[test]
fn same_seed_same_printed_run_as_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let data = excerpt();
    let flags = [
        "--seed",
        "42",
        "--batch-size",
        "8",
        "--block-size",
        "16",
        "--n-embed",
        "32",
        "--num-heads",
        "4",
        "--block-layers",
        "2",
        "--dropout",
        "0.2",
        "--lr",
        "0.003",
        "--steps",
        "61",
        "--eval-every",
        "20",
        "--eval-steps",
        "3",
        "--generate-chars",
        "60",
    ];
    let mut ours_args = vec!["train", "--models", "v10", "--no-plot", "--data", data.to_str().unwrap()];
    let out = dir.path().join("run");
    ours_args.extend(["--out", out.to_str().unwrap()]);
    ours_args.extend(flags);
    let ours = ok(&ours_args).stdout;
    let mut py_args = vec!["train", "--model", "v10", "--data", data.to_str().unwrap()];
    py_args.extend(flags);
    let theirs = py_ok(&py_args);
    let pick = |s: &str| -> Vec<String> {
        let mut lines: Vec<String> = s.lines().filter(|l| l.starts_with("v10 step ")).map(String::from).collect();
        let sample: String = s.split("--- v10 sample ---\n").nth(1).unwrap().split("\n---").next().unwrap().to_string();
        lines.push(sample);
        lines
    };
    let (a, b) = (pick(&ours), pick(&theirs));
    assert_eq!(a.len(), 4, "{ours}");
    assert_eq!(a, b, "chargpt and PyTorch print the same evaluations and sample");
}

/// A multi-seed run and the reference's run of the same seeds agree run by run, to the
/// last bit, as `scripts/loss_table.py` reports for the README.
#[test]
fn a_multi_seed_run_equals_the_references_seed_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(&strs(&tiny_train(&run, "v1,v10", &["--seeds", "5,6"])));
    let csv = dir.path().join("pytorch.csv");
    let (csv_s, data) = (csv.to_str().unwrap(), excerpt());
    py_ok(&["train", "--preset", "tiny", "--model", "v1,v10", "--seeds", "5,6", "--data", data.to_str().unwrap(), "--csv", csv_s]);
    let table = |csv: &str| {
        let out = Command::new("python3").arg(root().join("scripts/loss_table.py")).arg(&run).args(["--pytorch", csv]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = table(csv_s);
    assert!(out.contains("4 of 4 runs identical"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("| V10 |") && l.contains(" | 2 | ")), "the spread table, 2 seeds: {out}");
    // A reference value off by one ulp is reported.
    let text = std::fs::read_to_string(&csv).unwrap();
    let row = text.lines().nth(1).unwrap();
    let val: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
    let off = dir.path().join("off.csv");
    std::fs::write(&off, text.replace(row, &row.replace(&format!("{val:?}"), &format!("{:?}", f64::from_bits(val.to_bits() + 1)))))
        .unwrap();
    let out = table(off.to_str().unwrap());
    assert!(out.contains("3 of 4 runs identical") && out.contains("**no**"), "{out}");
}

/// The blog's get_batch draws its indices with `torch.randint` on the CPU generator; so
/// does chargpt, wherever the data lives.
#[test]
fn batch_indices_are_torch_randint_on_the_cpu_generator() {
    let data = excerpt();
    let text = std::fs::read_to_string(&data).unwrap();
    let ds = chargpt::data::Dataset::new(&text);
    for (split, name, seed) in [(chargpt::data::Split::Train, "train", 1337), (chargpt::data::Split::Val, "val", 7)] {
        let theirs = py_ok(&[
            "batches",
            "--data",
            data.to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--count",
            "5",
            "--batch-size",
            "32",
            "--block-size",
            "64",
            "--split",
            name,
        ]);
        let ours: Vec<String> = {
            let _turn = chargpt::rng::lock();
            tch::manual_seed(seed);
            (0..5)
                .map(|_| {
                    let ix = Vec::<i64>::try_from(ds.batch_indices(split, 32, 64)).unwrap();
                    ix.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
                })
                .collect()
        };
        assert_eq!(ours, theirs.lines().map(String::from).collect::<Vec<_>>(), "{name}");
    }
}
