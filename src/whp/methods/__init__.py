"""Unlearning methods and stage objectives, each a loss function over the shared training loop.

A loss function takes `(model, batch)` and returns `(loss, n_tokens)`; `whp.train.train` does
the rest. `LOSS_METHODS` registers the methods that are one training stage over the baseline:
each module declares its `METHOD` (whp.methods.base.LossMethod: its settings section, a
`prepare` that builds examples and the loss, whether it reads retain text). A new one is a
module with its settings, loss and `METHOD`, plus its line below; its settings section, its
`--method` choice and its stage follow from this registry.
"""

from __future__ import annotations

from whp.methods import ga, gd, npo
from whp.methods.base import LossMethod

LOSS_METHODS: dict[str, LossMethod] = {m.name: m for m in (
    ga.METHOD,
    gd.METHOD,
    npo.METHOD,
)}
