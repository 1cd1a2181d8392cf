"""`make bench`: chargpt (faithful and fast) and PyTorch eager side by side, model by
model, interleaved so that drift of the machine hits both alike. Writes --out (default:
a new runs/bench-<date-time>/bench-<device>.csv, never a committed file) and prints the
table.

`--contention` (CPU): the same sides alone, beside one busy process (a one-thread
`while True: pass`), and beside a second copy of themselves, for V5, V8 and V10 and for
generation; writes --out (default: runs/bench-<date-time>/bench-cpu-contention.csv)."""
import argparse
import csv
import io
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "chargpt"
# The presets (`--config` names one): the same file chargpt reads.
PRESETS = json.loads((ROOT / "src" / "presets.json").read_text())


def default_out(name):
    """A new file under runs/, so that a bench never overwrites a committed result."""
    return ROOT / "runs" / time.strftime("bench-%Y-%m-%d-%H%M%S", time.gmtime()) / name


def rows(cmd, timeout=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, timeout=timeout).stdout
    return list(csv.DictReader(io.StringIO(out)))


def compiled_row(cmd, timeout):
    """The torch.compile side, or None where it fails or does not compile in `timeout` s."""
    try:
        return rows(cmd, timeout)[0]
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError, IndexError) as e:
        print(f"  torch.compile left out: {type(e).__name__}", flush=True)
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=None, help="cpu or blog (default: cpu on cpu, blog on cuda)")
    ap.add_argument("--threads", default="0",
                    help="chargpt's and PyTorch's CPU threads (0: all the CPUs; --contention: chargpt's default, auto, beside a fixed count)")
    ap.add_argument("--budget-s", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=None,
                    help="alternations per model, each a fresh process (speed varies per process here); the median round counts (default 9; --contention: 3)")
    ap.add_argument("--models", default=None, help="default: v1..v10 (--contention: v5,v8,v10)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--python", default=sys.executable, help="the Python with torch for the PyTorch side")
    ap.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"],
                    help="both sides' precision (default: tf32 on CUDA, fp32 on the CPU); MFU is against the matmul rate at it")
    ap.add_argument("--compile-models", default="",
                    help="models that also get a torch.compile column (e.g. v10), each given --compile-timeout-s to compile and run")
    ap.add_argument("--compile-timeout-s", type=float, default=180)
    ap.add_argument("--one-process-per-round", action="store_true",
                    help="one process per side and round for all models, instead of one per model (for a GPU, where a process start costs seconds)")
    ap.add_argument("--bf16-models", default="",
                    help="models that also get bf16-autocast sides (chargpt fast and PyTorch eager), timed in the same rounds")
    ap.add_argument("--graphs", action="store_true",
                    help="also time chargpt's fast path with its step captured as a CUDA graph (train --cuda-graphs), in the same rounds")
    ap.add_argument("--best-models", default="",
                    help="models (v10) that also get the best-PyTorch side (scripts/best_pytorch.py: fused QKV, SDPA, fused "
                         "AdamW), eager in the rounds")
    ap.add_argument("--best-compile", action="store_true",
                    help="also the best-PyTorch side torch.compile'd, once after the rounds (given --compile-timeout-s)")
    ap.add_argument("--contention", action="store_true",
                    help="time each side alone, beside a busy process and beside a copy of itself (default models v5,v8,v10, 3 rounds)")
    a = ap.parse_args()
    if a.contention:
        a.models, a.rounds = a.models or "v5,v8,v10", a.rounds or 3
        return contention(a)
    a.models, a.rounds = a.models or ",".join(f"v{i}" for i in range(1, 11)), a.rounds or 9
    config = a.config or ("blog" if a.device.startswith("cuda") else "cpu")
    dev = "cuda" if a.device.startswith("cuda") else "cpu"
    precision = a.precision or ("tf32" if dev == "cuda" else "fp32")
    peak_row = rows([BIN, "bench", "--matmul-peak", "--device", dev, "--threads", str(a.threads), "--precision", precision])[0]
    peak, threads = float(peak_row["matmul_gflops"]), int(peak_row["threads"])
    compile_models = [m for m in a.compile_models.split(",") if m]
    print(f"{precision} matmul peak through libtorch: {peak:.1f} GFLOP/s ({threads} threads); "
          f"{a.rounds} rounds of {a.budget_s}s per side and model, median round", flush=True)
    table = []
    models = a.models.split(",")
    sides = ("faithful", "pytorch", "fast")

    bf16_models = [m for m in a.bf16_models.split(",") if m]
    bf16_sides = ("fast_bf16", "pytorch_bf16") + (("graphs_bf16",) if a.graphs else ())
    best_models = [m for m in a.best_models.split(",") if m]
    sides += ("graphs",) if a.graphs else ()

    def command(side, names):
        side, _, side_precision = side.partition("_")
        common = ["--models", ",".join(names), "--config", config, "--threads", str(threads), "--budget-s", str(a.budget_s),
                  "--precision", side_precision or precision]
        if side == "pytorch":
            return [a.python, ROOT / "scripts" / "bench_pytorch.py", "--device", a.device] + common
        if side == "best":
            return [a.python, ROOT / "scripts" / "best_pytorch.py", "--device", a.device] + common
        if side == "graphs":
            return [BIN, "bench", "--impl", "fast", "--cuda-graphs", "--device", dev] + common
        return [BIN, "bench", "--impl", side, "--device", dev] + common

    # runs[side][model]: one row per round. Per model, each round a fresh process per side
    # (speed varies per process on a shared CPU); with --one-process-per-round, one process
    # per side and round measures every model (a GPU's process start costs seconds).
    best_sides = ("best", "best_bf16") if bf16_models else ("best",)
    runs = {k: {m: [] for m in models} for k in sides + bf16_sides + best_sides}
    groups = [models] if a.one_process_per_round else [[m] for m in models]
    for group in groups:
        group_sides = sides + (bf16_sides if any(m in bf16_models for m in group) else ())
        best_group = [m for m in group if m in best_models]
        group_sides += best_sides if best_group else ()
        for r in range(a.rounds):
            # Alternate the order so that drift of the machine hits every side alike.
            for k in (group_sides if r % 2 == 0 else tuple(reversed(group_sides))):
                for row in rows(command(k, best_group if k.startswith("best") else group)):
                    runs[k][row["model"]].append(row)
    for name in models:
        pick = lambda k: sorted(runs[k][name], key=lambda row: float(row["ms_per_step"]))[len(runs[k][name]) // 2]
        faithful, pytorch, fast = pick("faithful"), pick("pytorch"), pick("fast")
        bf16 = {k: float(pick(k)["ms_per_step"]) if runs[k][name] else float("nan") for k in bf16_sides}
        ms_of = lambda k: float(pick(k)["ms_per_step"]) if runs.get(k, {}).get(name) else float("nan")
        graphs = pick("graphs") if a.graphs and runs["graphs"][name] else None
        # torch.compile: once, after the others (its compilation is what takes time).
        compiled = compiled_row(command("pytorch", [name]) + ["--compile", "--generate-chars", "0"], a.compile_timeout_s) if name in compile_models else None
        compiled_ms = float(compiled["ms_per_step"]) if compiled else float("nan")
        best_compiled = {}
        if name in best_models and a.best_compile:
            for k in best_sides:
                row = compiled_row(command(k, [name]) + ["--compile"], a.compile_timeout_s)
                best_compiled[k] = float(row["ms_per_step"]) if row else float("nan")
        flops = float(faithful["flops_per_step"])
        tokens = PRESETS[config]["batch_size"] * PRESETS[config]["block_size"]  # B * Tmax of the configuration
        rust_ms, fast_ms, py_ms = (float(r["ms_per_step"]) for r in (faithful, fast, pytorch))
        # The step's matmul floor (chargpt's `floor_ms`), measured by every chargpt process:
        # the median over the faithful and fast sides' rounds.
        floors = sorted(float(r["floor_ms"]) for k in ("faithful", "fast") for r in runs[k][name] if r.get("floor_ms"))
        floor_ms = floors[len(floors) // 2] if floors else float("nan")
        row = dict(
            model=name,
            parameters=int(faithful["parameters"]),
            rust_ms_per_step=round(rust_ms, 3),
            fast_ms_per_step=round(fast_ms, 3),
            pytorch_ms_per_step=round(py_ms, 3),
            ratio_rust_pytorch=round(rust_ms / py_ms, 3),
            ratio_fast_pytorch=round(fast_ms / py_ms, 3),
            floor_ms=round(floor_ms, 3),
            # V1 has no matmul: no floor to compare with.
            ratio_rust_floor=round(rust_ms / floor_ms, 3) if floor_ms > 0 else float("nan"),
            ratio_fast_floor=round(fast_ms / floor_ms, 3) if floor_ms > 0 else float("nan"),
            tokens_per_s=round(tokens / (rust_ms / 1e3)),
            fast_tokens_per_s=round(tokens / (fast_ms / 1e3)),
            flops_per_step=int(flops),
            rust_gflops=round(flops / rust_ms / 1e6, 2),
            fast_gflops=round(flops / fast_ms / 1e6, 2),
            rust_pct_of_peak=round(100 * flops / rust_ms / 1e6 / peak, 1),
            fast_pct_of_peak=round(100 * flops / fast_ms / 1e6 / peak, 1),
            matmul_peak_gflops=round(peak, 1),
            rust_gen_chars_per_s=float(faithful["gen_chars_per_s"]),
            fast_gen_chars_per_s=float(fast["gen_chars_per_s"]),
            pytorch_gen_chars_per_s=float(pytorch["gen_chars_per_s"]),
            pytorch_compile_ms_per_step=round(compiled_ms, 3),
            ratio_fast_pytorch_compile=round(fast_ms / compiled_ms, 3),
            fast_bf16_ms_per_step=round(bf16["fast_bf16"], 3),
            pytorch_bf16_ms_per_step=round(bf16["pytorch_bf16"], 3),
            ratio_fast_bf16_pytorch=round(bf16["fast_bf16"] / py_ms, 3),
            ratio_fast_bf16_pytorch_bf16=round(bf16["fast_bf16"] / bf16["pytorch_bf16"], 3),
            threads=threads,
            config=config,
            precision=precision,
            # What a step costs the host (chargpt's own count, `crate::op_count`), per step.
            rust_launches_per_step=int(faithful.get("launches_per_step") or -1),
            fast_launches_per_step=int(fast.get("launches_per_step") or -1),
            rust_host_syncs_per_step=int(faithful.get("host_syncs_per_step") or -1),
            fast_host_syncs_per_step=int(fast.get("host_syncs_per_step") or -1),
            fast_peak_mem_mb=float(fast.get("peak_mem_mb") or "nan"),
            graphs_ms_per_step=round(float(graphs["ms_per_step"]), 3) if graphs else float("nan"),
            graphs_captured=graphs["cuda_graph"] if graphs else "",
            graphs_launches_per_step=int(graphs["launches_per_step"]) if graphs else -1,
            graphs_tokens_per_s=round(tokens / (float(graphs["ms_per_step"]) / 1e3)) if graphs else float("nan"),
            graphs_pct_of_peak=round(100 * flops / float(graphs["ms_per_step"]) / 1e6 / peak, 1) if graphs else float("nan"),
            graphs_peak_mem_mb=float(graphs.get("peak_mem_mb") or "nan") if graphs else float("nan"),
            graphs_bf16_ms_per_step=round(bf16.get("graphs_bf16", float("nan")), 3),
            pytorch_best_ms_per_step=round(ms_of("best"), 3),
            pytorch_best_bf16_ms_per_step=round(ms_of("best_bf16"), 3),
            pytorch_best_compile_ms_per_step=round(best_compiled.get("best", float("nan")), 3),
            pytorch_best_compile_bf16_ms_per_step=round(best_compiled.get("best_bf16", float("nan")), 3),
        )
        table.append(row)
        print(f"{name:>4}: rust {rust_ms:8.2f} ms  fast {fast_ms:8.2f} ms  pytorch {py_ms:8.2f} ms  "
              f"ratio {row['ratio_rust_pytorch']:.2f} / fast {row['ratio_fast_pytorch']:.2f}  "
              f"fast {row['fast_pct_of_peak']:.1f}% of peak", flush=True)
        if graphs:
            print(f"      CUDA graph: fast {row['graphs_ms_per_step']:8.2f} ms ({row['graphs_launches_per_step']} launches a step, "
                  f"captured: {row['graphs_captured']})", flush=True)
        if name in best_models:
            print(f"      best PyTorch: eager {row['pytorch_best_ms_per_step']} ms, compiled {row['pytorch_best_compile_ms_per_step']} ms; "
                  f"bf16 eager {row['pytorch_best_bf16_ms_per_step']} ms, compiled {row['pytorch_best_compile_bf16_ms_per_step']} ms", flush=True)
        if name in bf16_models:
            print(f"      bf16 autocast: fast {bf16['fast_bf16']:8.2f} ms  pytorch {bf16['pytorch_bf16']:8.2f} ms  "
                  f"fast bf16 / pytorch fp32 {row['ratio_fast_bf16_pytorch']:.2f}, / pytorch bf16 "
                  f"{row['ratio_fast_bf16_pytorch_bf16']:.2f}", flush=True)
    out = pathlib.Path(a.out or default_out(f"bench-{a.device}.csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print(f"\n| model | params | rust ms | fast ms | pytorch ms | rust/pt | fast/pt | floor ms | rust/floor | fast/floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['model']} | {r['parameters']:,} | {r['rust_ms_per_step']} | {r['fast_ms_per_step']} | "
              f"{r['pytorch_ms_per_step']} | {r['ratio_rust_pytorch']} | {r['ratio_fast_pytorch']} | "
              f"{r['floor_ms']} | {r['ratio_rust_floor']} | {r['ratio_fast_floor']} |")
    print(f"\nwrote {out}")


def run_beside(cmd, situation):
    """The rows of `cmd` run alone, beside a busy process, or beside a copy of itself
    (then the rows of both copies)."""
    if situation == "alone":
        return rows(cmd)
    if situation == "busy":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            return rows(cmd)
        finally:
            busy.kill()
            busy.wait()
    copies = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    out = []
    for p in copies:
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{cmd}: {stderr}")
        out += list(csv.DictReader(io.StringIO(stdout)))
    return out


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def contention(a):
    """Step and generation times of each side alone, beside one busy process, and beside
    a second copy of itself; rounds alternate the order of situations and sides."""
    models, rounds = a.models.split(","), a.rounds
    # chargpt with its default thread count (auto: following the load) on both paths, and
    # the fast path with all the CPUs fixed (`train --threads N`); PyTorch with its own.
    sides = ("faithful", "pytorch", "fast", "fast-fixed")
    situations = ("alone", "busy", "pair")
    precision = a.precision or "fp32"

    def command(side, name):
        threads = {"pytorch": a.threads, "fast-fixed": a.threads}.get(side, "auto" if a.threads == "0" else a.threads)
        common = ["--models", name, "--config", "cpu", "--threads", threads, "--budget-s", str(a.budget_s),
                  "--precision", precision]
        if side == "pytorch":
            return [a.python, ROOT / "scripts" / "bench_pytorch.py", "--device", "cpu"] + common
        return [BIN, "bench", "--impl", side.removesuffix("-fixed"), "--device", "cpu"] + common

    print(f"contention: {rounds} rounds of {a.budget_s}s per side, model and situation, median", flush=True)
    table = []
    for name in models:
        got = {(k, s): [] for k in sides for s in situations}
        for r in range(rounds):
            for s in (situations if r % 2 == 0 else tuple(reversed(situations))):
                for k in (sides if r % 2 == 0 else tuple(reversed(sides))):
                    got[(k, s)] += run_beside(command(k, name), s)
        for k in sides:
            ms = {s: median([float(row["ms_per_step"]) for row in got[(k, s)]]) for s in situations}
            gen = {s: median([float(row["gen_chars_per_s"]) for row in got[(k, s)]]) for s in situations}
            row = dict(model=name, side=k, threads=got[(k, "alone")][0]["threads"] if k in ("pytorch", "fast-fixed") else "auto",
                       precision=precision,
                       ms_alone=round(ms["alone"], 2), ms_busy=round(ms["busy"], 2), ms_pair=round(ms["pair"], 2),
                       busy_over_alone=round(ms["busy"] / ms["alone"], 2), pair_over_alone=round(ms["pair"] / ms["alone"], 2),
                       busy_worst_ms=round(max(float(row["ms_per_step"]) for row in got[(k, "busy")]), 2),
                       gen_chars_per_s_alone=round(gen["alone"], 1), gen_chars_per_s_busy=round(gen["busy"], 1),
                       gen_chars_per_s_pair=round(gen["pair"], 1))
            table.append(row)
            print(f"{name:>4} {k:>8}: alone {ms['alone']:8.2f} ms  busy {ms['busy']:8.2f} ms ({row['busy_over_alone']}x)  "
                  f"pair {ms['pair']:8.2f} ms ({row['pair_over_alone']}x)  generation {gen['alone']:.0f} / {gen['busy']:.0f} / "
                  f"{gen['pair']:.0f} chars/s", flush=True)
    out = pathlib.Path(a.out or default_out("bench-cpu-contention.csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print("\n| model | side | alone ms | beside a busy process | beside a copy of itself | generation chars/s alone / busy / pair |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['model']} | {r['side']} | {r['ms_alone']} | {r['ms_busy']} ({r['busy_over_alone']}×) | "
              f"{r['ms_pair']} ({r['pair_over_alone']}×) | {r['gen_chars_per_s_alone']:.0f} / {r['gen_chars_per_s_busy']:.0f} / "
              f"{r['gen_chars_per_s_pair']:.0f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
