"""PyTorch reference for crates/algoprog-train/benches/throughput.rs.

Trains the same models as the Rust throughput benchmark, with the same
names, shapes and parameter counts, and reports tokens/s, GFLOP/s, MFU
against a torch 2048^3 f32 matmul and peak resident memory:

- modern-dD-VOCAB: rotary (rotate-half layout, base 10000, head dim 16),
  SwiGLU with hidden 4d (gate, up, out; biases), pre-RMSNorm (eps 1e-5) and
  a final RMSNorm.
- retro-dD-VOCAB: token embeddings scaled by sqrt(d) plus the sinusoidal
  table (sin on even, cos on odd features), exact-GeLU MLP 4d (biases),
  post-RMSNorm blocks (eps 1e-5) and a final LayerNorm (the study preset
  `retro`, the authors' runs).
  Both: depth max(1, d/16), fused QKV projection (3d, d) with bias, output
  projection with bias, causal attention (scaled_dot_product_attention),
  tied embeddings (the output layer is the embedding table) with a trained
  output bias, N(0, 0.02) init with output projections N(0, 0.02/sqrt(2L)),
  zero biases.
- lstm-dD-VOCAB: the study preset `lstm` through bench/lstm_torch.py: one
  layer, no LayerNorm, TBPTT 32 within each sequence, dropout 0, one
  trainable bias per gate, a trained output bias.

VOCAB is gpt2 (50257 ids) or bpe4096 (4096), batch 32 x 128 tokens. The
study-scale rows use the 512-id BPE: quick-PRESET-dD (sequences of 64,
batch 16; the `quick` study's shapes) and laptop-PRESET-dD (sequences of 128,
batch 16). Random tokens (the speed does not depend on them), f32. One step
is forward, cross-entropy against the tied output layer, backward, clip_grad_norm_(1.0),
AdamW (lr 1e-3, weight decay 0.01 on every parameter, as algoprog's default
decay mask). Median step time over the timed steps after the warm-up step(s).

    pip install torch        # a benchmark dependency only, never a test one
    python bench/transformer_torch.py [FILTER] [--steps 5] [--threads N]
                                      [--compile] [--json]

Every model runs in its own child process, so ru_maxrss is that model's peak
(the torch runtime included). With --compile the forward and loss go
through torch.compile (inductor); its first step compiles and is not timed;
if compiling fails the model is timed eagerly and the result says so
(`compile_ok: false`). --threads defaults to all cores.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lstm_torch import LstmLM  # noqa: E402

HEAD_DIM, STD, MAX_SEQ = 16, 0.02, 128
VOCABS = {"gpt2": 50257, "bpe4096": 4096}
ARCHS = [("modern", 64), ("modern", 128), ("retro", 64), ("retro", 128), ("lstm", 128)]
# Study-scale rows, as in throughput.rs: (prefix, seq, batch, models), the 512-id BPE.
STUDY_ROWS = [
    ("quick", 64, 16, [("modern", 32), ("modern", 48), ("retro", 32), ("retro", 48), ("lstm", 32), ("lstm", 64)]),
    ("laptop", 128, 16, [("modern", 32), ("modern", 80), ("retro", 32), ("retro", 80), ("lstm", 64), ("lstm", 128)]),
]


def benches():
    """name -> (preset, d, vocab size, batch, seq), in run order."""
    out = {f"{p}-d{d}-{v}": (p, d, n, 32, 128) for v, n in VOCABS.items() for p, d in ARCHS}
    for prefix, seq, batch, models in STUDY_ROWS:
        out.update({f"{prefix}-{p}-d{d}": (p, d, 512, batch, seq) for p, d in models})
    return out


def model_names():
    return list(benches())


class Rotary(nn.Module):
    """Rotate-half rotary embedding: [x1 cos - x2 sin, x1 sin + x2 cos]."""

    def __init__(self, head_dim, max_len=MAX_SEQ, base=10000.0):
        super().__init__()
        half = head_dim // 2
        inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
        th = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", th.cos().float(), persistent=False)
        self.register_buffer("sin", th.sin().float(), persistent=False)

    def forward(self, x):  # (b, h, T, hd)
        t, half = x.shape[2], x.shape[3] // 2
        cos, sin = self.cos[:t], self.sin[:t]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, d, rotary):
        super().__init__()
        self.h = d // HEAD_DIM
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.rotary = rotary

    def forward(self, x):
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.h, HEAD_DIM)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class SwiGlu(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gate, self.up, self.out = nn.Linear(d, 4 * d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        return self.out(F.silu(self.gate(x)) * self.up(x))


class GeluMlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        setattr(self, "in", nn.Linear(d, 4 * d))
        self.out = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.out(F.gelu(getattr(self, "in")(x)))


def sinusoidal_table(t, d):
    pos = torch.arange(t, dtype=torch.float64)[:, None]
    i2 = (torch.arange(d) // 2 * 2).to(torch.float64)[None, :]
    angle = pos / 10000.0 ** (i2 / d)
    even = (torch.arange(d) % 2 == 0)[None, :]
    return torch.where(even, angle.sin(), angle.cos()).float()


class Block(nn.Module):
    def __init__(self, d, modern, rotary):
        super().__init__()
        norm = lambda: nn.RMSNorm(d, eps=1e-5)  # noqa: E731 (both presets' blocks)
        self.pre = modern
        self.norm1, self.attn, self.norm2 = norm(), Attention(d, rotary), norm()
        self.mlp = SwiGlu(d) if modern else GeluMlp(d)

    def forward(self, x):
        if self.pre:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class TransformerLM(nn.Module):
    def __init__(self, d, vocab, modern):
        super().__init__()
        n_layers = max(1, d // 16)
        self.d, self.modern = d, modern
        self.embed = nn.Embedding(vocab, d)
        rotary = Rotary(HEAD_DIM) if modern else None
        self.blocks = nn.ModuleList(Block(d, modern, rotary) for _ in range(n_layers))
        self.final_norm = nn.RMSNorm(d, eps=1e-5) if modern else nn.LayerNorm(d, eps=1e-5)
        self.out_bias = nn.Parameter(torch.zeros(vocab))
        if not modern:
            self.register_buffer("pe", sinusoidal_table(MAX_SEQ, d), persistent=False)
        for name, p in self.named_parameters():
            if "norm" in name:
                continue  # gains 1, shifts 0 (the norms' own init)
            if name.endswith("bias"):  # out_bias included
                nn.init.zeros_(p)
            elif name.endswith("out.weight"):
                nn.init.normal_(p, std=STD / math.sqrt(2 * n_layers))
            else:
                nn.init.normal_(p, std=STD)

    def forward(self, tokens):  # (B, T) -> hidden (B, T, d)
        x = self.embed(tokens)
        if not self.modern:
            x = x * math.sqrt(self.d) + self.pe[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.final_norm(x)


def build(name):
    preset, d, v, batch, seq = benches()[name]
    if preset == "lstm":
        model = LstmLM(d, n_layers=1, vocab=v, tbptt=32, layer_norm=False, output_bias=True)
    else:
        model = TransformerLM(d, v, modern=(preset == "modern"))
    return model, preset, d, v, batch, seq


def train_flops_per_token(preset, d, v, t):
    """Training FLOPs per token by algoprog's matmul convention (3 x forward)."""
    if preset == "lstm":  # one layer
        fwd = (2 * d * 4 * d + 2 * d * 4 * d) + 2 * d * v
    else:
        ff = 6 * d * 4 * d if preset == "modern" else 4 * d * 4 * d
        fwd = max(1, d // 16) * (8 * d * d + 4 * t * d + ff) + 2 * d * v
    return 3.0 * fwd


def matmul_peak():
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def make_optimizer(params):
    try:  # the fused CPU AdamW kernel when this torch has it
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01), "foreach"


