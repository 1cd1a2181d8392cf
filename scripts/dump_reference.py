"""Writes reference/: what PyTorch computes for every model V1..V10 at a small
configuration, for the Rust parity tests (`make reference`; deterministic, so running
it twice on one CPU gives byte-identical files; MKL's kernels differ between CPU
generations, so a different CPU may change the last bits).

Per model, reference/<model>.safetensors holds
  init/<key>      the state dict built from manual_seed(seed)
  x, y            one batch; logits_eval (dropout off); logits, loss and grad/<key>
                  from a training-mode forward after manual_seed(dropout_seed)
  adam_x, adam_y  three fixed batches; adam_grad/<i>/<key> the gradients of step i;
                  adam3/<key> the parameters after three AdamW
                  steps on them with dropout disabled
  run/losses, run/evals [step, train, val], run/tokens: the blog's loop from
                  manual_seed(seed) (dropout on): 20 steps, evaluations, 50 characters
and reference/manifest.json the configuration, seeds, tolerances and torch version.
"""
import os

# As chargpt (src/arithmetic.rs): MKL's strict reproducibility mode, set before torch loads
# MKL, so that the thread count does not change the numbers and both sides compute alike.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import hashlib
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "reference"
MODELS = [f"v{i}" for i in range(1, 11)]
CFG = dict(n_embed=32, num_heads=4, block_size=16, block_layers=2, dropout=0.3)
BATCH = 4
RUN = dict(steps=20, eval_every=5, eval_steps=2, generate_chars=50, lr=1e-3)
ADAM_LR = 1e-3
TOL = dict(
    rel=1e-5,
    abs_floor=1e-7,
    run_loss=1e-4,
    adam_end_to_end_rel=1e-4,
    why=("fp32 on the CPU with the very same libtorch on both sides, so differences come only from "
         "operation order; max|a-b| <= rel * max|ref| + abs_floor keeps 5 significant digits of the "
         "tensor's own scale and absorbs last-bit rounding in sums; run losses get 1e-4 because 20 "
         "optimizer steps compound rounding. AdamW fed the reference's own gradients (adam_grad) must "
         "meet rel; three steps end to end (our gradients) get adam_end_to_end_rel, because the first "
         "AdamW steps divide each gradient by its own magnitude, which turns last-bit differences of "
         "near-zero gradients into differences of the update: MKL's matmul kernels differ between CPUs "
         "(AVX2 vs AVX-512), and PyTorch on an AVX-512 CPU lands 1.6 x rel away from this reference "
         "made on an AVX2 one (V8, V9)."),
)


def seed_of(name):
    return 1000 + int(name[1:])


def main():
    torch.set_num_threads(1)  # reduction order independent of the machine
    text = (OUT / "excerpt.txt").read_text(encoding="utf-8")
    vocab = ref.Vocab.from_text(text)
    train, val = ref.split(vocab.encode(text))
    cfg = dict(vocab_size=len(vocab.chars), **CFG)
    files = {}
    for name in MODELS:
        seed = seed_of(name)
        t = {}
        # 4. the same-seed run (its initial weights are also item 1's).
        model, init, losses, evals, tokens = ref.train_run(
            name, cfg, train, val, seed, BATCH, RUN["lr"], RUN["steps"], RUN["eval_every"],
            RUN["eval_steps"], RUN["generate_chars"], log=lambda s: None)
        for k, v in init.items():
            t[f"init/{k}"] = v
        t["run/losses"] = torch.tensor(losses, dtype=torch.float64)
        t["run/evals"] = torch.tensor(evals, dtype=torch.float64).reshape(-1, 3)
        t["run/tokens"] = torch.tensor(tokens, dtype=torch.int64)

        # 2. one batch: logits, loss, every gradient.
        model = ref.build(name, cfg)
        model.load_state_dict(init)
        torch.manual_seed(seed + 100)
        x, y = ref.get_batch(train, BATCH, cfg["block_size"])
        model.eval()
        with torch.no_grad():
            t["logits_eval"], _ = model(x)
        model.train()
        torch.manual_seed(seed + 200)
        logits, loss = model(x, y)
        loss.backward()
        t["x"], t["y"], t["logits"], t["loss"] = x, y, logits.detach(), loss.detach().reshape(1)
        for k, p in model.named_parameters():
            if p.grad is not None:
                t[f"grad/{k}"] = p.grad

        # 3. three AdamW steps on fixed batches, dropout disabled.
        model = ref.build(name, cfg)
        model.load_state_dict(init)
        model.eval()
        opt = torch.optim.AdamW(model.parameters(), lr=ADAM_LR)
        torch.manual_seed(seed + 300)
        batches = [ref.get_batch(train, BATCH, cfg["block_size"]) for _ in range(3)]
        for i, (bx, by) in enumerate(batches):
            _, loss = model(bx, by)
            opt.zero_grad()
            loss.backward()
            for k, p in model.named_parameters():
                if p.grad is not None:
                    t[f"adam_grad/{i}/{k}"] = p.grad.clone()
            opt.step()
        t["adam_x"] = torch.stack([b[0] for b in batches])
        t["adam_y"] = torch.stack([b[1] for b in batches])
        for k, v in model.state_dict().items():
            t[f"adam3/{k}"] = v

        path = OUT / f"{name}.safetensors"
        save_file({k: v.detach().contiguous() for k, v in sorted(t.items())}, str(path))
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = dict(
        torch_version=torch.__version__.split("+")[0],
        text="excerpt.txt",
        config=cfg,
        batch_size=BATCH,
        seeds={n: dict(init_and_run=seed_of(n), dropout_forward=seed_of(n) + 200) for n in MODELS},
        run=RUN,
        adam=dict(lr=ADAM_LR, steps=3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01),
        tolerance=TOL,
        files=files,
    )
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(files)} reference files to {OUT}")


if __name__ == "__main__":
    main()
