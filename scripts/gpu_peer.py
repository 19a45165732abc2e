#!/usr/bin/env python3
"""Peer figures for the CUDA backend's benchmarks, from PyTorch and transformers on the same
GPU: device copy bandwidth, cuBLAS bf16 GEMM and GEMV, and the Mixtral MoE block
(transformers' MixtralSparseMoeBlock with its eager and grouped_mm experts backends) at
Mixtral 8x7B shapes, and transformers' generate loop on the whole Mixtral 8x7B (random bf16
weights) at batch 1 and 16, the peer of the multi-sequence decode benchmark. Prints a markdown table; every measurement that fails is reported as a
row and the script goes on. No network access is needed."""

import sys
import time
import traceback

H, I, E, TOP_K = 4096, 14336, 8, 2


def row(what, value, unit, note=""):
    print(f"| {what} | {value} | {unit} | {note} |", flush=True)


def fail(what, err):
    msg = str(err).replace("|", "/").replace("\n", " ")[:160]
    row(what, "failed", "", msg)


def main():
    print("| peer measurement | value | unit | note |")
    print("| --- | --- | --- | --- |")
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - report any import failure
        fail("import torch", err)
        return 0
    if not torch.cuda.is_available():
        row("torch.cuda", "unavailable", "", torch.__version__)
        return 0
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(0)
    row("device", props.name, "", f"torch {torch.__version__}, CUDA {torch.version.cuda}, {props.multi_processor_count} SMs")

    def timeit(fn, warmup=3, iters=10):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters / 1e3  # seconds per call

    # Device-to-device copy: bytes read plus bytes written.
    try:
        n = 256 << 20
        a = torch.empty(n, dtype=torch.float32, device=dev)
        b = torch.empty_like(a)
        s = timeit(lambda: b.copy_(a))
        row("copy device to device (read+write)", f"{2 * 4 * n / s / 1e9:.0f}", "GB/s")
        host = torch.empty(n, dtype=torch.float32, pin_memory=True)
        s = timeit(lambda: a.copy_(host), 1, 3)
        row("copy host (pinned) to device", f"{4 * n / s / 1e9:.1f}", "GB/s")
        del a, b, host
    except Exception as err:  # noqa: BLE001
        fail("copy", err)

    # cuBLAS bf16 GEMM and GEMV through F.linear (y = x·wᵀ, as the backend computes).
    import torch.nn.functional as F

    for n, k, m in [(2048, H, I), (2048, I, H), (512, H, H), (8192, 8192, 8192)]:
        try:
            x = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
            w = torch.randn(m, k, device=dev, dtype=torch.bfloat16) * 0.02
            s = timeit(lambda: F.linear(x, w))
            row(f"cuBLAS bf16 GEMM n={n} {m}x{k}", f"{2 * n * k * m / s / 1e12:.0f}", "TFLOP/s")
        except Exception as err:  # noqa: BLE001
            fail(f"GEMM n={n} {m}x{k}", err)
    for n, k, m in [(1, H, I), (1, I, H), (8, H, I), (1, H, 32002)]:
        try:
            x = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
            w = torch.randn(m, k, device=dev, dtype=torch.bfloat16) * 0.02
            s = timeit(lambda: F.linear(x, w), 5, 50)
            row(f"cuBLAS bf16 GEMV n={n} {m}x{k}", f"{2 * m * k / s / 1e9:.0f}", "GB/s", f"{s * 1e6:.1f} us")
        except Exception as err:  # noqa: BLE001
            fail(f"GEMV n={n} {m}x{k}", err)

    # transformers' Mixtral MoE block.
    try:
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except Exception as err:  # noqa: BLE001
        fail("import MixtralSparseMoeBlock", err)
        return 0
    for impl in ["eager", "grouped_mm"]:
        try:
            cfg = MixtralConfig(hidden_size=H, intermediate_size=I, num_local_experts=E, num_experts_per_tok=TOP_K)
            # The experts backend is a config attribute in transformers 5 (ExpertsInterface).
            for attr in ("_experts_implementation", "experts_implementation"):
                try:
                    setattr(cfg, attr, impl)
                except Exception:  # noqa: BLE001 - not settable in this version
                    pass
            with torch.device(dev):
                block = MixtralSparseMoeBlock(cfg)
            block = block.to(torch.bfloat16).eval()
            with torch.no_grad():
                for p in block.parameters():
                    p.normal_(0, 0.02)
            used = getattr(getattr(block, "experts", block), "config", cfg)
            used = getattr(used, "_experts_implementation", None) or getattr(used, "experts_implementation", None)
            note = f"experts backend {used}" if used else "experts backend not reported"
            for tokens in [1, 4, 16, 128, 2048]:
                x = torch.randn(1, tokens, H, device=dev, dtype=torch.bfloat16)
                with torch.no_grad():
                    s = timeit(lambda: block(x), 2, 5)
                # Weight bytes of the experts used (at most all of them) and the FLOPs of the
                # chosen experts, as the Go benchmarks count them.
                used = min(tokens * TOP_K, E) * 3 * H * I * 2
                flops = tokens * TOP_K * 2 * 3 * H * I
                row(f"MixtralSparseMoeBlock {impl} tokens={tokens}", f"{tokens / s:.0f}", "tokens/s",
                    f"{s * 1e3:.3f} ms, {used / s / 1e9:.0f} GB/s, {flops / s / 1e12:.1f} TFLOP/s; {note}")
            del block
            torch.cuda.empty_cache()
        except Exception as err:  # noqa: BLE001
            fail(f"MixtralSparseMoeBlock {impl}", err)
            traceback.print_exc(file=sys.stderr)
    generate_peer(dev, timeit)
    return 0


