"""The README's GPU tables (and docs/RESULTS.md's), from one GPU run's folder under
results/cuda/ (scripts/import_gpu_results.py), and the first run's for the one side it
alone measured (torch.compile of the blog's code). Markdown on stdout.

    python3 scripts/gpu_table.py results/cuda/2026-12-04-168f260 --first results/cuda/2026-12-04-16f6a6e

Table 1: V10's training step at the blog's configuration, every side, TF32 and bf16.
Table 2: the blog preset's ten models (10,000 steps each): losses at the last evaluation.
Table 3: V10 on characters and on a 2,048-token BPE, val bits per character by step.
"""
import argparse
import csv
import pathlib


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def v10(path):
    return next(r for r in read(path) if r["model"] == "v10")


def ms(x):
    x = float(x)
    return "—" if x != x else f"{x:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("call", help="a GPU run's folder under results/cuda/")
    ap.add_argument("--first", required=True, help="the first GPU run's folder (torch.compile of the blog's code)")
    a = ap.parse_args(argv)
    call, first = pathlib.Path(a.call), pathlib.Path(a.first)
    tf32, bf16 = v10(call / "bench-cuda-tf32.csv"), v10(call / "bench-cuda-bf16.csv")
    blog_compile = v10(first / "bench-cuda-tf32.csv")["pytorch_compile_ms_per_step"]

    print("| V10, B 64, T 256, C 384, H 6, L 6 | TF32 ms/step | bf16 ms/step | launches/step (TF32) |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("chargpt faithful", "rust_ms_per_step", "rust_launches_per_step"),
        ("chargpt fast", "fast_ms_per_step", "fast_launches_per_step"),
        ("chargpt fast, CUDA graph (`--cuda-graphs`)", "graphs_ms_per_step", "graphs_launches_per_step"),
        ("PyTorch eager, the blog's code", "pytorch_ms_per_step", None),
        ("PyTorch eager, written for speed (fused QKV, SDPA, fused AdamW)", "pytorch_best_ms_per_step", None),
        ("`torch.compile`, written for speed", "pytorch_best_compile_ms_per_step", None),
        ("the step's matmuls alone (`floor_ms`)", "floor_ms", None),
    ]
    for name, key, launches in rows:
        n = f"{int(tf32[launches]):,}" if launches else ""
        print(f"| {name} | {ms(tf32[key])} | {ms(bf16[key])} | {n} |")
    print(f"| `torch.compile`, the blog's code (first GPU run, {first.name.split('-')[-1]}) | {ms(blog_compile)} | — | |")
    print()
    for label, row in (("TF32", tf32), ("bf16", bf16)):
        tokens = 64 * 256 / (float(row["graphs_ms_per_step"]) / 1e3)
        mfu = float(row["flops_per_step"]) / float(row["graphs_ms_per_step"]) / 1e6 / float(row["matmul_peak_gflops"]) * 100
        print(f"- {label}, fast with a CUDA graph: {tokens:,.0f} tokens/s, {mfu:.1f}% of the measured {label} matmul rate "
              f"({float(row['matmul_peak_gflops']) / 1e3:.0f} TFLOP/s), peak memory {float(row['graphs_peak_mem_mb']):,.0f} MiB")
    print()

    runs = call / "runs"
    print("| model | parameters | train loss | val loss | val bits/char | after step | ms/step | ran |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for k in range(1, 11):
        folder = runs / f"blog-v{k}"
        s = read(folder / "summary.csv")[0]
        ran = "alone" if k == 10 else "beside 9 other runs"
        print(f"| V{k} | {int(s['parameters']):,} | {float(s['final_train_loss']):.3f} | {float(s['final_val_loss']):.3f} "
              f"| {float(s['final_val_bits_per_char']):.3f} | {int(s['final_loss_step']):,} "
              f"| {float(s['mean_s_per_step']) * 1e3:.1f} | {ran} |")
    print()

    char = {int(r["step"]): r for r in read(runs / "blog-v10" / "v10.csv")}
    bpe = {int(r["step"]): r for r in read(runs / "bpe-v10" / "v10.csv")}
    print("| step | V10 char: val bits/char | V10 bpe:2048: val bits/char | bpe:2048 val loss per token |")
    print("| ---: | ---: | ---: | ---: |")
    for step in sorted(char):
        b = bpe.get(step)
        bits = f"{float(b['val_bits_per_char']):.3f}" if b else "(not reached)"
        loss = f"{float(b['val_loss']):.3f}" if b else ""
        print(f"| {step:,} | {float(char[step]['val_bits_per_char']):.3f} | {bits} | {loss} |")


if __name__ == "__main__":
    main()
