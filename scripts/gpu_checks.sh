#!/bin/bash
# The GPU checks, as one prepared command for a lent GPU machine (../shared/GPU.md,
# /work/.library/device/README.md). Build here first (`cargo build --release`), then:
#
#   run(command="bash scripts/gpu_checks.sh", carry=["target/release/chargpt", "data"], timeout_s=590)
#
# and, if the blog run did not finish inside that call, copy its run-folder tar back into
# the tree (results/gpu-run/blog-run.tar.gz, git-ignored) and continue it in a second call:
#
#   run(command="GPU_CHECKS_PHASES=run GPU_CHECKS_RESUME_TAR=results/gpu-run/blog-run.tar.gz bash scripts/gpu_checks.sh",
#       carry=["target/release/chargpt", "data", "results/gpu-run"], timeout_s=590)
#
# Rehearsal on the CPU (what `make gpu-dry` and tests/gpu_checks.rs run): GPU_CHECKS_DRY=1
# runs every phase with --device cpu, tiny sizes and a few steps, through the same code
# paths, file names and packing.
#
# Phases, in order; each writes its results under $OUT as soon as it has them, so a call
# cut short still returns what finished. At most 8 files come back, so everything is in:
#   checks.txt            every phase's log, appended as it runs
#   summary.txt           one line per phase: name, status, seconds
#   bench-cuda-tf32.csv   the blog-configuration benchmark at TF32
#   bench-cuda-bf16.csv   the same at bf16 autocast (both CSVs with each step's matmul
#                         floor, floor_ms, and the faithful/floor and fast/floor ratios)
#   blog-run.tar.gz       the blog run's folder (CSVs, summary, samples, plots, and the
#                         resume checkpoint while unfinished), refreshed every minute
#
# Time plan on one H200 (Hopper: the H100's compute with faster, larger memory, so the
# H100 estimates below stand; 15 minutes of device time per session, the machine's start
# included; one command at most 10 minutes; phase 1 measures the real matmul rates).
# Estimates, conservative:
#   start of the machine                                   ~1.5 min (outside the script)
#   1. device: nvidia-smi, CUDA seen, fp32/tf32/bf16 8192^3 matmuls      ~10 s
#   2. parity on CUDA, faithful and fast (tiny reference models)          ~20 s
#   2b. the random streams: eight tiny trainings, two of them BPE (CUDA start ~5 s each) ~50 s
#   3. benchmark, blog configuration, V1..V10, one process per side and round (a CUDA
#      process start is ~5 s): TF32 2 rounds x 3 sides x (5 s + 10 x ~1 s) ~90 s, bf16 one
#      round ~45 s, torch.compile of V10 (capped at 90 s)                ~4 min
#      V10 blog step: 6 * 10.9M weights * 16,384 tokens + 12 * 6 * 64 * 256^2 * 384
#      = 1.07e12 + 0.12e12 = 1.2e12 FLOP; at a conservative 100 TFLOP/s (TF32, small
#      384-wide matmuls) 12 ms, plus ~1,500 kernel launches x 5 us = 7.5 ms on the
#      faithful path (fewer on the fast one): ~15-20 ms per step.
#   4. the blog's run, `train --preset blog` (10,000 steps per model, eval every 1,000,
#      1,000 sampled characters) on the fastest path that passed parity:
#      V1-V3 launch-bound ~1 ms/step: 3 x 10 s; V4-V6 ~2-3 ms/step: 3 x 25 s;
#      V7 ~5 ms: 50 s; V8, V9 ~8 ms: 2 x 80 s; V10 ~18 ms: 180 s; evaluation and
#      sampling ~30 s in all: ~9 minutes. Order: V10 first, then V1..V9. V10 is the
#      blog's headline (its 1.1 is where the progression ends, and the 2-minute aim is
#      about it) and the longest, so a call cut short still brings it back; the rest go
#      cheapest first, so a cut brings back as many models as possible. Each model seeds
#      itself, so the order does not change any model's numbers (checked once by hand on
#      the CPU: V5 alone and V5 after V10 and V1 gave byte-identical weights).
#      It runs until GPU_CHECKS_RUN_BUDGET_S (default:
#      what is left of a 570 s call), then stops with SIGINT (chargpt checkpoints) and is
#      packed; the second call resumes it.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=${GPU_CHECKS_DRY:-0}
PHASES=${GPU_CHECKS_PHASES:-device,parity,rng,bench,run}
CALL_BUDGET_S=${GPU_CHECKS_CALL_BUDGET_S:-570}
BIN=${BIN:-target/release/chargpt}
START=$(date +%s)

if [ "$DRY" = 1 ]; then
  OUT=${OUT:-target/gpu-dry}
  DEV=cpu
  PY=${PY:-.venv/bin/python}
  PRECISIONS="fp32"
  BENCH_ARGS=(--config cpu --models v1,v5 --budget-s 0.05 --one-process-per-round)
  BENCH_FIRST=(--rounds 2 --compile-models "")
  BENCH_OTHER=(--rounds 1)
  RUN_ARGS=(--preset tiny --models v10,v1 --steps ${GPU_CHECKS_DRY_STEPS:-41} --eval-every 20 --data reference/excerpt.txt)
else
  OUT=${OUT:-results/gpu}
  DEV=cuda
  PY=${PY:-python3}
  PRECISIONS="tf32 bf16"
  BENCH_ARGS=(--config blog --budget-s 0.3 --one-process-per-round)
  BENCH_FIRST=(--rounds 2 --compile-models v10 --compile-timeout-s 90)
  BENCH_OTHER=(--rounds 1)
  RUN_ARGS=(--preset blog --models v10,v1,v2,v3,v4,v5,v6,v7,v8,v9)
  export LD_LIBRARY_PATH=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
