#!/usr/bin/env python3
"""A/B of two chargpt binaries on one machine: did a change make any step slower?

    python3 scripts/ab_bench.py OLD_BINARY NEW_BINARY [--rounds 3] [--threads 2] [--models v5,v10]
        [--impls fast] [--csv FILE]

For every model and implementation, `chargpt bench --models vK --impl I --config cpu
--threads T --budget-s 1 --generate-chars 0 --no-floor` runs once per round for each binary, in
alternating order (old first in even rounds, new first in odd ones), each a fresh process;
the table is the median ms per step of the rounds and new/old. Both binaries must read the
same flags. The spread of one binary between rounds is the noise to read new/old against.
"""

import argparse
import csv
import io
import statistics
import subprocess
import sys

MODELS = [f"v{k}" for k in range(1, 11)]
IMPLS = ["faithful", "fast"]


def step_ms(binary, model, impl, threads, budget):
    """One fresh process's ms per step (the floor is not measured: only the steps compare)."""
    out = subprocess.run(
        [binary, "bench", "--models", model, "--impl", impl, "--config", "cpu", "--threads", str(threads),
         "--budget-s", str(budget), "--generate-chars", "0", "--no-floor"],
        check=True, capture_output=True, text=True).stdout
    row = next(csv.DictReader(io.StringIO(out)))
    return float(row["ms_per_step"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=1.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--csv", help="also write every round's figure here")
    a = ap.parse_args()
    models, impls = a.models.split(","), a.impls.split(",")
    times = {(m, i, side): [] for m in models for i in impls for side in ("old", "new")}
    for r in range(a.rounds):
        for m in models:
            for i in impls:
                order = [("old", a.old), ("new", a.new)]
                for side, binary in (order if r % 2 == 0 else order[::-1]):
                    times[(m, i, side)].append(step_ms(binary, m, i, a.threads, a.budget_s))
        print(f"round {r + 1} of {a.rounds} done", file=sys.stderr)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "impl", "side", "round", "ms_per_step"])
            for (m, i, side), ms in times.items():
                for r, t in enumerate(ms):
                    w.writerow([m, i, side, r + 1, f"{t:.4f}"])
    med = {k: statistics.median(v) for k, v in times.items()}
    print("| model | " + " | ".join(f"{i} old | {i} new | new/old" for i in impls) + " |")
    print("| --- |" + " ---: | ---: | ---: |" * len(impls))
    for m in models:
        cells = []
        for i in impls:
            old, new = med[(m, i, "old")], med[(m, i, "new")]
            cells += [f"{old:.3f}", f"{new:.3f}", f"{new / old:.3f}"]
        print(f"| V{m[1:]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
