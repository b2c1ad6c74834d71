"""Side-by-side training throughput: algoprog (candle) vs PyTorch eager and torch.compile.

Builds the Rust benchmark (`cargo bench -p algoprog-train --bench throughput
--no-run`, or takes a built binary with --rust-bin), then for each model in
turn runs, with the same thread count and steps:
  1. the Rust benchmark `throughput MODEL --json` (and with ALGOPROG_FUSED=0 under --unfused),
  2. bench/transformer_torch.py MODEL --json (eager),
  3. bench/transformer_torch.py MODEL --json --compile (unless --no-compile),
and prints a markdown table (see bench/README.md for the columns). Running
one model through every implementation before the next keeps the rows of a
model under about the same background load on a shared machine.

With --rounds R (default 1) every model goes through the implementations R
times, round-robin (algoprog, eager, compile, algoprog, eager, ...), and each
implementation keeps its fastest round; the table then gives every side's
slowest-to-fastest spread too. On a shared VM whose speed moves by 2× within
minutes (seen on this project's machines), one round can put the two sides
in different phases; the best of several interleaved rounds compares them
in the same one.

    python bench/compare.py [--filter bpe4096|quick-|laptop-] [--steps 5] [--threads N]
                            [--python /tmp/torchvenv/bin/python] [--no-compile]
                            [--unfused] [--rust-bin PATH] [--json-out rows.jsonl] [--rounds R]
                            [--torch-env KEY=VALUE ...]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def model_names(rust_bin):
    """The benchmark's models in run order, as the Rust side lists them (`--list`);
    bench/transformer_torch.py knows the same names."""
    p = subprocess.run([rust_bin, "--list"], capture_output=True, text=True, check=True)
    return [line.strip() for line in p.stdout.splitlines() if line.strip()]


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_json(label, cmd, env):
    """Runs `cmd`, echoes its stderr (the machine description), returns its JSON lines."""
    print(f"[{label}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    err = [l for l in p.stderr.splitlines() if l.strip()]
    # cargo's build chatter is long; keep the benchmark's own lines and any failure
    keep = err if p.returncode != 0 else [l for l in err if not l.lstrip().startswith(("Compiling", "Finished", "Running", "warning", "-->", "|", "=", "Executable", "Blocking"))]
    headers = [l for l in keep if "threads" in l and ("GFLOP/s" in l)]
    for l in keep:
        print(f"[{label}] {l}", file=sys.stderr)
    if p.returncode != 0:
        print(f"[{label}] exited with {p.returncode}", file=sys.stderr)
    rows = []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return {r["name"]: r for r in rows}, headers


def build_rust_bench(env):
    """Builds the throughput benchmark (release) and returns its executable."""
    cmd = ["cargo", "bench", "-p", "algoprog-train", "--bench", "throughput", "--no-run", "--message-format=json"]
    print(f"[build] {' '.join(cmd)}", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "throughput":
            exe = msg.get("executable") or exe
    if p.returncode != 0 or not exe:
        sys.stderr.write(p.stderr[-5000:])
        return None
    return exe


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description="algoprog vs PyTorch training throughput")
    ap.add_argument("--filter", default=None, help="models whose name contains this (e.g. bpe4096, modern-d128)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (median), after warm-up")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    ap.add_argument("--python", default=sys.executable, help="python with torch for the PyTorch side")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    ap.add_argument("--unfused", action="store_true", help="also run algoprog with ALGOPROG_FUSED=0")
    ap.add_argument("--rust-bin", default=None, help="a built throughput benchmark binary instead of cargo bench")
    ap.add_argument("--json-out", default=None, help="write every raw result row to this JSON-lines file")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved rounds per model; each implementation keeps its fastest (default 1)")
    ap.add_argument("--torch-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the PyTorch runs only, e.g. "
                         "LD_PRELOAD=/path/libmimalloc.so (repeatable; see bench/README.md)")
    args = ap.parse_args()

    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(args.threads)
    env["CANDLE_NUM_THREADS"] = str(args.threads)
    env["ALGOPROG_BENCH_STEPS"] = str(args.steps)
    load_before = load_average()

    rust_bin = args.rust_bin or build_rust_bench(env)
    if not rust_bin:
        sys.exit("could not build the Rust throughput benchmark")
    torch_cmd = [args.python, os.path.join(HERE, "transformer_torch.py"), "--json", "--steps", str(args.steps),
                 "--threads", str(args.threads)]
    runners = [("algoprog", [rust_bin, "--json"], env)]
    if args.unfused:
        runners.append(("unfused", [rust_bin, "--json"], dict(env, ALGOPROG_FUSED="0")))
    torch_env = dict(env)
    for kv in args.torch_env:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            sys.exit(f"--torch-env {kv!r}: give KEY=VALUE")
        torch_env[key] = value
    runners.append(("eager", torch_cmd, torch_env))
    if not args.no_compile:
        runners.append(("compile", torch_cmd + ["--compile"], torch_env))
    names = [n for n in model_names(rust_bin) if args.filter is None or args.filter in n]
    # One model at a time through every implementation, so that on a shared
    # machine each model's rows see about the same background load.
    if args.rounds < 1:
        sys.exit(f"--rounds {args.rounds}: give 1 or more")
    runs = {label: {} for label, _, _ in runners}
    # every round's tokens/s per (label, model), for the spread column
    rates = {label: {} for label, _, _ in runners}
    raw = []
    headers = {}
    for name in names:
        for k in range(args.rounds):
            for label, cmd, run_env in runners:
                tag = f"{label} {name}" + (f" round {k + 1}/{args.rounds}" if args.rounds > 1 else "")
                rows, hs = run_json(tag, cmd + [name], run_env)
                for n, r in rows.items():
                    r["round"] = k + 1
                    raw.append(r)
                    rates[label].setdefault(n, []).append(r["tokens_per_s"])
                    if n not in runs[label] or r["tokens_per_s"] > runs[label][n]["tokens_per_s"]:
                        runs[label][n] = r
                headers.setdefault(label, hs)
    load_after = load_average()

    if args.json_out:
        with open(args.json_out, "w") as f:
            for r in raw:
                f.write(json.dumps(r) + "\n")

    # MFU against the best matmul peak any algoprog run measured (load only lowers it)
    peaks = [r["matmul_peak_gflops"] for r in raw if r.get("impl") == "algoprog" and "matmul_peak_gflops" in r]
    peak = max(peaks) if peaks else None

    print()
    for label, hs in headers.items():
        for h in hs:
            print(f"- {label}: {h}")
    print(f"- threads {args.threads}, {args.steps} timed steps per model (median step time); "
          f"load average before {load_before}, after {load_after}")
    if args.torch_env:
        print(f"- PyTorch ran with {' '.join(args.torch_env)}")
    if args.rounds > 1:
        print(f"- {args.rounds} interleaved rounds per model; every tok/s cell is that implementation's fastest "
              f"round, the spread column each side's slowest–fastest")
    if peak:
        print(f"- algoprog MFU is against {peak:.1f} GFLOP/s, the best of the algoprog runs' 2048³ f32 matmul peaks "
              f"({', '.join(f'{p:.0f}' for p in peaks)})")
    print()
    cols = ["model", "params", "algoprog tok/s"]
    if args.unfused:
        cols.append("algoprog unfused tok/s")
    cols += ["torch eager tok/s", "torch compile tok/s", "ratio vs torch best", "algoprog MFU",
             "algoprog peak MiB", "torch peak MiB (eager / compile)", "load (1 min)"]
    if args.rounds > 1:
        cols.append("spread algoprog / eager / compile tok/s")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|")
    mismatches = []
    for n in names:
        a = runs["algoprog"].get(n)
        e = runs["eager"].get(n)
        c = runs.get("compile", {}).get(n)
        u = runs.get("unfused", {}).get(n)
        counts = {r["params"] for r in (a, e, c) if r}
        if len(counts) > 1:
            mismatches.append(n)
        params = "/".join(str(x) for x in sorted(counts)) + (" ⚠" if len(counts) > 1 else "")
        ok_c = c if c and c.get("compile_ok") is not False else None
        best = max([r["tokens_per_s"] for r in (e, ok_c) if r] or [0]) or None
        tps = lambda r: r["tokens_per_s"] if r else None  # noqa: E731
        compile_cell = fmt(tps(ok_c), ".0f") if c is None or ok_c else "failed"
        row = [n, params, fmt(tps(a), ".0f")]
        if args.unfused:
            row.append(fmt(tps(u), ".0f"))
        row += [
            fmt(tps(e), ".0f"),
            compile_cell,
            fmt(a["tokens_per_s"] / best, ".2f") + "×" if a and best else "–",
            fmt(100 * a["gflops"] / peak, ".1f") + "%" if a and peak else "–",
            fmt(a["peak_rss_mb"] if a else None, ".0f"),
            f"{fmt(e['peak_rss_mb'] if e else None, '.0f')} / {fmt(c['peak_rss_mb'] if ok_c else None, '.0f')}",
            a["load_avg"].split()[0] if a and a.get("load_avg") else "–",
        ]
        if args.rounds > 1:
            def spread(label):
                xs = rates.get(label, {}).get(n)
                return f"{min(xs):.0f}–{max(xs):.0f}" if xs else "–"
            row.append(" / ".join(spread(lb) for lb in ("algoprog", "eager", "compile")))
        print("| " + " | ".join(row) + " |")
    if mismatches:
        print(f"\nParameter counts differ between algoprog and torch for: {', '.join(mismatches)}")
    failed = [n for n, r in runs.get("compile", {}).items() if r.get("compile_ok") is False]
    if failed:
        print(f"\ntorch.compile failed (timed eagerly instead) for: {', '.join(failed)}")


if __name__ == "__main__":
    main()
