#!/usr/bin/env python3
"""Reference implementation of the Chinchilla approach-3 fit with scipy
(benchmark-only; algoprog itself does not need Python).

Procedure (Hoffmann et al. 2022; Besiroglu et al. 2024 replication):
  log L_hat = logsumexp(a - alpha*log N, b - beta*log D, e)
  objective  = sum_i huber(delta, log L_hat_i - log L_i), delta = 1e-3
  minimiser  = scipy.optimize.minimize(method="L-BFGS-B"), numeric gradients,
               default tolerances, from every start of the grid
               alpha, beta in {0,.5,...,2}, e in {-1,-.5,...,1}, a, b in {0,5,...,25}.

Usage:
  python3 bench/chinchilla_fit_scipy.py --generate bench/data/chinchilla_240.csv
  python3 bench/chinchilla_fit_scipy.py bench/data/chinchilla_240.csv [--stride K] [--bootstrap R]

--stride K runs every K-th start of the grid (in grid order) and extrapolates
the time of the full grid linearly; the printed optimum is then the best of
that subset. --bootstrap R times R bootstrap refits (points resampled with a
fixed seed) started from the full-data optimum, as algoprog's `warm`
bootstrap does, and prints the 90% percentile intervals.
"""
import argparse
import csv
import itertools
import math
import random
import sys
import time

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def generate(path):
    """240 points: 12 model sizes x 20 checkpoints, Chinchilla's published law,
    log-normal noise (sigma 0.01) and 3 outliers (+15% loss). Deterministic."""
    rng = random.Random(20240601)
    sizes = [1e7 * (200.0 ** (i / 11)) for i in range(12)]
    outliers = {(3, 7), (8, 15), (10, 2)}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "params", "step", "tokens", "flops", "loss"])
        for i, n in enumerate(sizes):
            for j in range(20):
                d = 4.0 * n * (25.0 ** (j / 19))  # 4N .. 100N tokens
                l = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
                l *= math.exp(rng.gauss(0.0, 0.01))
                if (i, j) in outliers:
                    l *= 1.15
                w.writerow([f"n{i}", f"{n:.6e}", (j + 1) * 100, f"{d:.6e}", f"{6 * n * d:.6e}", f"{l:.6f}"])


def load(path):
    import numpy as np

    n, d, l = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            n.append(float(row["params"]))
            d.append(float(row["tokens"]))
            l.append(float(row["loss"]))
    return np.log(np.array(n)), np.log(np.array(d)), np.log(np.array(l))


def grid():
    alphas = [0.0, 0.5, 1.0, 1.5, 2.0]
    es = [-1.0, -0.5, 0.0, 0.5, 1.0]
    abs_ = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    # same order as algoprog: alpha outermost, then beta, e, a, b; theta = (a, b, e, alpha, beta)
    return [(a, b, e, al, be) for al, be, e, a, b in itertools.product(alphas, alphas, es, abs_, abs_)]


def make_objective(ln, ld, ll, delta):
    import numpy as np
    from scipy.special import huber, logsumexp

    def obj(t):
        a, b, e, alpha, beta = t
        pred = logsumexp(np.stack([a - alpha * ln, b - beta * ld, np.full_like(ln, e)]), axis=0)
        return np.sum(huber(delta, pred - ll))

    return obj


def fit(obj, starts):
    from scipy.optimize import minimize

    best = None
    for s in starts:
        r = minimize(obj, list(s), method="L-BFGS-B")
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    return best


def main():
    global np
    import numpy as np

    p = argparse.ArgumentParser()
    p.add_argument("csv", nargs="?")
    p.add_argument("--generate")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--delta", type=float, default=1e-3)
    p.add_argument("--bootstrap", type=int, default=0)
    args = p.parse_args()
    if args.generate:
        generate(args.generate)
        print(f"wrote {args.generate}")
        return
    ln, ld, ll = load(args.csv)
    obj = make_objective(ln, ld, ll, args.delta)
    starts = grid()[:: args.stride]
    t0 = time.perf_counter()
    best = fit(obj, starts)
    dt = time.perf_counter() - t0
    full = dt * len(grid()) / len(starts)
    a, b, e, alpha, beta = best.x
    print(f"points: {len(ll)}  starts run: {len(starts)} of {len(grid())}")
    print(f"time: {dt:.1f} s" + (f"  (full grid extrapolated: {full:.0f} s)" if args.stride > 1 else ""))
    print(f"objective: {best.fun:.10e}")
    print(f"theta (a, b, e, alpha, beta): {a:.6f} {b:.6f} {e:.6f} {alpha:.6f} {beta:.6f}")
    print(f"law: E={math.exp(e):.5f} A={math.exp(a):.4f} B={math.exp(b):.4f} alpha={alpha:.5f} beta={beta:.5f}")
    if args.bootstrap:
        rng = np.random.default_rng(0)
        samples = []
        t0 = time.perf_counter()
        for _ in range(args.bootstrap):
            idx = rng.integers(0, len(ll), len(ll))
            o = make_objective(ln[idx], ld[idx], ll[idx], args.delta)
            r = fit(o, [tuple(best.x)])
            samples.append(r.x)
        dt = time.perf_counter() - t0
        s = np.array(samples)
        print(f"bootstrap: {args.bootstrap} refits (warm start) in {dt:.1f} s")
        names = ["a", "b", "e", "alpha", "beta"]
        for k, name in enumerate(names):
            lo, hi = np.percentile(s[:, k], [5, 95])
            print(f"  {name}: [{lo:.4f}, {hi:.4f}]")


if __name__ == "__main__":
    sys.exit(main())
