//! `scripts/gpu_checks.sh` rehearsed on the CPU (GPU_CHECKS_DRY=1): every phase runs through
//! the same code paths, file names and packing as on a GPU machine, so that the one call a
//! lent GPU allows is not spent finding a typo. A run cut off by the call's time budget comes
//! back packed and continues from its tar in a second call.

mod common;
use std::path::Path;
use std::process::Command;

fn gpu_checks(out: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(common::root().join("scripts/gpu_checks.sh"))
        .env("GPU_CHECKS_DRY", "1")
        .env("OUT", out)
        .env("GPU_CHECKS_RUN_DIR", out.parent().unwrap().join("gpu-blog-run"))
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
    // A run long enough to be cut by a 2-second budget (SIGINT: chargpt checkpoints).
    let summary = gpu_checks(&out, &[("GPU_CHECKS_DRY_STEPS", "2001"), ("GPU_CHECKS_RUN_BUDGET_S", "2")]);
    for phase in [
        "matmul-fp32 rc=0",
        "footprint-refused rc=0",
        "parity-faithful rc=0",
        "parity-fast rc=0",
        "rng-batches-equal rc=0",
        "rng-resume-continues rc=0",
        "rng-bpe-equal rc=0",
        "rng-recorded rc=0",
        "bench-fp32 rc=0",
    ] {
        assert!(summary.contains(phase), "{phase} missing from:\n{summary}");
    }
    let checks = std::fs::read_to_string(out.join("checks.txt")).unwrap();
    let train_log = checks.split("== train:").nth(1).unwrap_or("(no train section)");
    assert!(summary.contains("train rc=130") || summary.contains("train rc=0"), "{summary}\nthe train phase's log:\n{train_log}");
    let files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.len() <= 8, "at most 8 files come back: {files:?}");
    assert!(checks.contains("parity of the fast path"), "{checks}");
    assert!(checks.contains("v10: generator states ['rng/cpu'] vs ['rng/cpu']"), "{checks}");
    let bench = std::fs::read_to_string(out.join("bench-cpu-fp32.csv")).unwrap();
    assert!(bench.lines().count() == 3 && bench.contains("pytorch_compile_ms_per_step"), "{bench}");
    let tar = out.join("blog-run.tar.gz");
    assert!(listing(&tar).contains("gpu-blog-run/run.json"), "{}", listing(&tar));

    // The second call continues the packed run to its end.
    let copy = dir.path().join("blog-run.tar.gz");
    std::fs::copy(&tar, &copy).unwrap();
    let summary = gpu_checks(&out, &[("GPU_CHECKS_PHASES", "run"), ("GPU_CHECKS_RESUME_TAR", copy.to_str().unwrap())]);
    assert!(summary.contains("train rc=0"), "{summary}");
    let packed = listing(&tar);
    for f in ["gpu-blog-run/summary.csv", "gpu-blog-run/v10.sample.txt", "gpu-blog-run/loss.png"] {
        assert!(packed.contains(f), "{f} not in\n{packed}");
    }
    assert!(!packed.contains("gpu-blog-run/v10.safetensors"), "no weights travel: {packed}");
}
