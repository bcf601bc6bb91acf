"""The ceilings of the label stage and of training on this machine: SmolLM2's compiled bf16 body
alone (no LM head, no attention mask, no optimizer, 2,048 tokens per call), in tokens/s and as
a fraction of the bf16 matmul rate in model FLOPs, for each attention implementation and block
length given.

- `forward` (the label stage): 2·N_body + 4·L·d·T FLOPs per token. Every label pass runs such a
  body, so the label stage cannot beat this fraction by more than its LM head (a large GEMM)
  lifts it.
- `train-full`: forward and backward with every weight trainable, in bf16 (no fp32 master
  weights, no autocast copies): 6·N_body + 12·L·d·T.
- `train-lora`: forward and backward with the bf16 body frozen and a bf16 LoRA adapter (r 16,
  all linear layers) trainable, counted like `train-full` (the MFU convention our training
  figures use; its real arithmetic is nearer 4·N_body).

    python benchmarks/compiled_body.py [--modes forward train-full train-lora] [--attention sdpa eager] [--blocks 256 512]
"""

from __future__ import annotations

import argparse
import time

import torch
from stages import flops_per_token, matmul_rate

from whp.models import LoraConfig, add_lora, causal_lm, load_model

TOKENS_PER_CALL = 2048


def _body(mode: str, attention: str) -> torch.nn.Module:
    model = load_model("smollm2-135m-instruct", torch.bfloat16)
    model.config._attn_implementation = attention  # read by every attention layer at call time
    if mode == "train-lora":
        model = add_lora(model, LoraConfig()).to(torch.bfloat16)
        return causal_lm(model).model.train()
    model.requires_grad_(mode == "train-full")
    return model.model.train(mode == "train-full")


def _call(body: torch.nn.Module, ids: torch.Tensor, mode: str) -> None:
    if mode == "forward":
        with torch.inference_mode():
            body(input_ids=ids)
        return
    hidden = body(input_ids=ids).last_hidden_state  # (B, T, H)
    hidden.float().square().mean().backward()
    for parameter in body.parameters():
        parameter.grad = None


def body_rate(mode: str, attention: str, block: int) -> float:
    body = torch.compile(_body(mode, attention), dynamic=False)
    ids = torch.randint(0, body.config.vocab_size, (TOKENS_PER_CALL // block, block))  # (B, T)
    for _ in range(2):  # compilation, then one warm call
        _call(body, ids, mode)
    calls, started = 4, time.perf_counter()
    for _ in range(calls):
        _call(body, ids, mode)
    return TOKENS_PER_CALL * calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["forward", "train-full", "train-lora"])
    parser.add_argument("--attention", nargs="+", default=["sdpa", "eager"])
    parser.add_argument("--blocks", nargs="+", type=int, default=[256, 512])
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = load_model("smollm2-135m-instruct", torch.bfloat16).config
    rate = matmul_rate(config, "bfloat16", 2)["tflops"] * 1e12
    print(f"bf16 matmul rate {rate / 1e12:.2f} TFLOP/s")
    head_flops = 2 * config.hidden_size * config.vocab_size  # per token and pass
    for mode in args.modes:
        for attention in args.attention:
            for block in args.blocks:
                flops = flops_per_token(config, block)
                body_flops = flops["forward"] - head_flops if mode == "forward" else flops["train"] - 3 * head_flops
                tokens_per_second = body_rate(mode, attention, block)
                print(f"{mode:10s} {attention:6s} T={block:4d}: {tokens_per_second:6.0f} tokens/s, "
                      f"{tokens_per_second * body_flops / rate:.1%} of the bf16 rate", flush=True)


if __name__ == "__main__":
    main()
