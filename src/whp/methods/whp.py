"""WHP fine-tuning objectives on generic labels (DESIGN §2.5).

- hard (the paper's): cross-entropy to the argmax generic label, the model's own loss;
- soft: cross-entropy to the softmax of the stored top-k generic logits (equal to the KL to
  that distribution up to a constant), which keeps more calibration on small models.
"""

from __future__ import annotations

import torch

from whp.generic import IGNORE


def hard_label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Labels are stored at t+1 (HF convention); the model shifts them itself."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, int((batch["labels"][:, 1:] != IGNORE).sum())


def soft_targets_cross_entropy(
    logits: torch.Tensor, top_values: torch.Tensor, top_indices: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over valid positions of −Σ_k p_k log q(token_k).

    logits: (B, T, V) model logits; top_values/top_indices: (B, T, k) generic logits and their
    token ids at the same positions; valid: (B, T) bool, positions that carry a target.
    """
    log_q = torch.log_softmax(logits.float(), dim=-1).gather(-1, top_indices)  # (B, T, k)
    p = torch.softmax(top_values.float() / temperature, dim=-1)  # (B, T, k)
    per_position = -(p * log_q).sum(-1)  # (B, T)
    return per_position[valid].mean()


def soft_label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """Soft generic targets are stored at position t (the position that predicts)."""
    valid = torch.zeros_like(batch["labels"], dtype=torch.bool)  # (B, T)
    valid[:, :-1] = batch["labels"][:, 1:] != IGNORE
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    loss = soft_targets_cross_entropy(logits, batch["top_values"], batch["top_indices"], valid, temperature)
    return loss, int(valid.sum())
