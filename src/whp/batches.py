"""Batched model calls shared by the metrics: padding, position ids, forward passes, generation.

Padding is built here from sequence lengths, never from `input_ids != pad_id` (the pad token is
often the EOS token, which also appears inside real text). The caller's tokenizer is not changed.
Under several processes each takes every world_size-th batch (`my_batches`) and the results are
merged in every process: the batches, hence the numbers, are the same as on one process.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from whp import distributed
from whp.errors import WhpError


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The pad token id, falling back to EOS (most causal LMs have no pad token)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise WhpError("the tokenizer has neither a pad nor an EOS token")


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text (no padding); an empty encoding is an error naming the text."""
    ids = tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]
    for text, row in zip(texts, ids):
        if not row:
            raise WhpError(f"text tokenizes to nothing: {text[:60]!r}")
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows to one length: input_ids (B, T) and attention_mask (B, T) from lengths."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return input_ids.to(device), mask.to(device)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions counted from each row's first real token (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def forward_logits(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) in float32 for a left- or right-padded batch."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
    return out.logits.float()


def chunks(n: int, size: int) -> Iterator[range]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def my_batches(n: int, size: int) -> list[range]:
    """This process's batches of `chunks(n, size)`: every world_size-th one (all on one process)."""
    return distributed.share(list(chunks(n, size)))


def by_length(rows: Sequence[Sequence[int]]) -> list[int]:
    """Indices sorted by length (longest first), so that each batch pads little."""
    return sorted(range(len(rows)), key=lambda i: -len(rows[i]))


@dataclass
class GenerationStats:
    new_tokens: int = 0  # generated tokens, up to and including a stopping EOS
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block only, restoring the caller's RNG state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def generate_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    stop_at_eos: bool = True,
) -> tuple[list[list[int]], GenerationStats]:
    """New token ids for each prompt (in input order, cut after the first EOS), and timing.

    Greedy by default; with `sample`, plain temperature sampling seeded by `seed` (the result
    then depends on the batch composition, as every row draws from one generator).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    device, pad = model_device(model), pad_id(tokenizer)
    eos = tokenizer.eos_token_id if stop_at_eos else None
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else 1.0,
        top_k=0 if sample else None,
        top_p=1.0,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id,
    )
    mine: dict[int, list[int]] = {}
    order = by_length(prompts)
    started = time.perf_counter()
    with torch.inference_mode(), seeded(seed, device):
        for batch in my_batches(len(order), batch_size):
            rows = [prompts[order[i]] for i in batch]
            input_ids, mask = left_pad(rows, pad, device)  # (B, T)
            generated = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
            new = generated[:, input_ids.shape[1] :].tolist()  # (B, <= max_new_tokens)
            for i, tokens in zip(batch, new):
                if eos is not None and eos in tokens:
                    tokens = tokens[: tokens.index(eos) + 1]
                mine[order[i]] = tokens
    every = distributed.merged(mine)
    out = [every[i] for i in range(len(prompts))]
    stats = GenerationStats(new_tokens=sum(map(len, out)), seconds=time.perf_counter() - started)
    return out, stats


def decode(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True)
