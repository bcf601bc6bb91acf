"""Negative preference optimisation (NPO; Zhang, Lin, Bai & Mei 2024, arXiv 2404.05868).

Per target sequence y, with log π(y) the summed next-token log-probability of its tokens and
π_ref the frozen baseline:

    L_NPO = (2/β) · log(1 + (π_θ(y) / π_ref(y))^β) = (2/β) · softplus(β · (log π_θ(y) − log π_ref(y)))

(DPO with the target as the rejected answer and no preferred one). It equals 2·log 2 / β at the
start and falls towards 0 as π_θ(y) drops below π_ref(y); as β → 0 it becomes gradient ascent,
but its gradient fades once the target is unlikely, so it degrades the model far more slowly.
open-unlearning computes exactly this (sequence sums, `compute_dpo_loss`); MUSE's code applies
the formula to raw logits element-wise instead, which we do not copy.

π_ref never changes, so log π_ref(y) is computed once, before training, by the model about to
be trained (same weights, dtype and autocast, hence a ratio of exactly 1 at step 0) and stored
in each example: the loss stays `(model, batch)` and no second model is held in memory.
Optional retain term on `--retain` text: `gd` (its LM loss, open-unlearning's default) or `kl`
(KL from the baseline's next-token distribution over the baseline's top-k tokens and one
bucket for the rest of the vocabulary, also precomputed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from whp import distributed
from whp.methods.base import LossMethod
from whp.methods.head import from_logits, predict
from whp.methods.lm import Batch, masked_mean, retain_rows, token_nll
from whp.methods.whp import soft_targets_cross_entropy
from whp.train import TrainConfig, TrainOverrides, collate


@dataclass
class NPOConfig:
    """`--method npo`: negative preference optimisation against the frozen baseline."""

    beta: float = field(default=0.1, metadata={"help": "inverse temperature β of the NPO loss (MUSE and open-unlearning: 0.1)"})
    retain_loss: str = field(default="gd", metadata={"help": "retain term on --retain text: gd (LM loss) or kl (KL to the baseline's top-k)"})
    retain_weight: float = field(default=1.0, metadata={"help": "weight of the retain term (used only with --retain text)"})
    kl_top_k: int = field(default=32, metadata={"help": "baseline tokens kept per position for the kl retain term"})
    train: TrainOverrides = field(default_factory=lambda: TrainOverrides({"epochs": 5, "grad_accum": 8, "schedule": "constant", "lora": False}),
                        metadata={"help": "this method's training settings over the shared `train` block (MUSE's baselines: every weight, "
                                          "lr 1e-5 constant, batch 32, 1-10 epochs; stop while utility holds)"})

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.retain_loss not in ("gd", "kl"):
            raise ValueError(f"retain_loss must be gd or kl, got {self.retain_loss!r}")
        if self.retain_weight < 0 or self.kl_top_k < 1:
            raise ValueError("retain_weight must be >= 0 and kl_top_k >= 1")


def npo_term(logprob: torch.Tensor, ref_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """(2/β)·log(1 + (π/π_ref)^β) per sequence, from summed log-probabilities (N,), (N,) -> (N,)."""
    return 2.0 / beta * F.softplus(beta * (logprob - ref_logprob))


def top_k_kl(log_q: torch.Tensor, top_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per position over the baseline's top k tokens plus one bucket for the rest of the
    vocabulary: Σ_k p_k (log p_k − log q_k) + p_rest (log p_rest − log q_rest). log_q (B, T, k):
    the model's log-probabilities of the baseline's top k tokens, whose full-vocabulary
    log-probabilities under the baseline p are top_logprobs (B, T, k) -> (B, T). 0 where q = p; the bucket keeps q's tail from being squeezed
    into the top k (as in the WHP soft-label loss)."""
    p = top_logprobs.float().exp()  # (B, T, k)
    p_rest = (1.0 - p.sum(-1)).clamp(min=0.0)  # (B, T)
    neg_entropy = (p * top_logprobs.float()).sum(-1) + torch.xlogy(p_rest, p_rest)  # Σ p log p over k and the bucket
    return soft_targets_cross_entropy(log_q, top_logprobs) + neg_entropy


def npo_loss(model: torch.nn.Module, batch: Batch, beta: float = 0.1, retain_loss: str = "gd",
             retain_weight: float = 1.0) -> tuple[torch.Tensor, int]:
    """Mean NPO term over the batch's target blocks + retain_weight × the retain term's mean over
    retain tokens (blocks told apart by `is_retain`)."""
    logprobs_at = predict(model, batch)
    nll, valid = token_nll(logprobs_at, batch)  # (B, T-1)
    retain = retain_rows(batch, len(nll), nll.device)  # (B,)
    logprob = -(nll * valid).sum(-1)  # (B,)
    loss = masked_mean(npo_term(logprob, batch["ref_logprob"], beta), ~retain)
    if retain.any():
        kl = retain_loss == "kl"
        per_position = top_k_kl(logprobs_at(batch["top_indices"][:, :-1], valid), batch["top_values"][:, :-1]) if kl else nll  # (B, T-1)
        loss = loss + retain_weight * masked_mean(per_position, valid & retain[:, None])
    return loss, int(valid.sum())


@torch.no_grad()
def with_references(model: torch.nn.Module, examples: list[Batch], batch_size: int, dtype: torch.dtype, top_k: int = 0) -> list[Batch]:
    """Copies of `examples` with the model's summed log-probability `ref_logprob` () and, with
    `top_k`, its top-k next-token log-probabilities `top_values` / `top_indices` (T, k); one
    inference pass in the training's `dtype` (bf16: the same autocast as training)."""
    device = distributed.device()  # this process's GPU when there is one: the pass is a full forward over the target
    model.to(device)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        group = examples[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(group).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        nll, valid = token_nll(from_logits(logits), batch)
        logprob = -(nll * valid).sum(-1).cpu()  # (B,)
        top = torch.log_softmax(logits.float(), dim=-1).topk(top_k, dim=-1) if top_k else None  # (B, T, k)
        for row, example in enumerate(group):
            extra = {"ref_logprob": logprob[row]}
            if top is not None:
                extra.update(top_values=top.values[row].cpu(), top_indices=top.indices[row].cpu())
            out.append({**example, **extra})
    model.train(was_training)
    return out


def prepare(model, target: list[Batch], retain: list[Batch], cfg: NPOConfig, train_cfg: TrainConfig, dtype: torch.dtype = torch.float32):
    """Training examples (target and retain blocks, with the baseline's references) and loss."""
    top_k = cfg.kl_top_k if retain and cfg.retain_loss == "kl" else 0
    examples = with_references(model, target + retain, train_cfg.batch_size, dtype, top_k)
    loss_fn = functools.partial(npo_loss, beta=cfg.beta, retain_loss=cfg.retain_loss, retain_weight=cfg.retain_weight)
    return examples, loss_fn


METHOD = LossMethod("npo", NPOConfig, prepare, uses_retain=True, needs_retain=False,
                    description="negative preference optimisation against the frozen baseline (Zhang et al. 2024), optional retain term")