def child(name, steps, compile_):
    torch.manual_seed(0)
    base_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model, preset, d, vocab, batch, seq = build(name)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, opt_kind = make_optimizer(params)

    def loss_fn(inp, tgt):
        h = model(inp)
        return F.cross_entropy(h.reshape(-1, d) @ model.embed.weight.t() + model.out_bias, tgt)

    compile_ok, compile_error = None, None
    fn = loss_fn
    if compile_:
        fn = torch.compile(loss_fn)
        compile_ok = True

    def step(fn):
        data = torch.randint(0, vocab, (batch, seq + 1))
        inp, tgt = data[:, :-1], data[:, 1:].reshape(-1)
        t0 = time.perf_counter()
        loss = fn(inp, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        warm = step(fn)
        if compile_:
            warm = step(fn)  # a second untimed step: guards and any recompilation settle
    except Exception as e:  # noqa: BLE001 - any compile failure falls back to eager
        if not compile_:
            raise
        compile_ok, compile_error = False, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(f"{name}: torch.compile failed ({compile_error}); timing eager instead", file=sys.stderr)
        fn = loss_fn
        warm = step(fn)
    warmup_s = time.perf_counter() - t0
    times = [step(fn) for _ in range(max(1, steps))]
    sec = statistics.median(times)
    n_params = sum(p.numel() for p in params)
    embed = model.embed.weight.numel()
    fpt = train_flops_per_token(preset, d, vocab, seq)
    tps = batch * seq / sec
    print(json.dumps({
        "name": name,
        "impl": "torch-compile" if compile_ else "torch-eager",
        "compile_ok": compile_ok,
        "compile_error": compile_error,
        "params": n_params,
        "non_embedding_params": n_params - embed,
        "vocab": vocab,
        "preset": preset,
        "batch": batch,
        "seq_len": seq,
        "flops_per_token": fpt,
        "tokens_per_s": tps,
        "gflops": tps * fpt / 1e9,
        "step_ms": 1e3 * sec,
        "step_ms_min": 1e3 * min(times),
        "warmup_ms": 1e3 * warmup_s,
        "last_warmup_ms": 1e3 * warm,
        "steps": len(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_rss_mb": base_rss_mb,
        "threads": torch.get_num_threads(),
        "optimizer": opt_kind,
        "torch": torch.__version__,
    }), flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("filter", nargs="?", default=None, help="keep models whose name contains this")
    ap.add_argument("--steps", type=int, default=int(os.environ.get("ALGOPROG_BENCH_STEPS", 5)))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    ap.add_argument("--json", action="store_true", help="one JSON object per line and model")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.steps, args.compile)
        return
    names = [n for n in model_names() if args.filter is None or args.filter in n]
    peak = matmul_peak()
    mode = "torch.compile" if args.compile else "eager"
    header = (f"torch {torch.__version__} ({mode}), CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; "
              f"f32 matmul peak (2048^3) {peak:.1f} GFLOP/s; {args.steps} timed steps (median); "
              f"load average {load_average()}")
    print(header, file=sys.stderr if args.json else sys.stdout, flush=True)
    if not args.json:
        print(f"{'model':<22} {'params':>10} {'tokens/s':>9} {'GFLOP/s':>9} {'ms/step':>8} {'MFU':>6} {'peak MiB':>9}")
    cmd = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--threads", str(args.threads)]
    if args.compile:
        cmd.append("--compile")
    for name in names:
        p = subprocess.run(cmd + ["--child", name], capture_output=True, text=True)
        sys.stderr.write(p.stderr if p.returncode != 0 else "".join(
            line + "\n" for line in p.stderr.splitlines() if "torch.compile failed" in line))
        rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not rows:
            print(f"{name}: child failed (exit {p.returncode})", file=sys.stderr)
            continue
        r = rows[-1]
        r.update(mfu=r["gflops"] / peak, matmul_peak_gflops=peak, load_avg=load_average())
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            note = "" if r["compile_ok"] is not False else "  (compile failed: eager)"
            print(f"{name:<22} {r['params']:>10} {r['tokens_per_s']:>9.0f} {r['gflops']:>9.1f} "
                  f"{r['step_ms']:>8.1f} {100 * r['mfu']:>5.1f}% {r['peak_rss_mb']:>9.0f}{note}", flush=True)


if __name__ == "__main__":
    main()
