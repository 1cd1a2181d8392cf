"""The README's loss tables, from a multi-seed run folder (`chargpt train --seeds`) and,
optionally, the PyTorch reference's final losses for the same seeds
(`scripts/reference.py train --seeds ... --csv FILE`). Markdown on stdout.

    python3 scripts/loss_table.py results/shakespeare-cpu --pytorch results/shakespeare-cpu/pytorch.csv

Table 1: per model, the spread of the final losses over the seeds (summary.csv).
Table 2: per model and seed, chargpt's final val loss beside PyTorch's, and how many are
identical to the last bit (float repr), which the same seed gives on the same machine.
"""
import argparse
import csv
import pathlib
import sys


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a multi-seed run folder")
    ap.add_argument("--pytorch", help="reference.py train --csv output for the same seeds")
    a = ap.parse_args(argv)
    run = pathlib.Path(a.run)
    summary = read(run / "summary.csv")
    if not summary or "val_loss_mean" not in summary[0]:
        sys.exit(f"error: {run / 'summary.csv'} is not a multi-seed run's summary; pass a folder written by chargpt train --seeds")

    print("| model | parameters | seeds | val loss, mean ± std | val loss, min (seed) – max (seed) | train loss, mean ± std |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in summary:
        f = {k: float(v) for k, v in r.items() if k.endswith(("_mean", "_std", "_min", "_max"))}
        print(f"| {r['model'].upper()} | {int(r['parameters']):,} | {r['seeds']} "
              f"| {f['val_loss_mean']:.3f} ± {f['val_loss_std']:.3f} "
              f"| {f['val_loss_min']:.3f} ({r['val_loss_min_seed']}) – {f['val_loss_max']:.3f} ({r['val_loss_max_seed']}) "
              f"| {f['train_loss_mean']:.3f} ± {f['train_loss_std']:.3f} |")

    if not a.pytorch:
        return 0
    theirs = {(r["model"], int(r["seed"])): r for r in read(a.pytorch)}
    seeds = sorted(int(p.name[len("seed-"):]) for p in run.glob("seed-*") if p.name[len("seed-"):].lstrip("-").isdigit())
    print()
    print("| model | seed | chargpt val loss | PyTorch val loss | identical |")
    print("| --- | ---: | ---: | ---: | :---: |")
    same = compared = 0
    for r in summary:
        model = r["model"]
        for seed in seeds:
            ours = {s["model"]: s for s in read(run / f"seed-{seed}" / "summary.csv")}.get(model)
            ref = theirs.get((model, seed))
            if ours is None or ref is None:
                continue
            equal = float(ours["final_val_loss"]) == float(ref["final_val_loss"]) and \
                float(ours["final_train_loss"]) == float(ref["final_train_loss"])
            compared += 1
            same += equal
            print(f"| {model.upper()} | {seed} | {float(ours['final_val_loss']):.6f} | {float(ref['final_val_loss']):.6f} "
                  f"| {'yes' if equal else '**no**'} |")
    print()
    print(f"{same} of {compared} runs identical to the last bit (train and val loss).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
