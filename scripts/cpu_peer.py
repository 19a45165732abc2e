#!/usr/bin/env python3
"""Peer figures for the CPU backend's prefill benchmarks from PyTorch on the same machine, an
engine that computes in bfloat16 (weights and activations rounded to bfloat16, products
accumulated by oneDNN): a dense bf16 GEMM, the Mixtral MoE block written as transformers'
MixtralSparseMoeBlock computes it (router, softmax, top-2, renormalised weights, each expert's
w1/w3 with SiLU and w2 over its tokens, weighted sum) and one whole Mixtral 8x7B-shaped decoder
layer (RMSNorm, attention projections, RoPE, causal grouped-query attention, the MoE block)
over a prompt of 512 tokens, with random weights. The operations counted are those of
fathom's benchmarks (bench.PrefillFLOPs for the layer). Usage: cpu_peer.py [threads]
(default 2). Prints a markdown table; every measurement that fails is reported as a row."""

import sys
import time
import traceback

H, I, E, TOP_K = 4096, 14336, 8, 2
HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
TOKENS = 512


def row(what, value, unit, note=""):
    print(f"| {what} | {value} | {unit} | {note} |", flush=True)


def best(fn, iters=3):
    fn()
    t = float("inf")
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - s)
    return t


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print("| peer measurement | value | unit | note |")
    print("| --- | --- | --- | --- |")
    try:
        import torch
        import torch.nn.functional as F
    except Exception as err:  # noqa: BLE001 - report any import failure
        row("import torch", "failed", "", str(err)[:160])
        return 0
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    bf = torch.bfloat16
    row("torch", torch.__version__, "", f"{threads} threads, oneDNN bf16: {torch.backends.mkldnn.is_available()}")

    def rand(*shape):
        return (torch.randn(*shape) * 0.02).to(bf)

    # Dense product: 512 tokens × 4096 → 4096.
    try:
        x, w = rand(TOKENS, H), rand(H, H)
        s = best(lambda: x @ w.t())
        row("dense bf16 GEMM 512×4096×4096", f"{2 * TOKENS * H * H / s / 1e9:.1f}", "GFLOP/s")
    except Exception as err:  # noqa: BLE001
        row("dense GEMM", "failed", "", str(err)[:160])

    w1 = [rand(I, H) for _ in range(E)]
    w3 = [rand(I, H) for _ in range(E)]
    w2 = [rand(H, I) for _ in range(E)]
    gate = rand(E, H)

    def moe(x):
        logits = x @ gate.t()
        p = torch.softmax(logits.float(), dim=-1)
        wts, sel = torch.topk(p, TOP_K, dim=-1)
        wts = (wts / wts.sum(dim=-1, keepdim=True)).to(bf)
        out = torch.zeros_like(x)
        for e in range(E):
            tok, k = torch.where(sel == e)
            if tok.numel() == 0:
                continue
            xe = x[tok]
            h = F.silu(xe @ w1[e].t()) * (xe @ w3[e].t())
            out.index_add_(0, tok, (h @ w2[e].t()) * wts[tok, k, None])
        return out

    try:
        x = rand(TOKENS, H)
        s = best(lambda: moe(x))
        row("MoE block, 512 tokens, bf16", f"{2 * 3 * H * I * TOP_K * TOKENS / s / 1e9:.1f}", "GFLOP/s", f"{s * 1e3:.0f} ms")
    except Exception as err:  # noqa: BLE001
        row("MoE block", "failed", "", str(err)[:160])
        traceback.print_exc()

    wq, wk, wv, wo = rand(HEADS * HEAD_DIM, H), rand(KV_HEADS * HEAD_DIM, H), rand(KV_HEADS * HEAD_DIM, H), rand(H, HEADS * HEAD_DIM)
    n1, n2 = torch.ones(H, dtype=bf), torch.ones(H, dtype=bf)
    inv = 1.0 / (1e6 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
    ang = torch.outer(torch.arange(TOKENS).float(), inv)
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1).to(bf), torch.cat([ang.sin(), ang.sin()], -1).to(bf)
    mask = torch.full((TOKENS, TOKENS), float("-inf")).triu(1)

    def rms(x, w):
        v = x.float()
        return (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-5)).to(bf) * w

    def rope(t):
        a, b = t[..., : HEAD_DIM // 2], t[..., HEAD_DIM // 2 :]
        return t * cos + torch.cat([-b, a], -1) * sin

    def layer(x):
        h = rms(x, n1)
        q = (h @ wq.t()).view(TOKENS, HEADS, HEAD_DIM).transpose(0, 1)
        k = (h @ wk.t()).view(TOKENS, KV_HEADS, HEAD_DIM).transpose(0, 1)
        v = (h @ wv.t()).view(TOKENS, KV_HEADS, HEAD_DIM).transpose(0, 1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(HEADS // KV_HEADS, 0)
        v = v.repeat_interleave(HEADS // KV_HEADS, 0)
        att = torch.softmax((q @ k.transpose(1, 2)).float() / HEAD_DIM**0.5 + mask, -1).to(bf)
        o = (att @ v).transpose(0, 1).reshape(TOKENS, HEADS * HEAD_DIM)
        x = x + o @ wo.t()
        return x + moe(rms(x, n2))

    try:
        x = rand(TOKENS, H)
        s = best(lambda: layer(x))
        proj = H * HEADS * HEAD_DIM * 2 + 2 * H * KV_HEADS * HEAD_DIM + E * H + TOP_K * 3 * H * I
        flops = 2 * TOKENS * proj + 4 * HEADS * HEAD_DIM * TOKENS * (TOKENS + 1) / 2
        row("decoder layer, 512-token prompt, bf16", f"{flops / s / 1e9:.1f}", "GFLOP/s", f"{TOKENS / s:.0f} tokens/s")
    except Exception as err:  # noqa: BLE001
        row("decoder layer", "failed", "", str(err)[:160])
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
