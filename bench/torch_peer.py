#!/usr/bin/env python3
"""PyTorch peer for moe_bench: one gpt-oss-20b MoE layer as transformers runs it on CPU.

    python3 bench/torch_peer.py [--threads 1,16] [--tokens 1,8,64,256] [--json FILE]

The expert loop is transformers' eager GptOssExperts.forward (bf16 weights [E, H, 2I] and
[E, I, H] with biases, gate and up interleaved, clamp at 7, alpha 1.702, (up + 1) * glu), on
whatever CPU kernels this torch build uses (oneDNN: AMX tiles on a Xeon that has them). It is
timed the way moe_bench times moe-cpu (cpp/bench/cache_sweep.h): cold weights, i.e. before
every timed call fresh routes (top-4 of new random logits, softmax weights) and a sweep of
max(64 MiB, 4 x L3) per thread, read + write, then the first half read again; the median of an
odd number of calls (5 to 21 within ~3 s, after >= 1 s of warm-up calls). Routing is not
timed, as in moe_bench. Run where torch is installed (the repository has no Python
dependency; nothing here is imported by the package).
"""
import argparse
import json
import os
import statistics
import time

import torch

E, H, I, K = 32, 2880, 2880, 4
ALPHA, LIMIT = 1.702, 7.0


def l3_bytes():
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(f"{base}/{index}/level") as f:
                if f.read().strip() != "3":
                    continue
            with open(f"{base}/{index}/size") as f:
                size = f.read().strip()
            units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    except OSError:
        pass
    return 32 << 20


def experts_forward(x, ids, weights, gate_up, gate_up_bias, down, down_bias):
    """transformers' GptOssExperts.forward, eager CPU branch (per expert hit)."""
    out = torch.zeros_like(x)
    hit = torch.unique(ids)
    for e in hit.tolist():
        token_idx, slot = torch.where(ids == e)
        state = x[token_idx]
        gu = state @ gate_up[e] + gate_up_bias[e]
        gate, up = gu[..., ::2], gu[..., 1::2]
        gate = gate.clamp(min=None, max=LIMIT)
        up = up.clamp(min=-LIMIT, max=LIMIT)
        glu = gate * torch.sigmoid(gate * ALPHA)
        y = ((up + 1) * glu) @ down[e] + down_bias[e]
        out.index_add_(0, token_idx, y * weights[token_idx, slot, None])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--tokens", default="1,8,64,256")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    bf16 = torch.bfloat16
    gate_up = (torch.randn(E, H, 2 * I) * 0.02).to(bf16)
    gate_up_bias = (torch.randn(E, 2 * I) * 0.02).to(bf16)
    down = (torch.randn(E, I, H) * 0.02).to(bf16)
    down_bias = (torch.randn(E, H) * 0.02).to(bf16)
    sweep_per_thread = max(64 << 20, 4 * l3_bytes())
    rows = []
    print(f"torch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}, gpt-oss-20b layer "
          f"(E={E} H={H} I={I} K={K}) bf16, cold weights (sweep {sweep_per_thread >> 20} MiB per thread)")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        sweep = torch.ones(threads * sweep_per_thread // 4, dtype=torch.float32)
        for T in [int(t) for t in args.tokens.split(",")]:
            x = torch.randn(T, H).to(bf16)

            def routes():
                logits = torch.randn(T, E)
                top, ids = torch.topk(logits, K, dim=-1)
                return ids, torch.softmax(top, dim=-1).to(bf16)

            def cold():
                sweep.add_(1.0)
                float(sweep[: sweep.numel() // 2].sum())

            with torch.inference_mode():
                start = time.perf_counter()
                while True:  # warm-up: >= 1 s and >= 2 calls
                    ids, w = routes()
                    cold()
                    experts_forward(x, ids, w, gate_up, gate_up_bias, down, down_bias)
                    if time.perf_counter() - start >= 1.0:
                        break
                ms = []
                budget = time.perf_counter()
                while len(ms) < 21 and (len(ms) < 5 or time.perf_counter() - budget < 3.0 or len(ms) % 2 == 0):
                    ids, w = routes()
                    cold()
                    t0 = time.perf_counter()
                    experts_forward(x, ids, w, gate_up, gate_up_bias, down, down_bias)
                    ms.append((time.perf_counter() - t0) * 1e3)
            median = statistics.median(ms)
            rows.append({"peer": "torch", "threads": threads, "tokens": T, "median_ms": median, "iters": len(ms)})
            print(f"  torch threads={threads:3d} T={T:4d}: {median:9.2f} ms (median of {len(ms)})", flush=True)
        del sweep
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
