"""Perplexity of a model on a text, over non-overlapping token blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp import batches, distributed
from whp.corpus import read_text
from whp.errors import WhpError


def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    block_size: int = 512,
    batch_size: int = 4,
) -> dict:
    """exp(mean next-token NLL) over the text cut into non-overlapping blocks of `block_size`
    tokens (no special tokens; the tail block is kept if it has 2 or more tokens). Each block is
    scored on its own, so its first token is context only. Lower = the model finds the text more
    predictable: on the target, an unlearned model should rise towards a model that never saw it;
    on general text it should barely move."""
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    blocks = [ids[i : i + block_size] for i in range(0, len(ids), block_size)]
    blocks = [b for b in blocks if len(b) >= 2]
    if not blocks:
        raise WhpError("text is too short for perplexity (fewer than 2 tokens)")
    device, pad = batches.model_device(model), batches.pad_id(tokenizer)
    sums: dict[int, tuple[float, int]] = {}  # batch start -> (summed NLL, scored tokens)
    with torch.inference_mode():
        for batch in batches.my_batches(len(blocks), batch_size):
            rows = [blocks[i] for i in batch]
            input_ids, mask = batches.left_pad(rows, pad, device)  # (B, T); only the tail block is shorter
            logits = batches.forward_logits(model, input_ids, mask)[:, :-1]  # (B, T-1, V) predicts tokens 1..T-1
            scored = (mask[:, :-1] * mask[:, 1:]).bool()  # (B, T-1): a real token predicting a real token
            targets = input_ids[:, 1:].masked_fill(~scored, -100)  # (B, T-1)
            nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum").item()
            sums[batch.start] = (nll, int((targets != -100).sum()))
    every = distributed.merged(sums)
    nll_sum, count = 0.0, 0
    for start in sorted(every):  # in batch order, as on one process
        nll_sum, count = nll_sum + every[start][0], count + every[start][1]
    nll = nll_sum / count
    return {"value": math.exp(nll), "nll": nll, "tokens": count, "blocks": len(blocks)}


def measure(model, tokenizer, cfg, path: str) -> dict:
    """Perplexity on the retain text (whp eval)."""
    return perplexity(model, tokenizer, read_text(cfg.retain_text))
