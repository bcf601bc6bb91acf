"""Plain causal-LM loss (the reinforcement stage, any fine-tuning on raw text) and the per-token
pieces the other methods' losses are made of."""

from __future__ import annotations

import torch

from whp.common import IGNORE
from whp.methods.head import LogProbsAt, predict

Batch = dict[str, torch.Tensor]


def lm_examples(blocks, is_retain: bool | None = None, width: int | None = None) -> list[Batch]:
    """Training examples from corpus blocks (whp.corpus.Block): labels = inputs (the model shifts),
    right-padded to `width` tokens (default: the longest block) with the padding masked out.
    With `is_retain` given, each example also says whether it is retain text (methods that mix
    target and retain blocks in one batch tell them apart by it)."""
    width = width or max(len(block.ids) for block in blocks)
    examples = []
    for block in blocks:
        ids = torch.zeros(width, dtype=torch.long)  # (T,)
        ids[: len(block.ids)] = torch.tensor(block.ids, dtype=torch.long)
        mask = (torch.arange(width) < len(block.ids)).long()  # (T,)
        example = {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}
        if is_retain is not None:
            example["is_retain"] = torch.tensor(is_retain)
        examples.append(example)
    return examples


def lm_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy; padded positions carry no loss."""
    nll, valid = token_nll(predict(model, batch), batch)  # (B, T-1)
    return masked_mean(nll, valid), int(valid.sum())


def token_nll(logprobs_at: LogProbsAt, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token NLL of each position t that predicts t+1, and which positions count: (B, T-1) each.
    Labels at t+1 (Hugging Face convention); padding and IGNORE carry no loss (NLL 0)."""
    targets = batch["labels"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, IGNORE)  # (B, T-1)
    valid = targets != IGNORE
    log_p = logprobs_at(targets.clamp(min=0)[..., None], valid)[..., 0]  # (B, T-1)
    return torch.where(valid, -log_p, 0.0), valid


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask`; 0 (still attached to the graph) when nothing is masked in."""
    return (values * mask).sum() / mask.sum() if mask.any() else values.sum() * 0.0


def retain_rows(batch: Batch, rows: int, device: torch.device) -> torch.Tensor:
    """(B,) bool: which examples of the batch are retain text (none when the batch does not say)."""
    return batch.get("is_retain", torch.zeros(rows, dtype=torch.bool, device=device))
