#!/bin/bash
# The GPU checks of the parity and benchmark issues, for a lent GPU machine
# (../shared/GPU.md). Build here first (`cargo build --release`), then run this there
# with the binary carried: carry ["target/release/chargpt"]; it writes into $OUT.
#   run(command="bash scripts/gpu_checks.sh", carry=["target/release/chargpt"])
set -euo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
BIN=target/release/chargpt
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
# 1. CUDA must be seen (else libtorch_cuda was dropped at link time).
$BIN bench --device cuda --matmul-peak --precision fp32 | tee "$OUT/matmul-fp32.txt"
$BIN bench --device cuda --matmul-peak --precision tf32 | tee "$OUT/matmul-tf32.txt"
# 2. Parity on CUDA: forward, backward, AdamW against reference/ (same-seed runs are CPU-only).
$BIN parity --device cuda 2>&1 | tee "$OUT/parity-cuda.txt"
# 3. Benchmarks at the blog configuration: faithful, fast, PyTorch eager side by side.
python3 scripts/bench.py --device cuda --config blog --rounds 3 --budget-s 2 --out "$OUT/bench-cuda.csv" 2>&1 | tee "$OUT/bench-cuda.txt"
for p in tf32 bf16; do
  $BIN bench --device cuda --config blog --models v10 --impl fast --precision $p | tee -a "$OUT/v10-precision.txt"
done
