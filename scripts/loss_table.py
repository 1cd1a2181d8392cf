"""The README's loss tables, from a multi-seed run folder (`chargpt train --seeds`) and,
optionally, the PyTorch reference's final losses for the same seeds
(`scripts/reference.py train --seeds ... --csv FILE`). Markdown on stdout.

    python3 scripts/loss_table.py results/shakespeare-cpu --pytorch results/shakespeare-cpu/pytorch.csv

Table 1: per model, the spread of the final losses over the seeds (summary.csv).
Table 2: per model, chargpt's final val loss of each seed beside PyTorch's, and how many
runs are identical to the last bit, which the same seed gives on the same machine.
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
    print("| model | seeds | chargpt final val loss, per seed | PyTorch's, same seeds | identical (train and val) |")
    print("| --- | --- | --- | --- | --- |")
    per_seed = {seed: {s["model"]: s for s in read(run / f"seed-{seed}" / "summary.csv")} for seed in seeds}
    same = compared = 0
    for r in summary:
        model = r["model"]
        pairs = []
        for seed in seeds:
            ours = per_seed[seed].get(model)
            ref = theirs.get((model, seed))
            if ours is not None and ref is not None:
                equal = all(float(ours[k]) == float(ref[k]) for k in ("final_val_loss", "final_train_loss"))
                pairs.append((seed, float(ours["final_val_loss"]), float(ref["final_val_loss"]), equal))
        if not pairs:
            continue
        compared += len(pairs)
        same += sum(p[3] for p in pairs)
        differ = [str(p[0]) for p in pairs if not p[3]]
        verdict = f"{sum(p[3] for p in pairs)} of {len(pairs)}" + (f" (**no**: seed {', '.join(differ)})" if differ else "")
        print(f"| {model.upper()} | {', '.join(str(p[0]) for p in pairs)} | {', '.join(f'{p[1]:.6f}' for p in pairs)} "
              f"| {', '.join(f'{p[2]:.6f}' for p in pairs)} | {verdict} |")
    print()
    print(f"{same} of {compared} runs identical to the last bit (train and val loss).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
