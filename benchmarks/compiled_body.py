"""The ceiling of the label stage on this machine: SmolLM2's compiled bf16 body alone (no LM
head, no attention mask, 2,048 tokens per call), in tokens/s and as a fraction of the bf16
matmul rate in model FLOPs (2·N_body + 4·L·d·T per token), for each attention implementation
and block length given. Every label pass runs such a body, so the label stage cannot beat this
fraction by more than its LM head (a large GEMM) lifts it.

    python benchmarks/compiled_body.py [--attention sdpa eager] [--blocks 256 512]
"""

from __future__ import annotations

import argparse
import time

import torch

from stages import flops_per_token, matmul_rate
from whp.models import load_model

TOKENS_PER_CALL = 2048


def body_rate(attention: str, block: int) -> float:
    model = load_model("smollm2-135m-instruct", torch.bfloat16).eval()
    model.config._attn_implementation = attention  # read by every attention layer at call time
    body = torch.compile(model.model, dynamic=False)
    ids = torch.randint(0, model.config.vocab_size, (TOKENS_PER_CALL // block, block))  # (B, T)
    with torch.inference_mode():
        for _ in range(2):  # compilation, then one warm call
            body(input_ids=ids)
        calls, started = 6, time.perf_counter()
        for _ in range(calls):
            body(input_ids=ids)
    return TOKENS_PER_CALL * calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", nargs="+", default=["sdpa", "eager"])
    parser.add_argument("--blocks", nargs="+", type=int, default=[256, 512])
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = load_model("smollm2-135m-instruct", torch.bfloat16).config
    rate = matmul_rate(config, "bfloat16", 2)["tflops"] * 1e12
    print(f"bf16 matmul rate {rate / 1e12:.2f} TFLOP/s")
    for attention in args.attention:
        for block in args.blocks:
            flops = flops_per_token(config, block)
            body_flops = flops["forward"] - 2 * config.hidden_size * config.vocab_size  # without the LM head
            tokens_per_second = body_rate(attention, block)
            print(f"{attention:6s} T={block:4d}: {tokens_per_second:6.0f} tokens/s, "
                  f"{tokens_per_second * body_flops / rate:.1%} of the bf16 rate")


if __name__ == "__main__":
    main()
