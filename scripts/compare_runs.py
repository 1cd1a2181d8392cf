"""Compares two run folders of one model, for the GPU checks' generator phase: the CSV
losses within a relative tolerance, and (--rng) the generator states of the resume files
byte for byte. Plain Python (no torch): safetensors is an 8-byte header length, a JSON
header, then the tensors' bytes.

    python3 scripts/compare_runs.py RUN_A RUN_B --model v10 --rel 1e-4 --rng
"""
import argparse
import csv
import json
import pathlib
import struct
import sys


def losses(run, model):
    with open(pathlib.Path(run) / f"{model}.csv") as f:
        return [(int(r["step"]), float(r["train_loss"]), float(r["val_loss"])) for r in csv.DictReader(f)]


def rng_states(path):
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k.startswith("rng/")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--model", required=True)
    ap.add_argument("--rel", type=float, default=0.0, help="relative tolerance of the losses (0: equal)")
    ap.add_argument("--rng", action="store_true", help="also compare the resume files' generator states")
    a = ap.parse_args()
    bad = []
    la, lb = losses(a.a, a.model), losses(a.b, a.model)
    if [r[0] for r in la] != [r[0] for r in lb]:
        bad.append(f"evaluated steps differ: {[r[0] for r in la]} vs {[r[0] for r in lb]}")
    worst = 0.0
    for ra, rb in zip(la, lb):
        for x, y in zip(ra[1:], rb[1:]):
            worst = max(worst, abs(x - y) / max(abs(y), 1e-12))
    print(f"{a.model}: {len(la)} evaluations, worst relative loss difference {worst:.2e} (tolerance {a.rel:.0e})")
    if worst > a.rel:
        bad.append(f"losses differ by {worst:.2e} > {a.rel:.0e}")
    if a.rng:
        sa = rng_states(pathlib.Path(a.a) / f"{a.model}.resume.safetensors")
        sb = rng_states(pathlib.Path(a.b) / f"{a.model}.resume.safetensors")
        print(f"{a.model}: generator states {sorted(sa)} vs {sorted(sb)}")
        if sorted(sa) != sorted(sb) or any(sa[k] != sb[k] for k in sa):
            bad.append("the generator states differ: " + ", ".join(k for k in sorted(sa) if sa.get(k) != sb.get(k)))
    for line in bad:
        print(f"DIFFER: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
