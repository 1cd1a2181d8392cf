"""The best-PyTorch side of the bench: the blog's V10 function written the way a PyTorch
expert writes a GPT (nanoGPT's model.py): one Linear for every head's query, key and
value, `scaled_dot_product_attention`, `AdamW(fused=True)` on CUDA, optionally
`torch.compile`. The same function as scripts/reference.py's V10 (the blog's LayerNorm, its
C ** -0.5 score scale, its dropout sites), so `--check` holds its loss at dropout 0 to the
blog's from the same weights (1e-5) on the CPU.

Prints the CSV line format of `chargpt bench` (`--impl` column: pytorch-best or
pytorch-best-compile). Steps are timed ten at a time between two waits for the GPU, and the
loss is not read at every step, as chargpt's trainer and nanoGPT's run them."""
import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

PRESETS = json.loads((pathlib.Path(__file__).resolve().parent.parent / "src" / "presets.json").read_text())


class LayerNorm(ref.LayerNorm):
    """The blog's (unbiased std, eps added to the std), in fewer kernels than reference.py's."""

    def forward(self, x):
        std, mean = torch.std_mean(x, -1, keepdim=True)
        return torch.addcmul(self.beta, self.gamma, (x - mean) / (std + self.eps))


class Attention(nn.Module):
    def __init__(self, C, H, p):
        super().__init__()
        self.H, self.p = H, p
        self.qkv = nn.Linear(C, 3 * C, bias=False)
        self.proj = nn.Linear(C, C)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.H, C // self.H).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=True,
                                           scale=C ** -0.5)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, C, H, p):
        super().__init__()
        self.norm_self_attention, self.norm_ff = LayerNorm(C), LayerNorm(C)
        self.self_attention = Attention(C, H, p)
        self.ff = nn.Sequential(nn.Linear(C, 4 * C), nn.ReLU(), nn.Linear(4 * C, C), nn.Dropout(p))

    def forward(self, x):
        x = x + self.self_attention(self.norm_self_attention(x))
        return x + self.ff(self.norm_ff(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H, p = cfg["n_embed"], cfg["num_heads"], cfg["dropout"]
        self.embedding = nn.Embedding(cfg["vocab_size"], C)
        self.positional_embedding = nn.Embedding(cfg["block_size"], C)
        self.blocks = nn.Sequential(*[Block(C, H, p) for _ in range(cfg["block_layers"])])
        self.norm_blocks = LayerNorm(C)
        self.fc = nn.Linear(C, cfg["vocab_size"])

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.embedding(idx) + self.positional_embedding(torch.arange(T, device=idx.device))
        logits = self.fc(self.norm_blocks(self.blocks(x)))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def from_reference(reference, cfg):
    """A GPT holding reference.py's V10 weights: each layer's per-head query, key and value
    weights stacked into one QKV weight (all queries, then all keys, then all values)."""
    model = GPT(cfg)
    theirs = reference.state_dict()
    mine = {}
    for name in model.state_dict():
        if ".self_attention.qkv." in name:
            layer = name.split(".self_attention")[0]
            heads = range(cfg["num_heads"])
            mine[name] = torch.cat([theirs[f"{layer}.self_attention.heads.{h}.{part}.weight"]
                                    for part in ("query", "key", "value") for h in heads])
        else:
            # The blog's feed-forward layer keeps its Sequential one level down (`ff.ff.0`).
            mine[name] = theirs[name.replace(".ff.", ".ff.ff.")]
    model.load_state_dict(mine)
    return model


def check(a):
    """Loss at dropout 0 from the same weights: the blog's V10 and this one, on the CPU."""
    cfg = dict(vocab_size=65, n_embed=48, num_heads=6, block_size=32, block_layers=3, dropout=0.0)
    torch.manual_seed(1)
    reference = ref.build("v10", cfg)
    best = from_reference(reference, cfg)
    x = torch.randint(65, (4, 32))
    y = torch.randint(65, (4, 32))
    _, theirs = reference(x, y)
    mine = best(x, y)
    diff = abs(mine.item() - theirs.item())
    print(f"best-PyTorch V10 loss {mine.item():.7f}, the blog's {theirs.item():.7f}: difference {diff:.2e}")
    if not diff <= 1e-5:
        sys.exit(f"the best-PyTorch V10 is not the blog's function: loss differs by {diff:.2e} (> 1e-5)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="v10", help="only v10 is written this way")
    ap.add_argument("--config", default="blog")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--generate-chars", type=int, default=0, help="accepted for bench.py; no generation here")
    ap.add_argument("--check", action="store_true", help="only check the function against the blog's V10")
    a = ap.parse_args()
    if a.check:
        return check(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    precision = a.precision or ("tf32" if cuda else "fp32")
    torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    autocast = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    p = PRESETS[a.config]
    cfg = dict(vocab_size=84, **{k: p[k] for k in ("n_embed", "num_heads", "block_size", "block_layers", "dropout")})
    batch = p["batch_size"]
    print("model,impl,parameters,ms_per_step,flops_per_step,gen_chars_per_s,threads,device,precision")
    for name in a.models.split(","):
        if name != "v10":
            sys.exit(f"{name}: the best-PyTorch side is V10 only")
        torch.manual_seed(0)
        model = GPT(cfg).to(a.device)
        run = torch.compile(model) if a.compile else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
        x = torch.randint(84, (batch, cfg["block_size"]), device=a.device)
        y = torch.randint(84, (batch, cfg["block_size"]), device=a.device)
        model.train()

        def step():
            with autocast:
                loss = run(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        for _ in range(3):
            step()
        group = 10 if cuda else 1
        times, start = [], time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < a.budget_s:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(group):
                loss = step()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / group)
            if len(times) >= 1000:
                break
        if not math.isfinite(loss.item()):
            sys.exit("the best-PyTorch side's loss is not finite")
        params = sum(q.numel() for q in model.parameters())
        impl = "pytorch-best-compile" if a.compile else "pytorch-best"
        print(f"{name},{impl},{params},{statistics.median(times) * 1e3:.4f},,nan,{torch.get_num_threads()},{a.device},{precision}",
              flush=True)


if __name__ == "__main__":
    main()
