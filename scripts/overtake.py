"""Whether one model overtakes another in a multi-seed run, from the seeds' CSVs: per
evaluation the val loss mean and min–max of each, and the first step from which the
challenger's mean stays below the leader's with no overlap of their min–max ranges.

    python3 scripts/overtake.py results/shakespeare-cpu-10k --leader v9 --challenger v10
"""
import argparse
import csv
import pathlib
import statistics


def curves(run, model):
    out = {}
    for seed in sorted(p for p in pathlib.Path(run).glob("seed-*") if (p / f"{model}.csv").exists()):
        with open(seed / f"{model}.csv", newline="") as f:
            out[seed.name] = {int(r["step"]): (float(r["val_loss"]), float(r["train_loss"])) for r in csv.DictReader(f)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--leader", required=True)
    ap.add_argument("--challenger", required=True)
    ap.add_argument("--every", type=int, default=1000, help="print every this many steps")
    a = ap.parse_args(argv)
    lead, chal = curves(a.run, a.leader), curves(a.run, a.challenger)
    steps = sorted(set.intersection(*(set(c) for c in list(lead.values()) + list(chal.values()))))
    print(f"{a.leader}: {len(lead)} seeds, {a.challenger}: {len(chal)} seeds, {len(steps)} common evaluations")
    print(f"step  {a.leader} val mean [min, max]  {a.challenger} val mean [min, max]  {a.challenger} - {a.leader}")
    below = []
    for s in steps:
        lv = [c[s][0] for c in lead.values()]
        cv = [c[s][0] for c in chal.values()]
        clear = statistics.mean(cv) < statistics.mean(lv) and max(cv) < min(lv)
        below.append((s, clear))
        if s % a.every == 0 or s == steps[-1]:
            print(f"{s:5}  {statistics.mean(lv):.3f} [{min(lv):.3f}, {max(lv):.3f}]  "
                  f"{statistics.mean(cv):.3f} [{min(cv):.3f}, {max(cv):.3f}]  {statistics.mean(cv) - statistics.mean(lv):+.3f}")
    first = next((s for i, (s, _) in enumerate(below) if all(c for _, c in below[i:])), None)
    above = sum(1 for s in steps if statistics.mean(c[s][0] for c in chal.values()) > statistics.mean(c[s][0] for c in lead.values()))
    print(f"{a.challenger}'s mean val loss is above {a.leader}'s at {above} of {len(steps)} evaluations")
    print(f"{a.challenger} stays clearly below {a.leader} (mean below, no min-max overlap) from step: {first if first is not None else 'never'}")
    for name, c in [(a.leader, lead), (a.challenger, chal)]:
        last = steps[-1]
        gaps = [c2[last][0] - c2[last][1] for c2 in c.values()]
        print(f"{name} at step {last}: train-val gap (val - train) mean {statistics.mean(gaps):.3f} over {len(gaps)} seeds")


if __name__ == "__main__":
    main()