fi
mkdir -p "$OUT"
LOG="$OUT/checks.txt"
SUMMARY="$OUT/summary.txt"
# Each call reports on itself (the files of an earlier call have been fetched by then).
: >"$LOG"
: >"$SUMMARY"

wants() { [[ ",$PHASES," == *",$1,"* ]]; }
elapsed() { echo $(( $(date +%s) - START )); }

# phase NAME COMMAND...: runs it, appends its output to checks.txt, records the status.
phase() {
  local name=$1; shift
  local t0=$(date +%s)
  echo "== $name: $* ($(elapsed) s into the call)" >>"$LOG"
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
  # A size no device holds is refused before allocating, against the device's free memory
  # (on CUDA: "... GB free on the GPU"), in one line and with exit 1.
  phase footprint-refused bash -c "out=\$(\"$BIN\" train --device $DEV --models v10 --n-embed 200000 --no-plot \
    --data reference/excerpt.txt --out $OUT/too-big 2>&1); rc=\$?; echo \"\$out\"; \
    [ \$rc = 1 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'error: v10 at these sizes needs about'"
fi

FAST_OK=0
if wants parity; then
  phase parity-faithful "$BIN" parity --device "$DEV" --impl faithful
  phase parity-fast "$BIN" parity --device "$DEV" --impl fast && FAST_OK=1
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
  phase rng-recorded bash -c "grep -q '\"threads\"' $RNG_DIR/v10-straight/run.json && grep -q '\"libtorch\": \"2.11.0\"' $RNG_DIR/v10-straight/run.json \
    && grep -q '\"device\": \"$DEV\"' $RNG_DIR/v10-straight/v10.json && cat $RNG_DIR/v10-straight/run.json"
fi

if wants bench; then
  # The first precision gets two interleaved rounds and the torch.compile column, the
  # other one round: what fits the call.
  EXTRA=("${BENCH_FIRST[@]}")
  for p in $PRECISIONS; do
    phase "bench-$p" "$PY" scripts/bench.py --device "$DEV" --precision "$p" "${BENCH_ARGS[@]}" "${EXTRA[@]}" \
      --python "$PY" --out "$OUT/bench-$DEV-$p.csv"
    EXTRA=("${BENCH_OTHER[@]}")
  done
fi

# The run folder, packed into one file under the 16 MiB a returned file may have: CSVs,
# summaries, samples, plots and the models' JSON, no weights (the results are the losses
# and samples), and a resume checkpoint only where it is small enough to travel (up to
# V6 at the blog sizes; a larger model cut off mid-way restarts in the next call).
pack_run() {
  local dir=$1
  [ -d "$dir" ] || return 0
  (cd "$(dirname "$dir")" && find "$(basename "$dir")" -type f \( ! -name '*.safetensors' -o \( -name '*.resume.safetensors' -size -12M \) \) ! -name '.*' -print0 \
    | tar -czf - --null -T -) >"$OUT/blog-run.tar.gz.tmp" && mv "$OUT/blog-run.tar.gz.tmp" "$OUT/blog-run.tar.gz"
}

if wants run; then
  RUN_DIR=${GPU_CHECKS_RUN_DIR:-target/gpu-blog-run}
  if [ -n "${GPU_CHECKS_RESUME_TAR:-}" ]; then
    # The tar holds the folder under its own name, as pack_run wrote it.
    rm -rf "$RUN_DIR" && mkdir -p "$(dirname "$RUN_DIR")" && tar -xzf "$GPU_CHECKS_RESUME_TAR" -C "$(dirname "$RUN_DIR")"
    TRAIN=("$BIN" train --resume "$RUN_DIR")
  else
    rm -rf "$RUN_DIR"
    # The fast path where it passed parity on this device, else the faithful one.
    IMPL=faithful
    if [ "$FAST_OK" = 1 ] || ! wants parity; then IMPL=fast; fi
    TRAIN=("$BIN" train "${RUN_ARGS[@]}" --device "$DEV" --impl "$IMPL" --out "$RUN_DIR")
  fi
  # What is left of the call (less 20 s to pack), unless GPU_CHECKS_RUN_BUDGET_S says.
  BUDGET=${GPU_CHECKS_RUN_BUDGET_S:-$(( CALL_BUDGET_S - $(elapsed) - 20 ))}
  if [ -z "${GPU_CHECKS_RUN_BUDGET_S:-}" ] && [ "$BUDGET" -lt 30 ]; then
    echo "run: only $BUDGET s left in this call; run it in a call of its own (GPU_CHECKS_PHASES=run)" >>"$SUMMARY"
  else
    # Refresh the packed folder every minute while training, so a cut-off call still returns it.
    ( while sleep 60; do pack_run "$RUN_DIR"; done ) </dev/null >/dev/null 2>&1 &
    PACKER=$!
    # SIGINT at the budget: chargpt writes its checkpoint and exits 130 (resumable).
    # --foreground: one SIGINT to chargpt only. Without it, timeout also signals its
    # process group, and a second SIGINT is chargpt's "exit now" (code 1, no checkpoint).
    phase train timeout --foreground --preserve-status -s INT -k 30 "$BUDGET" "${TRAIN[@]}"
    pkill -P "$PACKER" 2>/dev/null; kill "$PACKER" 2>/dev/null; wait "$PACKER" 2>/dev/null
    pack_run "$RUN_DIR"
  fi
fi
echo "done in $(elapsed) s" >>"$SUMMARY"
cat "$SUMMARY"
