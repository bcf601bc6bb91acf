"""Gradient difference (GD): gradient ascent on the target plus ordinary gradient descent on
retain text, so that the model keeps predicting general text while it forgets the target
(open-unlearning's GradDiff with an NLL retain loss, MUSE's `ga_gdr`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from whp.methods.base import LossMethod
from whp.methods.head import predict
from whp.methods.lm import Batch, masked_mean, retain_rows, token_nll
from whp.train import TrainConfig, TrainOverrides


@dataclass
class GDConfig:
    """`--method gd`: ascent on the target, descent on `--retain` text (required)."""

    retain_weight: float = field(default=1.0, metadata={"help": "weight of the LM loss on retain text (open-unlearning's alpha)"})
    train: TrainOverrides = field(default_factory=lambda: TrainOverrides({"epochs": 5, "grad_accum": 8, "schedule": "constant", "lora": False}),
                        metadata={"help": "this method's training settings over the shared `train` block (MUSE's baselines: every weight, "
                                          "lr 1e-5 constant, batch 32, 1-10 epochs; stop while utility holds)"})

    def __post_init__(self) -> None:
        if self.retain_weight < 0:
            raise ValueError("retain_weight must be >= 0")


def gd_loss(model: torch.nn.Module, batch: Batch, retain_weight: float = 1.0) -> tuple[torch.Tensor, int]:
    """−(mean NLL over target tokens) + retain_weight × (mean NLL over retain tokens); target and
    retain blocks share the batch, told apart by `is_retain`."""
    nll, valid = token_nll(predict(model, batch), batch)  # (B, T-1)
    retain = retain_rows(batch, len(nll), nll.device)[:, None]  # (B, 1)
    loss = -masked_mean(nll, valid & ~retain) + retain_weight * masked_mean(nll, valid & retain)
    return loss, int(valid.sum())


def prepare(model, target: list[Batch], retain: list[Batch], cfg: GDConfig, train_cfg: TrainConfig, dtype: torch.dtype = torch.float32):
    """Training examples and loss: target and retain blocks in one shuffled set."""
    return target + retain, functools.partial(gd_loss, retain_weight=cfg.retain_weight)


METHOD = LossMethod("gd", GDConfig, prepare, uses_retain=True, needs_retain=True,
                    description="gradient difference: ascent on the target, descent on retain text")
