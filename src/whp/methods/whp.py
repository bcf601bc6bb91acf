"""WHP fine-tuning objectives on generic labels (DESIGN §2.5).

- hard (the paper's): cross-entropy to the argmax generic label stored at t+1;
- soft: cross-entropy to the generic distribution at t, coarse-grained to its stored top k
  tokens plus one bucket for the rest of the vocabulary: −Σ_k p_k log q_k − p_rest log q_rest.
  Its minimum is q_k = p_k with the model's remaining mass equal to the generic remaining mass.
  (Without the rest bucket the minimum puts no mass outside the top k, which squeezes every
  rare word: measured on the demo, general-text perplexity rose much more.) It keeps more
  calibration on small models than hard labels. The bucket holds only the rest's total, so
  a token outside the stored ones may take all of it: `labels.pin_k` also stores the tokens
  the reinforced model ranks highest, which are the ones the labels push down.
Retain examples (`is_retain`), whose targets are the baseline's own predictions on general
text, add `retain_weight` × their mean loss: the model is held to what it was elsewhere.
"""

from __future__ import annotations

import torch

from whp.common import IGNORE
from whp.methods.head import LogProbsAt, predict
from whp.methods.lm import masked_mean, retain_rows, token_nll


def soft_targets_cross_entropy(log_q: torch.Tensor, top_logprobs: torch.Tensor) -> torch.Tensor:
    """Per position −Σ_k p_k log q_k − p_rest log q_rest, where p_rest = 1 − Σ_k p_k and
    q_rest = 1 − Σ_k q_k: the model's log-probabilities log_q (B, T, k) of the k stored tokens,
    whose generic log-probabilities are top_logprobs (B, T, k) → (B, T)."""
    p = top_logprobs.float().exp()  # (B, T, k)
    p_rest = (1.0 - p.sum(-1)).clamp(min=0.0)  # (B, T)
    log_q_rest = torch.log((-torch.expm1(torch.logsumexp(log_q, dim=-1))).clamp(min=1e-12))  # log(1 − Σ_k q_k), (B, T)
    return -(p * log_q).sum(-1) - p_rest * log_q_rest


def position_losses(logprobs_at: LogProbsAt, batch: dict[str, torch.Tensor], loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of each position t that predicts t+1, and which positions carry a target: (B, T-1) each."""
    if loss == "hard":
        return token_nll(logprobs_at, batch)
    valid = batch["labels"][:, 1:] != IGNORE  # (B, T-1): the label of position t sits at t+1
    log_q = logprobs_at(batch["top_indices"][:, :-1], valid)  # (B, T-1, k)
    return torch.where(valid, soft_targets_cross_entropy(log_q, batch["top_values"][:, :-1]), 0.0), valid


def whp_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], loss: str = "hard",
             retain_weight: float = 1.0) -> tuple[torch.Tensor, int]:
    """Mean loss over the target's labelled positions + retain_weight × that over retain positions."""
    losses, valid = position_losses(predict(model, batch), batch, loss)  # (B, T-1)
    retain = retain_rows(batch, len(losses), losses.device)  # (B,)
    target_valid, retain_valid = valid & ~retain[:, None], valid & retain[:, None]
    total = masked_mean(losses, target_valid) + retain_weight * masked_mean(losses, retain_valid)
    return total, int(valid.sum())


def hard_label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    return whp_loss(model, batch, "hard")


def soft_label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    return whp_loss(model, batch, "soft")
