"""An independent PyTorch implementation of docs/MODELS.md: the ten models with
module names that give exactly its state-dict keys, get_batch, the blog's evaluation
and training loop, and generation. Plain PyTorch (plus safetensors for checkpoints, and Hugging Face's tokenizers for a BPE
run's tokenizer.json).

    python scripts/reference.py train --model v10 --seed 1337 --data data/shakespeare.txt ...
    python scripts/reference.py train --preset cpu --model v1,v2 --seeds 1337,1338 --csv OUT.csv ...
    python scripts/reference.py eval --checkpoint RUN/v10.safetensors --data data/shakespeare.txt
    python scripts/reference.py export --model v10 --seed 1 --vocab-from data.txt --out DIR
    python scripts/reference.py batches --data data.txt --seed 1337 --count 3 --batch-size 4 --block-size 8
    python scripts/reference.py train --tokenizer-json RUN/tokenizer.json --model v5 ...   (a BPE run)
    python scripts/reference.py encode --tokenizer-json RUN/tokenizer.json --data text.txt

Its printed lines use the same format as `chargpt train`, so the two can be diffed.
"""
import os

# As chargpt (src/arithmetic.rs): MKL's strict reproducibility mode, set before torch loads
# MKL, so that the thread count does not change the numbers and both sides compute alike.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import argparse
import json
import math
import pathlib
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- data


def load_text(path):
    # newline="": the bytes as they are (read_text would turn CRLF into LF; chargpt keeps it).
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


class Vocab:
    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @staticmethod
    def from_text(text):
        return Vocab(sorted(set(text)))

    def encode(self, s):
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def pieces(self):
        return lambda t: self.chars[t]

    def __len__(self):
        return len(self.chars)


