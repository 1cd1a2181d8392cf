#!/bin/bash
# What MKL's strict reproducibility mode costs (results/PERF.md, "Reproducible arithmetic"):
# chargpt bench steps with MKL_CBWR=OFF (MKL's fast mode) and AUTO,STRICT (chargpt's
# default), interleaved round by round in fresh processes, at 1 and 2 fixed threads.
# CSV on stdout: round,impl,model,threads,mode,ms_per_step
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/chargpt}
ROUNDS=${ROUNDS:-5}
echo "round,impl,model,threads,mode,ms_per_step"
for round in $(seq "$ROUNDS"); do
  for impl in faithful fast; do
    for model in v5 v8 v10; do
      for threads in 1 2; do
        modes="OFF AUTO,STRICT"
        [ $((round % 2)) = 0 ] && modes="AUTO,STRICT OFF"
        for mode in $modes; do
          ms=$(MKL_CBWR=$mode "$BIN" bench --models "$model" --impl "$impl" --threads "$threads" --budget-s 1.5 --generate-chars 0 | tail -1 | cut -d, -f4)
          echo "$round,$impl,$model,$threads,\"$mode\",$ms"
        done
      done
    done
  done
done
