#!/bin/bash
# The signature demonstration: the same seed and flags through chargpt and through the
# PyTorch reference print the same losses and the same sample. Writes results/same-seed/.
set -eu
cd "$(dirname "$0")/.."
FLAGS="--seed 1337 --batch-size 32 --block-size 64 --n-embed 64 --num-heads 4 --block-layers 2 \
  --dropout 0.2 --lr 0.003 --steps 501 --eval-every 100 --eval-steps 10 --generate-chars 200"
OUT=results/same-seed
mkdir -p "$OUT"
tmp=$(mktemp -d)
./target/release/chargpt train --models v10 --data data/shakespeare.txt --out "$tmp/run" --no-plot $FLAGS \
  | grep -v '^chargpt: training\|^results in\|^model \|^v10 \+[0-9]' > "$OUT/chargpt.txt"
.venv/bin/python scripts/reference.py train --model v10 --data data/shakespeare.txt $FLAGS > "$OUT/pytorch.txt"
rm -rf "$tmp"
echo "flags: $FLAGS" > "$OUT/flags.txt"
if diff <(grep -v '^==' "$OUT/chargpt.txt" | sed '/^$/d') <(sed '/^$/d' "$OUT/pytorch.txt") > "$OUT/diff.txt" 2>&1; then
  echo "identical output" | tee -a "$OUT/flags.txt"
else
  echo "outputs differ, see $OUT/diff.txt" | tee -a "$OUT/flags.txt"
fi
