#!/usr/bin/env python3
"""The mutation table: proof that the tests notice every way the code could drift from
docs/MODELS.md.

Each mutation below is one spec detail changed in the source (a string replaced, which
must occur exactly once). For each, the script copies the committed tree into a scratch
folder, applies the mutation, builds and runs the spec suite (unit tests, parity, fast
path, training), and records which tests failed. A mutation that no test notices is
"MISSED", which fails the script. The table goes to results/mutants.md.

    python3 scripts/mutants.py                 # all mutations -> results/mutants.md
    python3 scripts/mutants.py --only ln-      # those whose id starts with ln-
    python3 scripts/mutants.py --list          # the mutations, without running them

cargo-mutants mutates operators at random; the mutations here are the spec's own details
(where eps goes, which std, which dropout site), which a generic tool does not produce.
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tests that hold the code to the spec (the CLI and resume suites test other things).
SUITE = ["--lib", "--test", "parity", "--test", "fast_path", "--test", "training"]

# (id, what the mutation does, file, original text, mutated text)
MUTATIONS = [
    # --- the blog's LayerNorm, in each of its three implementations
    ("ln-eps-under-sqrt", "LayerNorm eps under the square root (faithful)", "src/layers.rs",
     "let std = x.std_dim(-1, true, true);\n                &self.gamma * (x - mean) / (std + Self::EPS) + &self.beta",
     "let std = (x.var_dim(-1, true, true) + Self::EPS).sqrt();\n                &self.gamma * (x - mean) / std + &self.beta"),
    ("ln-no-eps", "LayerNorm without eps (faithful)", "src/layers.rs",
     "&self.gamma * (x - mean) / (std + Self::EPS) + &self.beta",
     "&self.gamma * (x - mean) / std + &self.beta"),
    ("ln-biased-std", "LayerNorm with the biased std (faithful)", "src/layers.rs",
     "let std = x.std_dim(-1, true, true);", "let std = x.std_dim(-1, false, true);"),
    ("ln-fused-eps-under-sqrt", "LayerNorm eps under the square root (fused CPU kernel)", "csrc/fused.cpp",
     "const float r = 1.f / (std + eps);", "const float r = 1.f / std::sqrt(sq / (d - 1) + eps);"),
    ("ln-fused-no-eps", "LayerNorm without eps (fused CPU kernel)", "csrc/fused.cpp",
     "const float r = 1.f / (std + eps);", "const float r = 1.f / std;"),
    ("ln-fused-biased-std", "LayerNorm with the biased std (fused CPU kernel)", "csrc/fused.cpp",
     "const float std = std::sqrt(sq / (d - 1));", "const float std = std::sqrt(sq / d);"),
    ("ln-portable-eps-under-sqrt", "LayerNorm eps under the square root (portable, CUDA's)", "src/fast.rs",
     "let normalized = centered / (var.sqrt() + eps);", "let normalized = centered / (var + eps).sqrt();"),
    ("ln-portable-no-eps", "LayerNorm without eps (portable, CUDA's)", "src/fast.rs",
     "let normalized = centered / (var.sqrt() + eps);", "let normalized = centered / var.sqrt();"),
    ("ln-portable-biased-std", "LayerNorm with the biased std (portable, CUDA's)", "src/fast.rs",
     "/ (d - 1) as f64;", "/ d as f64;"),
    # --- attention
    ("attn-scale-head-width", "attention scaled by the head width (faithful)", "src/layers.rs",
     "let scores = q.matmul(&k.transpose(-2, -1)) * (c as f64).powf(-0.5);",
     "let scores = q.matmul(&k.transpose(-2, -1)) * (k.size()[2] as f64).powf(-0.5);"),
    ("attn-fast-scale-head-width", "attention scaled by the head width (fast)", "src/fast.rs",
     "let scale = (c as f64).powf(-0.5);", "let scale = (head_size as f64).powf(-0.5);"),
    ("attn-no-causal-mask", "no causal mask (faithful)", "src/layers.rs",
     "let mut w = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, Kind::Float);",
     "let _ = future;\n        let mut w = scores.softmax(-1, Kind::Float);"),
    ("attn-fast-no-causal-mask", "no causal mask (fast: portable kernels, bf16)", "src/fast.rs",
     "let w = bias.baddbmm(", "let w = bias.zeros_like().baddbmm("),
    ("attn-mask-off-by-one", "causal mask off by one (tril(1): one future position visible)", "src/layers.rs",
     ".tril(0);\n    p.add(\"tril\"", ".tril(1);\n    p.add(\"tril\""),
    ("attn-fused-no-causal-mask", "no causal mask (fused CPU attention)", "csrc/fused.cpp",
     "for (int64_t j = i + 1; j < t; ++j) s[i * t + j] = -INFINITY;",
     "for (int64_t j = t; j < t; ++j) s[i * t + j] = -INFINITY;"),
    ("attn-fused-mask-off-by-one", "causal mask off by one (fused CPU attention)", "csrc/fused.cpp",
     "for (int64_t j = i + 1; j < t; ++j) s[i * t + j] = -INFINITY;",
     "for (int64_t j = i + 2; j < t; ++j) s[i * t + j] = -INFINITY;"),
    # --- dropout sites
    ("drop-attn", "attention-weight dropout removed (faithful)", "src/layers.rs",
     "            w = w.dropout(p, train);", "            let _ = (p, train);"),
    ("drop-proj", "projection dropout removed (both paths)", "src/layers.rs",
     "            out = self.compute.dropout(&out, p, train);", "            let _ = (p, train);"),
    ("drop-ff", "feed-forward dropout removed (both paths)", "src/layers.rs",
     "            Some(p) => self.compute.dropout(&out, p, train),", "            Some(_) => out,"),
    ("drop-faithful-kernel", "projection and feed-forward dropout removed (faithful)", "src/layers.rs",
     "Compute::Faithful => x.dropout(p, train),", "Compute::Faithful => { let _ = (p, train); x.shallow_clone() }"),
    ("drop-fast-attn", "attention-weight dropout removed (fast: portable kernels, bf16)", "src/fast.rs",
     "dropout(&w, p, train, kernels).bmm(v)", "w.bmm(v)"),
    ("drop-fast-kernel", "projection and feed-forward dropout removed (fast)", "src/layers.rs",
     "Compute::Fast(kernels) => fast::dropout(x, p, train, kernels),",
     "Compute::Fast(kernels) => { let _ = (p, train, kernels); x.shallow_clone() }"),
    ("drop-in-eval", "dropout applied in eval (faithful attention weights)", "src/layers.rs",
     "            w = w.dropout(p, train);", "            w = w.dropout(p, true);"),
    ("drop-fast-in-eval", "dropout applied in eval (fast)", "src/fast.rs",
     "if !train || p == 0.0 {", "if p == 0.0 {"),
    ("drop-fused-attn", "attention-weight dropout removed (fused CPU attention)", "csrc/fused.cpp",
     "      apply_dropout_mask(probs, kept, seed, p);", "      kept.copy_(probs);"),
    ("drop-fused-attn-in-eval", "attention-weight dropout applied in eval (fast)", "src/fast.rs",
     "let p = if train { heads.dropout } else { 0.0 };", "let p = heads.dropout;"),
    ("drop-fused-ff", "feed-forward dropout removed (fused CPU feed-forward)", "csrc/fused.cpp",
     "        apply_dropout_mask(y, y, seed, p);", "        (void)seed;"),
    ("drop-fused-ff-in-eval", "feed-forward dropout applied in eval (fused CPU feed-forward)", "src/layers.rs",
     "let p = if train { self.dropout.unwrap_or(0.0) } else { 0.0 };", "let p = self.dropout.unwrap_or(0.0);"),
    # --- the feed-forward's ReLU
    ("ff-no-relu", "no ReLU in the feed-forward layer (faithful, portable)", "src/layers.rs",
     "let mut out = self.expand.forward(x).relu();", "let mut out = self.expand.forward(x);"),
    ("ff-fused-no-relu", "no ReLU in the feed-forward layer (fused CPU feed-forward)", "csrc/fused.cpp",
     "for (int64_t j = 0; j < d; ++j) yr[j] = std::max(yr[j] + bp[j], 0.f);",
     "for (int64_t j = 0; j < d; ++j) yr[j] = yr[j] + bp[j];"),
    # --- AdamW
    ("adamw-weight-decay", "weight decay 0.01 -> 0.008", "src/optim.rs",
     "weight_decay: 0.01 }", "weight_decay: 0.008 }"),
    ("adamw-eps", "AdamW eps 1e-8 -> 1e-7", "src/optim.rs", "eps: 1e-8,", "eps: 1e-7,"),
    ("adamw-beta1", "AdamW beta1 0.9 -> 0.91", "src/optim.rs", "beta1: 0.9,", "beta1: 0.91,"),
    ("adamw-beta2", "AdamW beta2 0.999 -> 0.99", "src/optim.rs", "beta2: 0.999,", "beta2: 0.99,"),
    ("adamw-no-bias-correction1", "first-moment bias correction dropped", "csrc/adamw.cpp",
     "double step_size = lr / bias_correction1;", "double step_size = lr;"),
    ("adamw-no-bias-correction2", "second-moment bias correction dropped", "csrc/adamw.cpp",
     "double bias_correction2_sqrt = std::sqrt(bias_correction2);", "double bias_correction2_sqrt = 1.0;"),
    ("adamw-decays-unused-ff", "the unused `ff` (no gradient) weight-decayed", "src/optim.rs",
     "            if !p.grad().defined() {\n                continue;",
     "            if !p.grad().defined() {\n                tch::no_grad(|| { let _ = p.g_mul_scalar_(1.0 - c.lr * c.weight_decay); });\n                continue;"),
    # --- data and generation
    ("data-split-089", "train/val split 0.9 -> 0.89", "src/data.rs",
     "(0.9 * n as f64) as usize", "(0.89 * n as f64) as usize"),
    ("data-randint-plus-one", "randint upper bound one too high", "src/data.rs",
     "Tensor::randint(n - block_size, ", "Tensor::randint(n - block_size + 1, "),
    ("data-randint-minus-one", "randint upper bound one too low", "src/data.rs",
     "Tensor::randint(n - block_size, ", "Tensor::randint(n - block_size - 1, "),
    ("gen-start-token-0", "generation starts from token 0 instead of 1", "src/sample.rs",
     "pub const START_TOKEN: i64 = 1;", "pub const START_TOKEN: i64 = 0;"),
    ("gen-no-crop", "V3+ generation not cropped to Tmax", "src/sample.rs",
     "if model.kind.is_position_free() || t <= model.cfg.block_size {", "if true {"),
    # --- parameter names
    ("state-no-tril", "`tril` buffer missing from the state dict", "src/layers.rs",
     "    p.add(\"tril\", tril, false)", "    let _ = p;\n    tril"),
    ("v9-norm-at-blocks-2", "V9's final LayerNorm at blocks.2 instead of blocks.3", "src/models.rs",
     "LayerNorm::new(p / \"blocks\" / 3,", "LayerNorm::new(p / \"blocks\" / 2,"),
]


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f]


def copy_tree(dest):
    for f in tracked_files():
        src = os.path.join(ROOT, f)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, f)) or dest, exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f))
    # The project's libtorch (.cargo/config.toml points at .venv/libtorch, relative).
    os.symlink(os.path.join(ROOT, ".venv"), os.path.join(dest, ".venv"))


def run_suite(tree, target_dir):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    cmd = ["cargo", "test", "--release", "--no-fail-fast", *SUITE, "--", "--test-threads", "2"]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    failed = sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED$", out, re.M)))
    built = "could not compile" not in out
    return p.returncode, failed, built, time.time() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="run only the mutations whose id starts with this")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "mutants.md"))
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if m[0].startswith(args.only)]
    if args.list:
        for m in chosen:
            print(f"{m[0]:28} {m[2]:16} {m[1]}")
        return 0
    target_dir = os.path.join(ROOT, "target", "mutants")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="chargpt-mutants-") as tree:
        copy_tree(tree)
        # Every mutation must apply exactly once, before any time is spent.
        for mid, _, path, old, _ in chosen:
            n = open(os.path.join(tree, path)).read().count(old)
            if n != 1:
                sys.exit(f"mutation {mid}: the original text occurs {n} times in {path}, not once; update scripts/mutants.py")
        code, failed, built, secs, out = run_suite(tree, target_dir)
        if code != 0:
            sys.exit(f"the unmutated suite fails ({failed}); fix that first:\n{out[-3000:]}")
        print(f"baseline: the suite passes ({secs:.0f} s)", flush=True)
        rows = []
        for mid, what, path, old, new in chosen:
            full = os.path.join(tree, path)
            original = open(full).read()
            open(full, "w").write(original.replace(old, new))
            code, failed, built, secs, out = run_suite(tree, target_dir)
            open(full, "w").write(original)
            if not built:
                sys.exit(f"mutation {mid} does not compile; fix it in scripts/mutants.py:\n{out[-3000:]}")
            verdict = "caught" if code != 0 and failed else ("caught (a test binary crashed)" if code != 0 else "MISSED")
            print(f"{mid:28} {verdict:8} {secs:4.0f} s  {', '.join(failed)}", flush=True)
            rows.append((mid, what, path, verdict, failed))
    missed = [r for r in rows if r[3] == "MISSED"]
    if args.only:
        return 1 if missed else 0
    with open(args.out, "w") as f:
        f.write("# Mutation table: each spec detail changed, and the tests that notice\n\n")
        f.write(f"Written by `python3 scripts/mutants.py` (`make mutants`) at commit {commit}, "
                f"{datetime.date.today().isoformat()}. Each row is one change of a detail of docs/MODELS.md "
                f"in the source, built and run against the spec suite (`cargo test --release {' '.join(SUITE)}`); "
                f"'caught' means at least one test failed, and the tests that failed are listed. "
                f"{len(rows) - len(missed)} of {len(rows)} caught.\n\n")
        f.write("| id | mutation | file | result | failing tests |\n| --- | --- | --- | --- | --- |\n")
        for mid, what, path, verdict, failed in rows:
            tests = ", ".join(f"`{t}`" for t in failed) or "-"
            f.write(f"| {mid} | {what} | `{path}` | {verdict} | {tests} |\n")
        f.write(NOTES)
    print(f"wrote {args.out}: {len(rows) - len(missed)} of {len(rows)} caught")
    return 1 if missed else 0


NOTES = """
## Not in the table, and why

- **V1/V2 cropped to `Tmax` like V3+.** docs/MODELS.md says V1 and V2 see the whole
  context. Both are bigram models (no position embedding, no attention): the logits at the
  last position depend on the last token only, so cropping their context changes nothing
  observable. There is nothing for a test to catch.
- **CUDA's attention mask** (`is_causal` of `scaled_dot_product_attention`) only runs on
  a GPU; `chargpt parity --device cuda --impl fast` (in `scripts/gpu_checks.sh`) checks it.
"""

if __name__ == "__main__":
    sys.exit(main())
