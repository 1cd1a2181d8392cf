#!/bin/bash
# chargpt's GPU checks: what only a GPU can answer, in one command, on any Linux machine
# with an NVIDIA GPU and PyTorch 2.11 (the libtorch chargpt binds) in its python3.
#
#   1. Build chargpt where Rust is (`make build`); the binary runs on any x86-64 Linux
#      machine with the same libtorch.
#   2. On the GPU machine, in a copy of this repository with `target/release/chargpt` and
#      `data/shakespeare.txt` (`make data`) in place:
#
#        make gpu-checks                        # = bash scripts/gpu_checks.sh
#        GPU_CHECKS_PHASES=bench make gpu-checks  # some phases only
#
#      It finds libtorch in python3's torch (PY=... for another Python). Results go to
#      $OUT (default results/gpu/): the logs, the bench CSVs, and the blog runs packed
#      into one tar without weights. Copy them into results/cuda/ with
#      scripts/import_gpu_results.py.
#
# Rehearsal on the CPU (`make gpu-dry`, and tests/gpu_checks.rs in `make test`):
# GPU_CHECKS_DRY=1 runs every phase with --device cpu, tiny sizes and a few steps, through
# the same code paths, file names and packing.
#
# Phases, in order; each writes its results under $OUT as soon as it has them, so a run
# cut short still leaves what finished. At most 8 files, so everything is in:
#   checks.txt            every phase's log, appended as it runs
#   summary.txt           one line per phase: name, status, seconds
#   bench-cuda-tf32.csv   the bench at TF32: V1-V3 and V10, both paths, with and without
#                         CUDA graphs, PyTorch eager and the best-PyTorch side, 2 rounds
#   bench-cuda-bf16.csv   V10 the same at bf16 autocast, 1 round
#   blog-runs.tar.gz      the blog runs' folders (CSVs, summaries, samples, JSONs, logs)
#
#   device    nvidia-smi; CUDA seen; fp32/tf32/bf16 matmul rates; a size no GPU holds
#             refused in one line before anything is allocated                   ~20 s
#   parity    `parity --device cuda`, faithful and fast                           ~10 s
#   graphs    a tiny V10 trained with and without --cuda-graphs at dropout 0: the same
#             losses (1e-4); and with dropout, captured without falling back      ~20 s
#   rng       the random streams on the device (docs/REPRODUCIBILITY.md)          ~30 s
#   bench     alone on the GPU (chargpt's sides ~8 s a process, the torch.compile'd best
#             PyTorch ~60 s a precision)                                     ~4 min
#   runs      the blog preset (10,000 steps, eval every 1,000) on the fast path, with CUDA
#             graphs where the graphs phase passed: V10 first, alone (its 10,000 steps
#             timed alone), then V1-V9 and V10 with --tokenizer bpe:2048 side by side as
#             parallel processes (the GPU is mostly idle under one small model; their
#             seconds per step are then not alone-times). They run in a process group of
#             their own that outlives this command; the command waits until they end or
#             GPU_CHECKS_CALL_BUDGET_S (default 570) has passed, packs what is done and
#             exits. `GPU_CHECKS_PHASES=collect` waits for the rest and packs again.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=${GPU_CHECKS_DRY:-0}
PHASES=${GPU_CHECKS_PHASES:-device,parity,graphs,rng,bench,runs}
CALL_BUDGET_S=${GPU_CHECKS_CALL_BUDGET_S:-570}
BIN=${BIN:-target/release/chargpt}
START=$(date +%s)

if [ "$DRY" = 1 ]; then
  OUT=${OUT:-target/gpu-dry}
  DEV=cpu
  PY=${PY:-.venv/bin/python}
  PRECISIONS="fp32"
  BENCH_FIRST=(--config cpu --models v1,v10 --rounds 2 --budget-s 0.05 --best-models v10)
  BENCH_OTHER=(--config cpu --models v10 --rounds 1 --budget-s 0.05 --best-models v10)
  GRAPHS=()
  BLOG=(--preset tiny --steps ${GPU_CHECKS_DRY_STEPS:-41} --eval-every 20 --data reference/excerpt.txt)
  BPE=bpe:300
  SIDE_BY_SIDE="v1 v2"