def split_text(text):
    """A BPE run's split: at 90% of the text's characters, each part encoded on its own."""
    n = int(0.9 * len(text))
    return text[:n], text[n:]


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: each byte as a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Bpe:
    """A run's byte-level BPE (its tokenizer.json), through Python's tokenizers."""

    def __init__(self, path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        self.token_bytes = [bytes(byte_of[c] for c in self.tok.id_to_token(i)) for i in range(self.tok.get_vocab_size())]

    def __len__(self):
        return self.tok.get_vocab_size()

    def encode(self, s):
        return self.tok.encode(s).ids

    def decode(self, ids):
        return self.tok.decode(ids)

    def pieces(self):
        """Token -> the text it completes: characters once their bytes are whole."""
        import codecs

        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda t: dec.decode(self.token_bytes[t])


def encoded_splits(tokenizer, text):
    """(train, val) tokens: the blog's split of the characters' tokens, or a BPE's split of the text."""
    if isinstance(tokenizer, Vocab):
        return split(tokenizer.encode(text))
    a, b = split_text(text)
    return torch.tensor(tokenizer.encode(a), dtype=torch.long), torch.tensor(tokenizer.encode(b), dtype=torch.long)


def split(tokens):
    data = torch.tensor(tokens, dtype=torch.long)
    n = int(0.9 * len(data))
    return data[:n], data[n:]


def batch_indices(data, batch_size, block_size):
    # The blog's draw: no device argument, so the CPU generator wherever the data lives.
    return torch.randint(len(data) - block_size, (batch_size,))


def get_batch(data, batch_size, block_size, device="cpu"):
    ix = batch_indices(data, batch_size, block_size)
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
    return x.to(device), y.to(device)


# ---------------------------------------------------------------- layers


class LayerNorm(nn.Module):
    """The blog's LayerNorm: unbiased std, eps added to the std."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.gamma * (x - mean) / (std + self.eps) + self.beta


class Head(nn.Module):
    def __init__(self, n_in, n_out, block_size, dropout=None):
        super().__init__()
        self.key = nn.Linear(n_in, n_out, bias=False)
        self.query = nn.Linear(n_in, n_out, bias=False)
        self.value = nn.Linear(n_in, n_out, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout) if dropout is not None else None

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        q = self.query(x)
        v = self.value(x)
        w = q @ k.transpose(-2, -1) * C ** -0.5  # scaled by the input width
        w = w.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        w = F.softmax(w, dim=-1)
        if self.dropout is not None:
            w = self.dropout(w)
        return w @ v


class MultiHead(nn.Module):
    """variant: 'noproj', 'proj' or 'dropout'."""

    def __init__(self, n_embed, num_heads, block_size, variant, dropout=0.0):
        super().__init__()
        head_size = n_embed // num_heads
        p = dropout if variant == "dropout" else None
        self.heads = nn.ModuleList([Head(n_embed, head_size, block_size, p) for _ in range(num_heads)])
        width = head_size * num_heads
        self.proj = nn.Linear(width, width) if variant != "noproj" else None
        self.dropout = nn.Dropout(dropout) if variant == "dropout" else None

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        if self.proj is not None:
            out = self.proj(out)
        if self.dropout is not None:
            out = self.dropout(out)
        return out


class FeedForward(nn.Module):
    """kind 1: Linear(C,C)+ReLU; 2: Linear(C,4C)+ReLU+Linear(4C,C); 3: 2 + Dropout."""

    def __init__(self, n_embed, kind, dropout=0.0):
        super().__init__()
        if kind == 1:
            self.ff = nn.Sequential(nn.Linear(n_embed, n_embed), nn.ReLU())
        else:
            layers = [nn.Linear(n_embed, 4 * n_embed), nn.ReLU(), nn.Linear(4 * n_embed, n_embed)]
            if kind == 3:
                layers.append(nn.Dropout(dropout))
            self.ff = nn.Sequential(*layers)

    def forward(self, x):
        return self.ff(x)


class Block(nn.Module):
    """kind 1: no residual; 2: residual + proj; 3: pre-LayerNorm; 4: 3 + dropout."""

    def __init__(self, cfg, kind):
        super().__init__()
        C, H, T, p = cfg["n_embed"], cfg["num_heads"], cfg["block_size"], cfg["dropout"]
        variant = {1: "noproj", 2: "proj", 3: "proj", 4: "dropout"}[kind]
        self.kind = kind
        self.self_attention = MultiHead(C, H, T, variant, p)
        self.ff = FeedForward(C, {1: 1, 2: 2, 3: 2, 4: 3}[kind], p)
        if kind >= 3:
            self.norm_self_attention = LayerNorm(C)
            self.norm_ff = LayerNorm(C)

    def forward(self, x):
        if self.kind == 1:
            return self.ff(self.self_attention(x))
        if self.kind == 2:
            x = x + self.self_attention(x)
            return x + self.ff(x)
        x = x + self.self_attention(self.norm_self_attention(x))
        return x + self.ff(self.norm_ff(x))


# ---------------------------------------------------------------- the ten models


class LM(nn.Module):
    def loss(self, logits, targets):
        B, T, V = logits.shape
        return F.cross_entropy(logits.view(B * T, V), targets.view(B * T))

    def forward(self, idx, targets=None):
        logits = self.logits(idx)
        return logits, (None if targets is None else self.loss(logits, targets))

    def tok_pos(self, idx):
        T = idx.shape[1]
        return self.embedding(idx) + self.positional_embedding(torch.arange(T, device=idx.device))


class V1(LM):
    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg["vocab_size"], cfg["vocab_size"])

    def logits(self, idx):
        return self.embedding(idx)


class V2(LM):
    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg["vocab_size"], cfg["n_embed"])
        self.fc = nn.Linear(cfg["n_embed"], cfg["vocab_size"])

    def logits(self, idx):
        return self.fc(self.embedding(idx))


class V3(LM):
    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg["vocab_size"], cfg["n_embed"])
        self.positional_embedding = nn.Embedding(cfg["block_size"], cfg["n_embed"])
        self.fc = nn.Linear(cfg["n_embed"], cfg["vocab_size"])

    def logits(self, idx):
        return self.fc(self.tok_pos(idx))


class V4(V3):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.self_attention = Head(cfg["n_embed"], cfg["n_embed"], cfg["block_size"])

    def logits(self, idx):
        return self.fc(self.self_attention(self.tok_pos(idx)))


class V5(V3):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.self_attention = MultiHead(cfg["n_embed"], cfg["num_heads"], cfg["block_size"], "proj")

    def logits(self, idx):
        return self.fc(self.self_attention(self.tok_pos(idx)))


class V6(V5):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ff = FeedForward(cfg["n_embed"], 1)

    def logits(self, idx):
        return self.fc(self.ff(self.self_attention(self.tok_pos(idx))))


class Stack(V3):
    """V7..V10: fc(blocks(tok + pos)) (V10: with norm_blocks) and an unused top-level ff."""

    def __init__(self, cfg, version):
        super().__init__(cfg)
        C = cfg["n_embed"]
        if version == 7:
            self.blocks = nn.Sequential(*[Block(cfg, 1) for _ in range(3)])
        elif version == 8:
            self.blocks = nn.Sequential(*[Block(cfg, 2) for _ in range(3)])
        elif version == 9:
            self.blocks = nn.Sequential(*[Block(cfg, 3) for _ in range(3)], LayerNorm(C))
        else:
            self.blocks = nn.Sequential(*[Block(cfg, 4) for _ in range(cfg["block_layers"])])
            self.norm_blocks = LayerNorm(C)
        self.ff = FeedForward(C, 1)  # built, counted and optimised, never used
        self.version = version

    def logits(self, idx):
        x = self.blocks(self.tok_pos(idx))
        if self.version == 10:
            x = self.norm_blocks(x)
        return self.fc(x)


def build(name, cfg):
    n = int(name.lower().lstrip("v"))
    return {1: V1, 2: V2, 3: V3, 4: V4, 5: V5, 6: V6}[n](cfg) if n <= 6 else Stack(cfg, n)


# ---------------------------------------------------------------- training and sampling


@torch.no_grad()
def estimate_loss(model, train, val, batch_size, block_size, eval_steps, device="cpu"):
    model.eval()
    out = []
    for data in (train, val):
        losses = [model(*get_batch(data, batch_size, block_size, device))[1].item() for _ in range(eval_steps)]
        out.append(sum(losses) / len(losses))
    model.train()
    return out


@torch.no_grad()
def generate(model, idx, n, block_size, position_free, greedy=False):
    model.eval()
    out = []
    for _ in range(n):
        ctx = idx if position_free else idx[:, -block_size:]
        logits, _ = model(ctx)
        last = logits[:, -1, :]
        nxt = last.argmax(-1, keepdim=True) if greedy else torch.multinomial(F.softmax(last, dim=-1), num_samples=1)
        idx = torch.cat((idx, nxt), dim=1)
        out.append(nxt.item())
    return out


def train_run(name, cfg, train, val, seed, batch_size, lr, steps, eval_every, eval_steps, gen_chars,
              device="cpu", log=print, piece_of=None):
    """The blog's run from manual_seed(seed): build, train, evaluate, generate."""
    torch.manual_seed(seed)
    model = build(name, cfg).to(device)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses, evals = [], []
    model.train()
    for step in range(steps):
        x, y = get_batch(train, batch_size, cfg["block_size"], device)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % eval_every == 0 and step >= eval_every:
            t, v = estimate_loss(model, train, val, batch_size, cfg["block_size"], eval_steps, device)
            evals.append((step, t, v))
            log(f"{name} step {step}: train loss {t:.4f}, val loss {v:.4f}")
    start = torch.ones((1, 1), dtype=torch.long, device=device)
    if piece_of is None:
        tokens = generate(model, start, gen_chars, cfg["block_size"], name in ("v1", "v2"))
        return model, init, losses, evals, tokens
    return model, init, losses, evals, generate_text(model, start, gen_chars, cfg["block_size"], name in ("v1", "v2"), piece_of)


@torch.no_grad()
def generate_text(model, idx, chars, block_size, position_free, piece_of):
    """Draws until the tokens decode to `chars` characters (cut there), one multinomial each."""
    model.eval()
    out = ""
    while len(out) < chars:
        ctx = idx if position_free else idx[:, -block_size:]
        logits, _ = model(ctx)
        nxt = torch.multinomial(F.softmax(logits[:, -1, :], dim=-1), num_samples=1)
        idx = torch.cat((idx, nxt), dim=1)
        out += piece_of(nxt.item())
    return out[:chars]


# ---------------------------------------------------------------- checkpoints


def load_checkpoint(path):
    from safetensors.torch import load_file

    path = pathlib.Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    model = build(info["model"], info["config"])
    model.load_state_dict(load_file(str(path)), strict=True)
    return model, info


def save_checkpoint(model, name, cfg, vocab, out_dir):
    from safetensors.torch import save_file

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}.safetensors"), metadata={"format": "pt", "model": name})
    info = {"model": name, "config": cfg, "vocab": "".join(vocab.chars), "steps_done": 0,
            "finished": True, "chargpt_version": "reference"}
    (out / f"{name}.json").write_text(json.dumps(info, indent=2))


