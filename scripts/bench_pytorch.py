"""PyTorch eager side of `make bench`: the same training step as `chargpt bench`
(forward, loss, zero_grad, backward, AdamW step, loss.item()) with the reference models,
same configuration, same thread count; prints the same CSV line format."""
import os

# As chargpt (src/arithmetic.rs): MKL's strict reproducibility mode, set before torch loads
# MKL, so that the thread count does not change the numbers and both sides compute alike.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

# The bench configurations are the presets' sizes and batch sizes (src/presets.json, the
# file `chargpt bench --config` reads too).
PRESETS = json.loads((pathlib.Path(__file__).resolve().parent.parent / "src" / "presets.json").read_text())
CONFIGS = {name: (dict((k, p[k]) for k in ("n_embed", "num_heads", "block_size", "block_layers", "dropout")), p["batch_size"])
           for name, p in PRESETS.items() if isinstance(p, dict)}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(f"v{i}" for i in range(1, 11)))
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=3.0)
    ap.add_argument("--generate-chars", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"],
                    help="as chargpt's --precision (default: tf32 on CUDA, fp32 on the CPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (what a PyTorch user reaches for)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    precision = a.precision or ("tf32" if cuda else "fp32")
    if precision == "tf32" and not cuda:
        sys.exit(f"--precision {precision} is for CUDA")
    torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    autocast = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    sizes, batch = CONFIGS[a.config]
    cfg = dict(vocab_size=84, **sizes)
    print("model,impl,parameters,ms_per_step,flops_per_step,gen_chars_per_s,threads,device,precision")
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = ref.build(name, cfg).to(a.device)
        run = torch.compile(model) if a.compile else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(84, (batch, cfg["block_size"]), device=a.device)
        y = torch.randint(84, (batch, cfg["block_size"]), device=a.device)
        model.train()

        def step():
            with autocast:
                _, loss = run(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(3):
            step()
        times, start = [], time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < a.budget_s:
            sync(a.device)
            t0 = time.perf_counter()
            step()
            sync(a.device)
            times.append(time.perf_counter() - t0)
            if len(times) >= 1000:
                break
        gen = float("nan")
        if a.generate_chars:
            start_tok = torch.ones((1, 1), dtype=torch.long, device=a.device)
            ref.generate(model, start_tok, 10, cfg["block_size"], name in ("v1", "v2"))
            t0 = time.perf_counter()
            ref.generate(model, start_tok, a.generate_chars, cfg["block_size"], name in ("v1", "v2"))
            gen = a.generate_chars / (time.perf_counter() - t0)
        params = sum(p.numel() for p in model.parameters())
        impl = "pytorch-compile" if a.compile else "pytorch"
        print(f"{name},{impl},{params},{statistics.median(times) * 1e3:.4f},,{gen:.1f},"
              f"{torch.get_num_threads()},{a.device},{precision}", flush=True)


if __name__ == "__main__":
    main()
