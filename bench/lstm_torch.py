"""PyTorch reference for crates/algoprog-models/benches/lstm.rs.

Trains the same LSTM language model for a few steps on random tokens and
prints tokens/s: vocabulary 4096 with a tied embedding (Xavier-uniform), a
2-layer LSTM of width d (nn.LSTM one layer at a time with nn.LayerNorm on each
layer's output, the placement algoprog uses), dropout 0, TBPTT 64 within
128-token sequences (state detached between windows), batch 32, AdamW
(lr 1e-3, weight decay 0.01), gradient clip 1.0, f32 on the CPU.

algoprog's LSTM has one bias per gate (4H per layer); nn.LSTM has two
(bias_ih and bias_hh), so bias_hh is kept at zero and frozen: the trainable
parameters, and their count, are algoprog's. `LstmLM` is also used by
bench/transformer_torch.py (the end-to-end comparison, with peak memory).

    pip install torch        # a benchmark dependency only, never a test one
    python bench/lstm_torch.py [--threads N] [--steps 5] [--widths 64 128]

Medians over the timed steps. Set --threads to the thread count the Rust
benchmark used (candle uses all cores unless CANDLE_NUM_THREADS is set).
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, BATCH, SEQ, TBPTT = 4096, 32, 128, 64


class LstmLM(nn.Module):
    """`layer_norm` puts nn.LayerNorm on each layer's output (the papers' Table 3
    setup); `output_bias` adds a trained bias to the tied output layer (the
    study presets); the state is kept across the TBPTT windows of a sequence
    and reset at the next sequence."""

    def __init__(self, d: int, n_layers: int = 2, vocab: int = VOCAB, tbptt: int = TBPTT,
                 layer_norm: bool = True, output_bias: bool = False):
        super().__init__()
        self.tbptt = tbptt
        self.embed = nn.Embedding(vocab, d)
        self.out_bias = nn.Parameter(torch.zeros(vocab)) if output_bias else None
        nn.init.xavier_uniform_(self.embed.weight)
        self.layers = nn.ModuleList(nn.LSTM(d, d, batch_first=False) for _ in range(n_layers))
        self.norms = nn.ModuleList((nn.LayerNorm(d) if layer_norm else nn.Identity()) for _ in range(n_layers))
        for lstm in self.layers:
            nn.init.xavier_uniform_(lstm.weight_ih_l0)
            for g in range(4):  # orthogonal per gate block
                nn.init.orthogonal_(lstm.weight_hh_l0.data[g * d:(g + 1) * d])
            nn.init.zeros_(lstm.bias_ih_l0)
            nn.init.zeros_(lstm.bias_hh_l0)
            lstm.bias_hh_l0.requires_grad_(False)  # one bias per gate, as algoprog
            lstm.bias_ih_l0.data[d:2 * d] = 1.0  # forget gate (PyTorch order i, f, g, o)

    def forward(self, tokens):  # tokens (B, T) -> hidden (B, T, d)
        x = self.embed(tokens).transpose(0, 1)  # (T, B, d)
        states = [None] * len(self.layers)
        outs = []
        for start in range(0, x.shape[0], self.tbptt):
            y = x[start:start + self.tbptt]
            for i, (lstm, norm) in enumerate(zip(self.layers, self.norms)):
                st = None if states[i] is None else tuple(s.detach() for s in states[i])
                y, states[i] = lstm(y, st)
                y = norm(y)
            outs.append(y)
        return torch.cat(outs, 0).transpose(0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          + " ".join(open("/proc/loadavg").read().split()[:3]))
    for d in args.widths:
        model = LstmLM(d)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
        steps, heads = [], []
        for i in range(args.steps + 1):
            data = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
            inp, tgt = data[:, :-1], data[:, 1:].reshape(-1)
            t0 = time.perf_counter()
            h = model(inp)
            loss = F.cross_entropy(h.reshape(-1, d) @ model.embed.weight.t(), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            t1 = time.perf_counter()
            # the output layer and loss alone (forward + backward) from a detached hidden state
            hd = h.detach().requires_grad_()
            t2 = time.perf_counter()
            F.cross_entropy(hd.reshape(-1, d) @ model.embed.weight.detach().t(), tgt).backward()
            t3 = time.perf_counter()
            if i > 0:  # the first step warms up
                steps.append(t1 - t0)
                heads.append(t3 - t2)
        step, head = statistics.median(steps), statistics.median(heads)
        print(f"torch-lstm-d{d:<4} {BATCH * SEQ / step:10.0f} tokens/s {1e3 * step:8.1f} ms/step"
              f" (output layer + loss fwd+bwd {1e3 * head:.1f} ms, the rest {1e3 * (step - head):.1f} ms)")


if __name__ == "__main__":
    main()