@torch.no_grad()
def deterministic_loss(model, data, block_size):
    """Mean loss over consecutive non-overlapping windows (the last, shorter one included)."""
    model.eval()
    total, count, n = 0.0, 0, len(data)
    for start in range(0, n - 1, block_size):
        end = min(start + block_size, n - 1)
        x = data[start:end].view(1, -1)
        y = data[start + 1:end + 1].view(1, -1)
        logits, _ = model(x)
        total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="sum").item()
        count += y.numel()
    return total / count


# ---------------------------------------------------------------- command line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="the blog's run for each model (and seed), printing chargpt's lines")
    t.add_argument("--model", required=True, help="a model, or a comma-separated list (v1,v4,v10)")
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--seeds", help="comma-separated seeds: each model once per seed (as chargpt train --seeds)")
    t.add_argument("--data", required=True)
    # Defaults: a preset (blog unless --preset), from the file chargpt reads its presets from.
    presets = json.loads((pathlib.Path(__file__).resolve().parent.parent / "src" / "presets.json").read_text())
    t.add_argument("--preset", choices=[k for k in presets if k != "about"], default="blog")
    for flag, typ in [("batch-size", int), ("block-size", int), ("n-embed", int), ("num-heads", int), ("block-layers", int),
                      ("dropout", float), ("lr", float), ("steps", int), ("eval-every", int), ("eval-steps", int),
                      ("generate-chars", int)]:
        t.add_argument(f"--{flag}", type=typ, default=None, help="default: the preset's")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--csv", help="append model,seed,final_loss_step,final_train_loss,final_val_loss rows here")
    t.add_argument("--tokenizer-json", help="a BPE run's tokenizer.json (default: the text's characters)")
    e = sub.add_parser("eval", help="deterministic loss of a checkpoint (as `chargpt eval`)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--train", action="store_true")
    x = sub.add_parser("export", help="build a model from a seed and save it as a chargpt checkpoint")
    x.add_argument("--model", required=True)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--data", required=True)
    x.add_argument("--out", required=True)
    for flag, default in [("n-embed", 32), ("num-heads", 4), ("block-size", 16), ("block-layers", 2)]:
        x.add_argument(f"--{flag}", type=int, default=default)
    b = sub.add_parser("batches", help="the start indices of --count get_batch draws after manual_seed(--seed), a line each")
    b.add_argument("--data", required=True)
    b.add_argument("--seed", type=int, default=1337)
    b.add_argument("--count", type=int, default=3)
    b.add_argument("--batch-size", type=int, default=4)
    b.add_argument("--block-size", type=int, default=8)
    b.add_argument("--split", choices=["train", "val"], default="train")
    c = sub.add_parser("encode", help="the token ids of --data's text with a tokenizer.json, space-separated")
    c.add_argument("--tokenizer-json", required=True)
    c.add_argument("--data", required=True)
    a = ap.parse_args(argv)

    if a.cmd == "train":
        for key, value in presets[a.preset].items():
            if key != "about" and getattr(a, key) is None:
                setattr(a, key, value)
        if a.threads:
            torch.set_num_threads(a.threads)
        text = load_text(a.data)
        vocab = Bpe(a.tokenizer_json) if a.tokenizer_json else Vocab.from_text(text)
        train, val = encoded_splits(vocab, text)
        cfg = dict(vocab_size=len(vocab), n_embed=a.n_embed, num_heads=a.num_heads,
                   block_size=a.block_size, block_layers=a.block_layers, dropout=a.dropout)
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else [a.seed]
        for seed in seeds:
            if a.seeds:
                print(f"=== seed {seed}", flush=True)
            for name in a.model.lower().split(","):
                _, _, _, evals, tokens = train_run(name, cfg, train, val, seed, a.batch_size, a.lr, a.steps,
                                                   a.eval_every, a.eval_steps, a.generate_chars,
                                                   log=lambda s: print(s, flush=True),
                                                   piece_of=vocab.pieces() if a.tokenizer_json else None)
                sample = tokens if a.tokenizer_json else vocab.decode(tokens)
                print(f"--- {name} sample ---\n{sample}\n---", flush=True)
                if a.csv:
                    path = pathlib.Path(a.csv)
                    new_file = not path.exists()
                    with path.open("a") as f:
                        if new_file:
                            f.write("model,seed,final_loss_step,final_train_loss,final_val_loss\n")
                        step, tl, vl = evals[-1]
                        f.write(f"{name},{seed},{step},{tl!r},{vl!r}\n")
    elif a.cmd == "eval":
        model, info = load_checkpoint(a.checkpoint)
        recorded = info.get("tokenizer")
        vocab = Bpe(pathlib.Path(a.checkpoint).parent / recorded["file"]) if recorded else Vocab(info["vocab"])
        train, val = encoded_splits(vocab, load_text(a.data))
        for split_name, data in ([("train", train)] if a.train else []) + [("val", val)]:
            loss = deterministic_loss(model, data, info["config"]["block_size"])
            # Bits per character: the summed loss over the characters the predicted tokens decode to.
            chars = len(vocab.decode(data[1:].tolist()))
            bits = loss * (len(data) - 1) / chars / math.log(2)
            print(f"{info['model']} {split_name} loss {loss:.6f}")
            print(f"{info['model']} {split_name} bits per character {bits:.6f}")
    elif a.cmd == "export":
        vocab = Vocab.from_text(load_text(a.data))
        cfg = dict(vocab_size=len(vocab.chars), n_embed=a.n_embed, num_heads=a.num_heads,
                   block_size=a.block_size, block_layers=a.block_layers, dropout=0.0)
        torch.manual_seed(a.seed)
        save_checkpoint(build(a.model.lower(), cfg), a.model.lower(), cfg, vocab, a.out)
    elif a.cmd == "encode":
        print(" ".join(map(str, Bpe(a.tokenizer_json).encode(load_text(a.data)))))
    elif a.cmd == "batches":
        vocab = Vocab.from_text(load_text(a.data))
        train, val = split(vocab.encode(load_text(a.data)))
        data = train if a.split == "train" else val
        torch.manual_seed(a.seed)
        for _ in range(a.count):
            ix = batch_indices(data, a.batch_size, a.block_size)
            print(" ".join(str(int(i)) for i in ix))


if __name__ == "__main__":
    sys.exit(main())