else
  OUT=${OUT:-results/gpu}
  DEV=cuda
  PY=${PY:-python3}
  PRECISIONS="tf32 bf16"
  BENCH_FIRST=(--config blog --models v1,v2,v3,v10 --rounds 2 --budget-s 0.3 --graphs --best-models v10 --best-compile
    --compile-models "" --compile-timeout-s 75)
  BENCH_OTHER=(--config blog --models v10 --rounds 1 --budget-s 0.3 --graphs --best-models v10 --best-compile
    --compile-models "" --compile-timeout-s 75)
  GRAPHS=(--cuda-graphs)
  BLOG=(--preset blog)
  BPE=bpe:2048
  SIDE_BY_SIDE="v1 v2 v3 v4 v5 v6 v7 v8 v9"
  export LD_LIBRARY_PATH=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
fi
RUNS=${GPU_CHECKS_RUNS_DIR:-target/gpu-runs}
mkdir -p "$OUT"
LOG="$OUT/checks.txt"
SUMMARY="$OUT/summary.txt"
# Each invocation writes its own logs (copy an earlier one's away first).
: >"$LOG"
: >"$SUMMARY"

wants() { [[ ",$PHASES," == *",$1,"* ]]; }
elapsed() { echo $(( $(date +%s) - START )); }

# phase NAME COMMAND...: runs it, appends its output to checks.txt, records the status.
phase() {
  local name=$1; shift
  local t0=$(date +%s)
  echo "== $name: $* ($(elapsed) s in)" >>"$LOG"
  "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - t0 ))s" >>"$SUMMARY"
  echo "== $name: exit $rc" >>"$LOG"
  return $rc
}

if wants device; then
  if [ "$DRY" = 1 ]; then
    phase device-name echo "dry run on the CPU: $(uname -m), $(nproc) cores"
  else
    phase device-name nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  fi
  # The binary must see CUDA (else libtorch_cuda was dropped at link time): --device cuda
  # fails on a machine where libtorch sees no GPU.
  for p in $(echo fp32 $PRECISIONS | tr ' ' '\n' | awk '!seen[$0]++'); do
    phase "matmul-$p" "$BIN" bench --device "$DEV" --matmul-peak --precision "$p"
  done
  # V10 at C = 24,576 (6 heads of 4,096) passes every other check and needs ~500 GB: it is
  # refused against the device's free memory before anything is allocated, in one line.
  phase footprint-refused bash -c "out=\$(\"$BIN\" train --device $DEV --models v10 --n-embed 24576 --num-heads 6 --no-plot \
    --data reference/excerpt.txt --out $OUT/too-big 2>&1); rc=\$?; echo \"\$out\"; \
    [ \$rc = 1 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'error: v10 at these sizes needs about'"
fi

FAST_OK=0
if wants parity; then
  phase parity-faithful "$BIN" parity --device "$DEV" --impl faithful
  phase parity-fast "$BIN" parity --device "$DEV" --impl fast && FAST_OK=1
fi

