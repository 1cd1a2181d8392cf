# The two commands a new user needs: `make train` and `make test`.
# Each does its own set-up (a project-local .venv with torch==2.11.0, the default
# corpus, the build), idempotently and only once.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
CORPUS  := data/shakespeare.txt
BIN     := target/release/chargpt
ARGS    ?=

.PHONY: all setup data build train test reference bench clean-runs mutants gpu-dry gpu-checks

all: build

$(STAMP): scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
	ln -sfn "$$($(PY) -c 'import torch, os; print(os.path.dirname(torch.__file__))')" $(VENV)/libtorch
	touch $@

setup: $(STAMP)

$(CORPUS): $(STAMP) scripts/make_corpus.py data/shakespeare.sha256
	$(PY) scripts/make_corpus.py

data: $(CORPUS)

build: $(STAMP)
	cargo build --release

train: build $(CORPUS)
	$(BIN) train $(ARGS)

# No test reads the corpus, so `make test` does not download it. The checks are as strict as
# the code: formatting, clippy with warnings as errors, the benches built, then the tests,
# with the test hooks (src/test_hooks.rs) that the end-to-end tests stop runs with.
test: build
	cargo fmt --check
	cargo clippy --release --all-targets --features test-hooks -- -D warnings
	cargo bench --no-run
	cargo test --release --features test-hooks -- --test-threads 2

reference: $(STAMP)
	$(PY) scripts/dump_reference.py

# chargpt (faithful, fast) and PyTorch eager side by side, and bf16 autocast of the fast path
# and of PyTorch for V5, V8, V10 -> bench.csv; the same beside a busy process and beside a
# copy of themselves -> bench-contention.csv; then criterion's own statistics -> criterion.txt.
# All into a new folder runs/bench-<date-time>/: committed results (results/) change only by
# a deliberate copy. BENCH_ARGS="--device cuda" on a GPU (no contention part there).
BENCH_DIR := runs/bench-$(shell date -u +%Y-%m-%d-%H%M%S)
bench: build
	mkdir -p $(BENCH_DIR)
	$(PY) scripts/bench.py --bf16-models v5,v8,v10 --out $(BENCH_DIR)/bench.csv $(BENCH_ARGS)
	case "$(BENCH_ARGS)" in *cuda*) ;; *) $(PY) scripts/bench.py --contention --out $(BENCH_DIR)/bench-contention.csv ;; esac
	cargo bench --bench step 2>&1 | tee $(BENCH_DIR)/criterion.txt
	@echo "make bench: results in $(BENCH_DIR) (copy them into results/ to commit them)"

# The mutation table (results/mutants.md): each spec detail changed, and the tests that notice.
mutants: build
	python3 scripts/mutants.py

# The GPU checks, on a machine with an NVIDIA GPU, PyTorch 2.11 in its python3, and this
# repository with target/release/chargpt and the corpus in place (scripts/gpu_checks.sh).
gpu-checks:
	bash scripts/gpu_checks.sh

# scripts/gpu_checks.sh rehearsed on the CPU (tests/gpu_checks.rs runs the same in `make test`).
gpu-dry: build
	GPU_CHECKS_DRY=1 OUT=target/gpu-dry bash scripts/gpu_checks.sh
