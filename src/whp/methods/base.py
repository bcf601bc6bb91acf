"""What a method that is one loss over the baseline declares (`--method ga|gd|npo`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class LossMethod:
    name: str  # the --method name, and the name of its settings section
    config: type  # its settings section, e.g. GAConfig (a dataclass with a `train` overrides field)
    prepare: Callable  # (model, target examples, retain examples, settings, train settings, dtype) -> (examples, loss_fn)
    uses_retain: bool  # whether `--retain` text enters the loss
    needs_retain: bool  # whether it is required
    description: str  # one line for help text and model cards