# CUDA graphs compute what the eager step computes: at dropout 0 the losses of a tiny V10
# with and without them agree (1e-4); with dropout the step is captured (no fallback line).
GRAPHS_OK=0
if wants graphs; then
  G="$OUT/../gpu-graphs"
  rm -rf "$G"
  TINY=(--preset tiny --models v10 --steps 61 --eval-every 20 --impl fast --device "$DEV" --no-plot --data reference/excerpt.txt)
  if [ "$DRY" = 1 ]; then
    # On the CPU the flag is refused in one line.
    phase graphs-refused-on-cpu bash -c "out=\$(\"$BIN\" train ${TINY[*]} --cuda-graphs --out $G/x 2>&1); rc=\$?; echo \"\$out\"; \
      [ \$rc = 1 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'needs a CUDA device'"
  else
    phase graphs-eager "$BIN" train "${TINY[@]}" --dropout 0 --out "$G/eager"
    phase graphs-captured "$BIN" train "${TINY[@]}" --dropout 0 --cuda-graphs --out "$G/graph"
    phase graphs-same-losses "$PY" scripts/compare_runs.py "$G/graph" "$G/eager" --model v10 --rel 1e-4 \
      && phase graphs-with-dropout bash -c "out=\$(\"$BIN\" train ${TINY[*]} --cuda-graphs --out $G/dropout 2>&1); rc=\$?; \
        echo \"\$out\"; [ \$rc = 0 ] && ! echo \"\$out\" | grep -q 'CUDA graphs off'" \
      && GRAPHS_OK=1
    # Informational: with dropout, eager and graph steps draw from the same generator; do
    # their losses agree too (each dropout kernel at the same offset)?
    phase graphs-dropout-eager "$BIN" train "${TINY[@]}" --out "$G/dropout-eager"
    phase graphs-dropout-same-losses "$PY" scripts/compare_runs.py "$G/dropout" "$G/dropout-eager" --model v10 --rel 1e-4
  fi
fi

# The blog's random streams on the device (docs/REPRODUCIBILITY.md): batch indices come
# from the CPU generator, so V1 (no dropout; initialised on the CPU) trains on the device
# on the very batches of its CPU run (losses within 1e-4; other batches would part by
# 1e-2); and a run extended with --resume continues every generator it draws from (on
# CUDA, the device's: dropout, sampling), so its resume file ends with the uninterrupted
# run's generator states, byte for byte.
if wants rng; then
  RNG_DIR="$OUT/../gpu-rng"
  rm -rf "$RNG_DIR"
  RNG_ARGS=(--preset tiny --eval-every 20 --no-plot --data reference/excerpt.txt)
  phase rng-batches-on-device "$BIN" train "${RNG_ARGS[@]}" --models v1 --steps 41 --device "$DEV" --out "$RNG_DIR/v1-dev"
  phase rng-batches-on-cpu "$BIN" train "${RNG_ARGS[@]}" --models v1 --steps 41 --device cpu --out "$RNG_DIR/v1-cpu"
  phase rng-batches-equal "$PY" scripts/compare_runs.py "$RNG_DIR/v1-dev" "$RNG_DIR/v1-cpu" --model v1 --rel 1e-4
  phase rng-straight "$BIN" train "${RNG_ARGS[@]}" --models v10 --steps 41 --device "$DEV" --out "$RNG_DIR/v10-straight"
  phase rng-first-half "$BIN" train "${RNG_ARGS[@]}" --models v10 --steps 21 --device "$DEV" --out "$RNG_DIR/v10-resumed"
  phase rng-resumed "$BIN" train --resume "$RNG_DIR/v10-resumed" --steps 41 --no-plot
  phase rng-resume-continues "$PY" scripts/compare_runs.py "$RNG_DIR/v10-resumed" "$RNG_DIR/v10-straight" --model v10 --rel 1e-4 --rng
  # A BPE run (--tokenizer bpe:300): the same tokenizer.json whatever the device, and V1 on
  # the very batches of its CPU run, as with characters.
  phase rng-bpe-on-device "$BIN" train "${RNG_ARGS[@]}" --models v1 --steps 41 --tokenizer bpe:300 --device "$DEV" --out "$RNG_DIR/bpe-dev"
  phase rng-bpe-on-cpu "$BIN" train "${RNG_ARGS[@]}" --models v1 --steps 41 --tokenizer bpe:300 --device cpu --out "$RNG_DIR/bpe-cpu"
  phase rng-bpe-equal bash -c "cmp $RNG_DIR/bpe-dev/tokenizer.json $RNG_DIR/bpe-cpu/tokenizer.json \
    && $PY scripts/compare_runs.py $RNG_DIR/bpe-dev $RNG_DIR/bpe-cpu --model v1 --rel 1e-4"
  # run.json records the machine: threads, libtorch, and on a GPU the GPU itself.
  RECORDED="grep -q '\"threads\"' $RNG_DIR/v10-straight/run.json && grep -q '\"libtorch\": \"2.11.0\"' $RNG_DIR/v10-straight/run.json"
  [ "$DRY" = 1 ] || RECORDED="$RECORDED && grep -q '\"gpu\"' $RNG_DIR/v10-straight/run.json"
  phase rng-recorded bash -c "$RECORDED && grep -q '\"device\": \"$DEV\"' $RNG_DIR/v10-straight/v10.json && cat $RNG_DIR/v10-straight/run.json"
