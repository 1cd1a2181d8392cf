//! `scripts/gpu_checks.sh` rehearsed on the CPU (GPU_CHECKS_DRY=1): every phase runs through
//! the same code paths, file names and packing as on a GPU machine, so that time on a GPU
//! machine is not spent finding a typo. Runs that outlive one invocation are collected by
//! the next (`GPU_CHECKS_PHASES=collect`).

mod common;
use std::path::Path;
use std::process::Command;

fn gpu_checks(out: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(common::root().join("scripts/gpu_checks.sh"))
        .env("GPU_CHECKS_DRY", "1")
        .env("OUT", out)
        .env("GPU_CHECKS_RUNS_DIR", out.parent().unwrap().join("gpu-runs"))
        .env("BIN", env!("CARGO_BIN_EXE_chargpt"))
        .env("PY", common::root().join(".venv/bin/python"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("bash runs");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "gpu_checks.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    stdout
}

fn listing(tar: &Path) -> String {
    let o = Command::new("tar").arg("-tzf").arg(tar).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_gpu_checks_rehearse_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = gpu_checks(&out, &[]);
    for phase in [
        "matmul-fp32 rc=0",
        "footprint-refused rc=0",
        "parity-faithful rc=0",
        "parity-fast rc=0",
        "graphs-refused-on-cpu rc=0",
        "rng-batches-equal rc=0",
        "rng-resume-continues rc=0",
        "rng-bpe-equal rc=0",
        "rng-recorded rc=0",
        "bench-fp32 rc=0",
        "runs: all ended",
    ] {
        assert!(summary.contains(phase), "{phase} missing from:\n{summary}");
    }
    let files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.len() <= 8, "at most 8 files come back: {files:?}");
    let checks = std::fs::read_to_string(out.join("checks.txt")).unwrap();
    assert!(checks.contains("parity of the fast path"), "{checks}");
    assert!(checks.contains("v10: generator states ['rng/cpu'] vs ['rng/cpu']"), "{checks}");
    // Both benches, with the op counts and the best-PyTorch side.
    let bench = std::fs::read_to_string(out.join("bench-cpu-fp32.csv")).unwrap();
    assert!(
        bench.lines().count() == 3 && bench.contains("fast_launches_per_step") && bench.contains("pytorch_best_ms_per_step"),
        "{bench}"
    );
    let best = bench.lines().find(|l| l.starts_with("v10,")).unwrap();
    let header: Vec<&str> = bench.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "pytorch_best_ms_per_step").unwrap();
    assert!(best.split(',').nth(at).unwrap().parse::<f64>().unwrap() > 0.0, "the best-PyTorch side was timed: {best}");
    // The blog runs: V10 alone, the side-by-side models and the BPE V10, packed without weights.
    let packed = listing(&out.join("blog-runs.tar.gz"));
    for f in ["gpu-runs/blog-v10/summary.csv", "gpu-runs/blog-v1/v1.sample.txt", "gpu-runs/bpe-v10/tokenizer.json", "gpu-runs/bpe-v10.log"]
    {
        assert!(packed.contains(f), "{f} not in\n{packed}");
    }
    assert!(!packed.contains(".safetensors"), "no weights travel: {packed}");
}

/// A call whose budget ends before the runs do packs what is done and says so; a second
/// call (`collect`) waits for the rest and packs them all.
#[test]
fn runs_that_outlive_a_call_are_collected_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = gpu_checks(&out, &[("GPU_CHECKS_PHASES", "runs"), ("GPU_CHECKS_CALL_BUDGET_S", "16"), ("GPU_CHECKS_DRY_STEPS", "3001")]);
    assert!(summary.contains("runs: still running"), "{summary}");
    let summary = gpu_checks(&out, &[("GPU_CHECKS_PHASES", "collect"), ("GPU_CHECKS_CALL_BUDGET_S", "600")]);
    assert!(summary.contains("runs: all ended"), "{summary}");
    let packed = listing(&out.join("blog-runs.tar.gz"));
    assert!(packed.contains("gpu-runs/bpe-v10/summary.csv") && packed.contains("gpu-runs/blog-v2/summary.csv"), "{packed}");
}

/// The README's GPU table and docs/RESULTS.md's blog-preset tables are
/// `scripts/gpu_table.py`'s output for the committed GPU results, line for line.
#[test]
fn the_gpu_tables_come_from_the_committed_results() {
    let root = common::root();
    let out = Command::new("python3")
        .arg(root.join("scripts/gpu_table.py"))
        .arg(root.join("results/cuda/2026-12-04-168f260"))
        .arg("--first")
        .arg(root.join("results/cuda/2026-12-04-16f6a6e"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 4, "four blocks: the step table, its rates, the ten models, char against BPE");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let results = std::fs::read_to_string(root.join("docs/RESULTS.md")).unwrap();
    for (doc, name, wanted) in [(&readme, "README.md", &blocks[..2]), (&results, "docs/RESULTS.md", &blocks[2..])] {
        for line in wanted.iter().flat_map(|b| b.lines()).filter(|l| !l.trim().is_empty()) {
            assert!(doc.lines().any(|l| l == line), "{name} lacks the line of scripts/gpu_table.py:\n{line}");
        }
    }
}
