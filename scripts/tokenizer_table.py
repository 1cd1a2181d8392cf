"""The README's tokenizer table, from multi-seed run folders of one text (`chargpt train
--seeds ... --tokenizer char|bpe:N`). Markdown on stdout, one row per model and run, in
the order given.

    python3 scripts/tokenizer_table.py results/tokenizers-cpu/char results/tokenizers-cpu/bpe-512 --models v1,v6,v9,v10

`--equal-chars` prints instead, per model and run, the val bits per character at the
first evaluation by which the run has seen as many training characters as the first run
saw in all its steps (steps x characters per step): a comparison at equal text seen.

Bits per character are each run's final val loss estimate (the blog's 20 random batches)
over ln 2, at the val split's characters per token (1 for char), as summary.csv records
them; summaries written before chargpt recorded them are char runs: loss / ln 2.
"""
import argparse
import csv
import json
import math
import pathlib
import statistics
import sys


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="multi-seed run folders")
    ap.add_argument("--models", help="only these models, e.g. v1,v6,v9,v10")
    ap.add_argument("--equal-chars", action="store_true",
                    help="bits per character at equal training characters seen (the first run's total)")
    a = ap.parse_args(argv)
    wanted = a.models.lower().split(",") if a.models else None
    rows, equal = [], []
    for run in map(pathlib.Path, a.runs):
        cfg = json.loads((run / "run.json").read_text())
        seeds = sorted(p for p in run.glob("seed-*") if p.is_dir())
        if not seeds:
            sys.exit(f"error: {run} has no seed-* folders; pass runs written by chargpt train --seeds")
        tokenizer = cfg.get("tokenizer", "char")
        for model in cfg["models"]:
            if wanted and model not in wanted:
                continue
            per_seed = [read(s / "summary.csv") for s in seeds]
            mine = [r for rs in per_seed for r in rs if r["model"] == model and int(r["final_loss_step"]) == cfg["steps"] - 1]
            if not mine:
                continue
            bits = [float(r["final_val_bits_per_char"]) if r.get("final_val_bits_per_char") else float(r["final_val_loss"]) / math.log(2)
                    for r in mine]
            loss = [float(r["final_val_loss"]) for r in mine]
            chars = float(mine[0]["chars_per_step"]) if mine[0].get("chars_per_step") else cfg["batch_size"] * cfg["block_size"]
            ms = statistics.mean(float(r["mean_s_per_step"]) for r in mine) * 1000
            std = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")
            rows.append((model, tokenizer, int(mine[0]["parameters"]), chars, ms, len(mine), bits, std(bits), loss, std(loss)))
            curves = [read(s / f"{model}.csv") for s in seeds]
            equal.append((model, tokenizer, chars, cfg["steps"] - 1, curves))
    if a.equal_chars:
        return print_equal_chars(equal, wanted)
    print("| model | tokenizer | parameters | characters per step | ms per step | seeds | val bits per character, mean ± std | val loss per token, mean ± std |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    order = {m: i for i, m in enumerate(wanted or [])}
    for model, tok, params, chars, ms, n, bits, bstd, loss, lstd in sorted(rows, key=lambda r: order.get(r[0], 0)):
        print(f"| {model.upper()} | {tok} | {params:,} | {chars:,.0f} | {ms:.1f} | {n} | {statistics.mean(bits):.3f} ± {bstd:.3f} "
              f"| {statistics.mean(loss):.3f} ± {lstd:.3f} |")


def print_equal_chars(equal, wanted):
    """Per model: each run's val bits per character (mean ± std over seeds) at its first
    evaluation whose characters seen reach the first run's final count."""
    order = {m: i for i, m in enumerate(wanted or [])}
    firsts = {}
    for model, _, chars, last, _ in equal:
        firsts.setdefault(model, chars * last)
    print("| model | tokenizer | at step | training characters seen | val bits per character, mean ± std |")
    print("| --- | --- | ---: | ---: | ---: |")
    for model, tok, chars, last, curves in sorted(equal, key=lambda r: order.get(r[0], 0)):
        target = firsts[model]
        per_step = {}
        for rows in curves:
            for r in rows:
                if r.get("val_bits_per_char") not in (None, "", "NaN"):
                    bits = float(r["val_bits_per_char"])
                else:  # a char CSV from before chargpt recorded it
                    bits = float(r["val_loss"]) / math.log(2)
                per_step.setdefault(int(r["step"]), []).append(bits)
        reached = [s for s in sorted(per_step) if s * chars >= target and len(per_step[s]) == len(curves)]
        if not reached:
            continue
        step, bits = reached[0], per_step[reached[0]]
        std = statistics.stdev(bits) if len(bits) > 1 else float("nan")
        print(f"| {model.upper()} | {tok} | {step:,} | {step * chars / 1e6:.2f}M | {statistics.mean(bits):.3f} ± {std:.3f} |")


if __name__ == "__main__":
    main()
