"""One ranking from several signals, with every part kept for inspection (pure).

Each signal is standardised over the candidates being ranked (z-score: mean 0, standard
deviation 1), so the weights say how much each counts whatever its units; a signal that was
not measured (no reinforced model) has weight 0. The score of a candidate is the weighted sum
of its standardised signals; the raw values are written out beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

SIGNALS = ("salience", "reinforced", "capitalised", "frequency", "cohesion", "surprise")


@dataclass
class ScoreWeights:
    """Weights of the standardised signals in the combined score."""

    salience: float = field(default=1.0, metadata={"help": "target rate over reference rate (log ratio)"})
    reinforced: float = field(default=0.25, metadata={"help": "how much R raises the expression's log-probability over B in context"})
    capitalised: float = field(default=2.0, metadata={"help": "share of mid-sentence occurrences written capitalised"})
    frequency: float = field(default=0.5, metadata={"help": "log count in the target"})
    cohesion: float = field(default=0.0, metadata={"help": "multi-word: count of the whole / count of its rarest word"})
    surprise: float = field(default=0.25, metadata={"help": "the baseline's surprise (-log p) at the expression in the target's contexts"})

    def __post_init__(self) -> None:
        for name in SIGNALS:
            if getattr(self, name) < 0:
                raise ValueError(f"weight {name} must be >= 0")


def standardise(values: Sequence[float]) -> list[float]:
    """z-scores; all zeros when the values do not vary (or there are fewer than two)."""
    if len(values) < 2:
        return [0.0] * len(values)
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if spread <= 1e-9 * max(1.0, abs(mean)):  # constant up to rounding
        return [0.0] * len(values)
    return [(v - mean) / spread for v in values]


def combine(signals: Sequence[Mapping[str, float | None]], weights: ScoreWeights) -> list[float]:
    """The combined score of each candidate. A signal missing (None) for every candidate is skipped;
    one missing for some candidates counts as that signal's mean (z = 0) for them."""
    scores = [0.0] * len(signals)
    for name in SIGNALS:
        weight = getattr(weights, name)
        present = [i for i, s in enumerate(signals) if s.get(name) is not None]
        if weight == 0 or not present:
            continue
        for i, z in zip(present, standardise([float(signals[i][name]) for i in present])):
            scores[i] += weight * z
    return scores


def rank(keys: Sequence[str], scores: Sequence[float]) -> list[int]:
    """Indices from the best score to the worst; ties by key, so the order is reproducible."""
    return sorted(range(len(keys)), key=lambda i: (-scores[i], keys[i]))
