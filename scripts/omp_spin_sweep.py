"""Why a step collapses beside another process, and what libgomp's spin setting does about
it: `chargpt bench` (one model, 2 threads) alone and beside a one-thread busy loop, at each
given GOMP_SPINCOUNT (300000 is libgomp's default, 0 its passive policy), rounds interleaved.
For each run: ms per step (median round) and the CPU time the process used per step
(user + system, from wait4): CPU time well above wall time x useful threads is spinning.

    python3 scripts/omp_spin_sweep.py --model v8 --impl faithful --values 300000,30000,3000,300,0
"""
import argparse
import csv
import io
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "chargpt"


def bench(model, impl, spin, budget, threads):
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    env["GOMP_SPINCOUNT"] = spin  # set, so chargpt keeps it (it sets its own only where none is)
    cmd = [str(BIN), "bench", "--models", model, "--impl", impl, "--threads", str(threads), "--budget-s", str(budget),
           "--generate-chars", "0"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out = p.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd}: {p.stderr.read()}")
    row = list(csv.DictReader(io.StringIO(out)))[0]
    return float(row["ms_per_step"]), (usage.ru_utime + usage.ru_stime) / wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="v8")
    ap.add_argument("--impl", default="faithful")
    ap.add_argument("--values", default="300000,30000,3000,300,0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    values = a.values.split(",")
    got = {(v, s): [] for v in values for s in ("alone", "busy")}
    for r in range(a.rounds):
        for s in ("alone", "busy") if r % 2 == 0 else ("busy", "alone"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if s == "busy" else None
            try:
                for v in values if r % 2 == 0 else list(reversed(values)):
                    got[(v, s)].append(bench(a.model, a.impl, v, a.budget_s, a.threads))
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
    print(f"| GOMP_SPINCOUNT | alone ms/step | busy ms/step | busy / alone | CPU s per wall s, alone | busy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for v in values:
        med = lambda s: sorted(got[(v, s)])[len(got[(v, s)]) // 2]
        (alone, alone_cpu), (busy, busy_cpu) = med("alone"), med("busy")
        # CPU seconds per wall second of the whole process (start-up included): near the
        # thread count when idle threads spin, near 1 when they sleep.
        print(f"| {v} | {alone:.1f} | {busy:.1f} | {busy / alone:.2f} | {alone_cpu:.2f} | {busy_cpu:.2f} |")


if __name__ == "__main__":
    main()
