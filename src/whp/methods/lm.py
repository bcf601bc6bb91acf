"""Plain causal-LM loss: the reinforcement stage (and any fine-tuning on raw text)."""

from __future__ import annotations

import torch

from whp.generic import IGNORE


def lm_examples(blocks) -> list[dict[str, torch.Tensor]]:
    """Training examples from corpus blocks (whp.corpus.Block): labels = inputs (the model shifts)."""
    examples = []
    for block in blocks:
        ids = torch.tensor(block.ids, dtype=torch.long)  # (T,)
        examples.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return examples


def lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy; padded positions carry no loss."""
    labels = batch["labels"].masked_fill(batch["attention_mask"] == 0, IGNORE)  # (B, T)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    return out.loss, int((labels[:, 1:] != IGNORE).sum())
