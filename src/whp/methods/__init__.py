"""Unlearning methods and stage objectives, each a loss function over the shared training loop.

A loss function takes `(model, batch)` and returns `(loss, n_tokens)`; `whp.train.train` does
the rest. `LOSS_METHODS` registers the methods that are one training stage over the baseline
(`whp unlearn --method ga|gd|npo`): each has a settings section of `RunConfig` and a
`prepare(model, target, retain, cfg, dtype) -> (examples, loss_fn)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from whp.methods import ga, gd, npo


@dataclass(frozen=True)
class LossMethod:
    config: type  # its RunConfig section, e.g. GAConfig
    prepare: Callable  # (model, target examples, retain examples, cfg, dtype) -> (examples, loss_fn)
    uses_retain: bool  # whether `--retain` text enters the loss
    needs_retain: bool  # whether it is required
    description: str  # one line for help text and model cards


LOSS_METHODS: dict[str, LossMethod] = {
    "ga": LossMethod(ga.GAConfig, ga.prepare, False, False, "gradient ascent on the target (negated LM loss)"),
    "gd": LossMethod(gd.GDConfig, gd.prepare, True, True, "gradient difference: ascent on the target, descent on retain text"),
    "npo": LossMethod(npo.NPOConfig, npo.prepare, True, False,
                      "negative preference optimisation against the frozen baseline (Zhang et al. 2024), optional retain term"),
}
