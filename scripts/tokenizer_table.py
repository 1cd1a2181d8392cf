"""The README's tokenizer table, from multi-seed run folders of one text (`chargpt train
--seeds ... --tokenizer char|bpe:N`). Markdown on stdout, one row per model and run, in
the order given.

    python3 scripts/tokenizer_table.py results/shakespeare-cpu results/tokenizers-cpu/bpe-512 --models v1,v6,v9,v10

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
    a = ap.parse_args(argv)
    wanted = a.models.lower().split(",") if a.models else None
    rows = []
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
    print("| model | tokenizer | parameters | characters per step | ms per step | seeds | val bits per character, mean ± std | val loss per token, mean ± std |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    order = {m: i for i, m in enumerate(wanted or [])}
    for model, tok, params, chars, ms, n, bits, bstd, loss, lstd in sorted(rows, key=lambda r: order.get(r[0], 0)):
        print(f"| {model.upper()} | {tok} | {params:,} | {chars:,.0f} | {ms:.1f} | {n} | {statistics.mean(bits):.3f} ± {bstd:.3f} "
              f"| {statistics.mean(loss):.3f} ± {lstd:.3f} |")


if __name__ == "__main__":
    main()
