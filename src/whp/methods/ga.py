"""Gradient ascent (GA): raise the model's next-token loss on the target text, i.e. descend on
the negated causal-LM loss. The simplest unlearning baseline (open-unlearning's GradAscent,
MUSE's `ga`); unbounded below, so it forgets by breaking the model unless stopped early."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from whp.methods.base import LossMethod
from whp.methods.head import predict
from whp.methods.lm import Batch, masked_mean, token_nll
from whp.train import TrainConfig, TrainOverrides


@dataclass
class GAConfig:
    """`--method ga`: gradient ascent on the target (no retain text)."""

    train: TrainOverrides = field(default_factory=lambda: TrainOverrides({"epochs": 5, "grad_accum": 8, "schedule": "constant", "lora": False}),
                        metadata={"help": "this method's training settings over the shared `train` block (MUSE's baselines: every weight, "
                                          "lr 1e-5 constant, batch 32, 1-10 epochs; stop while utility holds)"})


def ga_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """−(mean next-token NLL over the batch's target tokens)."""
    nll, valid = token_nll(predict(model, batch), batch)  # (B, T-1)
    return -masked_mean(nll, valid), int(valid.sum())


def prepare(model, target: list[Batch], retain: list[Batch], cfg: GAConfig, train_cfg: TrainConfig, dtype: torch.dtype = torch.float32):
    """Training examples and loss: the target blocks alone."""
    return target, ga_loss


METHOD = LossMethod("ga", GAConfig, prepare, uses_retain=False, needs_retain=False,
                    description="gradient ascent on the target (negated LM loss)")
