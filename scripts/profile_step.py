"""Where a training step's time goes: `perf record` of `chargpt bench` (steps only, no
floor), its samples bucketed by what the symbol does, as a Markdown table of shares and
milliseconds per step. results/PERF.md's breakdowns come from it.

    python3 scripts/profile_step.py --model v10 --impl fast --threads 1 [--budget-s 20]

Run it pinned to cores nothing else uses (`taskset -c 0 python3 ...`): perf samples this
process only, but a busy core slows the step it divides. Shares of a bucket are shares of
all samples of the process, the model's build and the warm-up steps included; at more
than one thread they are shares of all threads' samples, and "ms per step" is that share
of the step's wall time, and the last column splits each share by thread (in % of all
samples, the busiest thread first).
"""
import argparse
import re
import subprocess
import sys
import tempfile

# First match wins: the loss's log-softmax before the attention's softmax, the fused
# optimiser before the generic element-wise kernels.
BUCKETS = [
    ("matmuls (MKL sgemm: kernels and operand packing)", r"mkl_blas|sgemm|mkl_serv"),
    ("copies (head-major permutes, reshapes, cat)", r"direct_copy|copy_kernel|memmove|memcpy|cat_serial|CatArray"),
    ("dropout (mask and scale, fwd and bwd)", r"dropout"),
    ("LayerNorm (fwd and bwd)", r"layer_norm"),
    ("loss (log-softmax, NLL)", r"log_softmax|nll_loss"),
    ("attention softmax and causal mask (fwd and bwd)", r"softmax|Sleef_.*exp|causal_attention"),
    ("ReLU and biases (fwd and bwd; the fused feed-forward's passes)", r"threshold_kernel|clamp_min|add_bias_rows|mask_and_sum_rows"),
    ("AdamW", r"adam|lerp|addcdiv|addcmul|sqrt|_foreach"),
    ("embedding backward", r"embedding|index_add|scatter_add|index_put"),
    ("bias gradients and other reductions", r"outer_sum|reduce|sum_kernel|Reduce"),
    ("residual adds and other element-wise", r"add_kernel|mul_kernel|div_true|fill_kernel|where_kernel|masked_fill|VectorizedLoop"),
    ("allocation and page faults", r"malloc|free|alloc|page|mmap|munmap|clear_page|_int_|unlink_chunk|brk"),
    ("OpenMP (its runtime: threads waiting for work, barriers)", r"gomp|GOMP|omp_"),
    ("dispatch and autograd (libtorch's framework)", r"c10::|at::|torch::|std::|caffe2|__tls_get_addr|pthread"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="target/release/chargpt")
    ap.add_argument("--model", default="v10")
    ap.add_argument("--impl", default="fast", choices=["fast", "faithful"])
    ap.add_argument("--threads", default="1")
    ap.add_argument("--budget-s", type=float, default=20.0)
    ap.add_argument("--config", default="cpu")
    a = ap.parse_args(argv)
    with tempfile.NamedTemporaryFile(suffix=".perf") as data:
        bench = [a.binary, "bench", "--models", a.model, "--impl", a.impl, "--threads", a.threads, "--config", a.config,
                 "--budget-s", str(a.budget_s), "--generate-chars", "0", "--no-floor"]
        rec = subprocess.run(["perf", "record", "-F", "999", "-o", data.name, "--"] + bench, capture_output=True, text=True)
        if rec.returncode != 0:
            sys.exit(f"error: perf record failed ({rec.returncode}): {rec.stderr.strip().splitlines()[-1:]}")
        row = rec.stdout.strip().splitlines()[-1].split(",")
        ms = float(row[3])
        rep = subprocess.run(["perf", "report", "-i", data.name, "--no-children", "--sort", "pid,dso,symbol", "--stdio",
                              "-q"], capture_output=True, text=True, check=True)
    shares = {name: 0.0 for name, _ in BUCKETS}
    # Per thread too: a kernel whose samples are all on one thread at --threads 2 runs
    # serially (as the fused kernels did when csrc/ was built without OpenMP).
    by_thread = {}
    other, top_other = 0.0, []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+):\S+\s+(\S+)\s+\[(.)\]\s+(.*\S)", line)
        if not m:
            continue
        pct, tid, dso, kernel, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4) == "k", m.group(5)
        # The libgomp that torch ships has no symbols: all of it is OpenMP's runtime.
        if dso.startswith("libgomp"):
            sym = "GOMP " + sym
        name = next((n for n, rx in BUCKETS if re.search(rx, sym)), None)
        if name is None and kernel:
            name = "allocation and page faults" if re.search(r"fault|page|mm_|alloc|free", sym) else None
        if name is None:
            other += pct
            top_other.append((pct, sym[:80]))
            name = "other"
        else:
            shares[name] += pct
        by_thread.setdefault(tid, {}).setdefault(name, 0.0)
        by_thread[tid][name] += pct
    print(f"{a.model.upper()} {a.impl} step, {a.config} configuration, {a.threads} thread(s): {ms:.1f} ms per step "
          f"(the step timed under perf)\n")
    # Threads by their number of samples, the busiest first.
    tids = sorted(by_thread, key=lambda t: -sum(by_thread[t].values()))
    split = len(tids) > 1
    print("| where | share of samples | ms per step |" + (" by thread |" if split else ""))
    print("| --- | ---: | ---: |" + (" ---: |" if split else ""))
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1]) + [("other", other)]:
        cell = " / ".join(f"{by_thread[t].get(name, 0.0):.1f}" for t in tids)
        print(f"| {name} | {share:.1f}% | {share / 100 * ms:.1f} |" + (f" {cell} |" if split else ""))
    if top_other:
        print("\nlargest symbols in other: " + "; ".join(f"{s} {p:.2f}%" for p, s in sorted(top_other, reverse=True)[:5]),
              file=sys.stderr)


if __name__ == "__main__":
    main()