def generate_peer(dev, timeit):
    """transformers' generate on Mixtral 8x7B (32 layers, random bf16 weights): batches of
    512-token prompts, greedy; decode tokens/s from the difference between generating 1 and
    1+D tokens, as BenchmarkDecodeSequences times decode once the prompts are read."""
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    prompt, extra = 512, 16
    try:
        cfg = MixtralConfig(hidden_size=H, intermediate_size=I, num_local_experts=E, num_experts_per_tok=TOP_K,
                            num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=32002,
                            max_position_embeddings=4096, rope_theta=1e6, sliding_window=None)
        for attr in ("_experts_implementation", "experts_implementation"):
            try:
                setattr(cfg, attr, "grouped_mm")
            except Exception:  # noqa: BLE001 - not settable in this version
                pass
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device(dev):
                model = MixtralForCausalLM(cfg)
        finally:
            torch.set_default_dtype(default)
        model = model.eval()
    except Exception as err:  # noqa: BLE001
        fail("MixtralForCausalLM 8x7B (32 layers)", err)
        traceback.print_exc(file=sys.stderr)
        return
    try:
        for batch in [1, 16]:
            ids = torch.randint(0, 32000, (batch, prompt), device=dev)
            mask = torch.ones_like(ids)

            def gen(new):
                with torch.no_grad():
                    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                          do_sample=False, pad_token_id=0)

            s1 = timeit(lambda: gen(1), 1, 2)
            s2 = timeit(lambda: gen(1 + extra), 0, 2)
            rate = batch * extra / (s2 - s1)
            row(f"transformers generate, Mixtral 8x7B, batch={batch}, prompt {prompt}", f"{rate:.1f}", "tokens/s",
                f"decode, aggregate; prefill+1 token {s1 * 1e3:.0f} ms, +{extra} tokens {s2 * 1e3:.0f} ms")
    except Exception as err:  # noqa: BLE001
        fail("transformers generate", err)
        traceback.print_exc(file=sys.stderr)
    finally:
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"\n(peer script: {time.time() - start:.0f} s)")
    sys.exit(code)