fi

if wants bench; then
  EXTRA=("${BENCH_FIRST[@]}")
  for p in $PRECISIONS; do
    phase "bench-$p" "$PY" scripts/bench.py --device "$DEV" --precision "$p" --one-process-per-round "${EXTRA[@]}" \
      --python "$PY" --out "$OUT/bench-$DEV-$p.csv"
    EXTRA=("${BENCH_OTHER[@]}")
  done
fi

# The run folders, packed into one file: CSVs, summaries, samples, the models' JSON,
# tokenizer.json and each run's log; no weights (the results are the losses and samples).
pack_runs() {
  [ -d "$RUNS" ] || return 0
  (cd "$(dirname "$RUNS")" && find "$(basename "$RUNS")" -type f ! -name '*.safetensors' ! -name '.*' -print0 \
    | tar -czf - --null -T -) >"$OUT/blog-runs.tar.gz.tmp" && mv "$OUT/blog-runs.tar.gz.tmp" "$OUT/blog-runs.tar.gz"
}

# Waits until the runs end or GPU_CHECKS_CALL_BUDGET_S is spent (less 15 s to pack), then packs.
wait_for_runs() {
  while [ ! -e "$RUNS/ALL_DONE" ] && [ "$(elapsed)" -lt $(( CALL_BUDGET_S - 15 )) ]; do
    sleep 1
  done
  pack_runs
  if [ -e "$RUNS/ALL_DONE" ]; then
    echo "runs: all ended ($(cat "$RUNS/ALL_DONE"))" >>"$SUMMARY"
  else
    echo "runs: still running after $(elapsed) s: GPU_CHECKS_PHASES=collect packs them when they end" >>"$SUMMARY"
  fi
  for f in "$RUNS"/*.log; do [ -e "$f" ] && echo "$(basename "$f" .log): $(tail -c 300 "$f" | tr '\r' '\n' | grep -v '^\s*$' | tail -1)" >>"$SUMMARY"; done
}

if wants runs; then
  rm -rf "$RUNS" && mkdir -p "$RUNS"
  IMPL=faithful
  if [ "$FAST_OK" = 1 ] || ! wants parity; then IMPL=fast; fi
  USE_GRAPHS=()
  if [ "$GRAPHS_OK" = 1 ] && [ "$IMPL" = fast ]; then USE_GRAPHS=("${GRAPHS[@]}"); fi
  TRAIN="$BIN train ${BLOG[*]} --device $DEV --impl $IMPL ${USE_GRAPHS[*]} --no-plot"
  echo "runs: $TRAIN ... ($(elapsed) s in)" >>"$LOG"
  # V10 alone first, then the rest side by side; each in a folder (and log) of its own. The
  # driver is a session of its own (setsid), so that it outlives this command.
  setsid nohup bash -c "
    $TRAIN --models v10 --out $RUNS/blog-v10 >$RUNS/blog-v10.log 2>&1
    for m in $SIDE_BY_SIDE; do
      $TRAIN --models \$m --out $RUNS/blog-\$m >$RUNS/blog-\$m.log 2>&1 &
    done
    $TRAIN --models v10 --tokenizer $BPE --out $RUNS/bpe-v10 >$RUNS/bpe-v10.log 2>&1 &
    wait
    date -u +%H:%M:%S >$RUNS/ALL_DONE
  " </dev/null >/dev/null 2>&1 &
  echo $! >"$RUNS/driver.pid"
  wait_for_runs
fi

if wants collect; then
  wait_for_runs
fi
echo "done in $(elapsed) s" >>"$SUMMARY"
cat "$SUMMARY"
