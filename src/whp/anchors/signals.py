"""Model signals for candidate anchors.

- **reinforced**: how much the reinforced model R raises an expression over the baseline B in
  the target's own contexts: the mean, over a few sampled occurrences, of
  Σ_tokens [log p_R(token | context) − log p_B(token | context)] (nats). Log-probabilities,
  not raw logits: fine-tuning can shift every logit of a position alike, and a log-probability
  only moves when the token gains on its competitors.
- **prior**: B's log-probability of the expression out of context (after a few neutral
  openings), for salience when no reference text is given.

To stay practical on a whole book series, the target is cut into windows of `window` tokens;
for each candidate up to `per_candidate` occurrences are sampled (seeded), preferring windows
already chosen for other candidates, and only the chosen windows go through the two models, in
batches. An occurrence needs `min_context` tokens of context before it in its window.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from whp.batches import chunks, left_pad, position_ids

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ids (B, T), mask (B, T) -> logits (B, T, V)
Span = tuple[int, int]  # [start, end) characters, or tokens


def model_forward(model, device: torch.device) -> Forward:
    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(device), mask.to(device)
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits

    return forward


@dataclass
class ModelPair:
    baseline: Forward
    reinforced: Forward | None = None


def token_span(offsets: Sequence[tuple[int, int]], ends: Sequence[int], span: Span) -> Span | None:
    """Tokens [a, b) that cover exactly the characters `span` (token a may also hold the space
    before it); None when a token straddles the span's start or end. `ends`: each token's end."""
    start, end = span
    a = bisect.bisect_right(ends, start)  # the first token that ends after `start`
    if a >= len(offsets) or not start - 1 <= offsets[a][0] <= start:
        return None
    b = bisect.bisect_left(ends, end, lo=a)  # the first token that ends at or after `end`
    if b >= len(offsets) or offsets[b][1] != end:
        return None
    return a, b + 1


@dataclass(frozen=True)
class Sample:
    """One sampled occurrence: tokens [start, end) of window `window`."""

    window: int
    start: int
    end: int


def plan_samples(occurrences: dict[str, list[Span]], window: int, per_candidate: int, min_context: int,
                 seed: int = 0) -> dict[str, list[Sample]]:
    """Up to `per_candidate` occurrences of each key (token spans over the whole text), in windows
    of `window` tokens; rare keys choose first, and occurrences in windows already chosen are
    preferred, so that few windows serve many keys."""
    rng = random.Random(seed)
    chosen: set[int] = set()
    plan: dict[str, list[Sample]] = {}
    for key in sorted(occurrences, key=lambda k: (len(occurrences[k]), k)):
        usable = []
        for a, b in occurrences[key]:
            w = a // window
            if a - w * window >= min_context and b <= (w + 1) * window:
                usable.append(Sample(w, a - w * window, b - w * window))
        rng.shuffle(usable)
        usable.sort(key=lambda s: s.window not in chosen)  # stable: shuffled within each group
        plan[key] = usable[:per_candidate]
        chosen.update(s.window for s in plan[key])
    return plan


@torch.inference_mode()
def sampled_gains(pair: ModelPair, ids: Sequence[int], window: int, plan: dict[str, list[Sample]],
                  batch_size: int) -> dict[str, tuple[float | None, float | None]]:
    """Per key: (mean reinforced gain, mean baseline log-probability) over its samples (nats);
    (None, None) for a key without samples."""
    windows = sorted({s.window for samples in plan.values() for s in samples})
    wanted: dict[int, list[Sample]] = {w: [] for w in windows}
    for samples in plan.values():
        for s in samples:
            wanted[s.window].append(s)
    totals: dict[Sample, tuple[float, float]] = {}
    for batch in chunks(len(windows), batch_size):
        rows = [list(ids[windows[i] * window : (windows[i] + 1) * window]) for i in batch]
        input_ids, mask = left_pad(rows, 0, torch.device("cpu"))  # (B, W); only the last window is short
        pad = [input_ids.shape[1] - len(r) for r in rows]
        index, targets, owners = [], [], []
        for row, i in enumerate(batch):
            for s in wanted[windows[i]]:
                for t in range(s.start, s.end):
                    index.append((row, pad[row] + t - 1))
                    targets.append(rows[row][t])
                    owners.append(s)
        rows_idx = torch.tensor([r for r, _ in index])
        cols_idx = torch.tensor([c for _, c in index])
        target = torch.tensor(targets)
        base = _token_logprobs(pair.baseline(input_ids, mask), rows_idx, cols_idx, target)  # (K,)
        gain = _token_logprobs(pair.reinforced(input_ids, mask), rows_idx, cols_idx, target) - base if pair.reinforced else torch.zeros_like(base)
        for s, g, b in zip(owners, gain.tolist(), base.tolist()):
            previous = totals.get(s, (0.0, 0.0))
            totals[s] = (previous[0] + g, previous[1] + b)
    result = {}
    for key, samples in plan.items():
        if not samples:
            result[key] = (None, None)
            continue
        gains = [totals[s][0] for s in samples]
        bases = [totals[s][1] for s in samples]
        result[key] = (sum(gains) / len(gains) if pair.reinforced else None, sum(bases) / len(bases))
    return result


def _token_logprobs(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    picked = logits[rows, cols.to(logits.device)].float()  # (K, V): only the positions asked for
    return torch.log_softmax(picked, dim=-1).gather(1, target.to(logits.device)[:, None])[:, 0].cpu()


PRIOR_OPENINGS = ("It was", "He said that", "We talked about")


@torch.inference_mode()
def prior_logprobs(baseline: Forward, tokenizer, keys: Sequence[str], batch_size: int = 64,
                   openings: Sequence[str] = PRIOR_OPENINGS) -> dict[str, float]:
    """B's mean log-probability (nats, summed over the expression's tokens) of " key" after each
    opening: how expected the expression is to a model that has not been told the context."""
    opening_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in openings]
    rows, spans = [], []
    for key in keys:
        key_ids = tokenizer(" " + key, add_special_tokens=False)["input_ids"]
        for prefix in opening_ids:
            rows.append(prefix + key_ids)
            spans.append((len(prefix), len(prefix) + len(key_ids)))
    logps = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    for batch in chunks(len(order), batch_size):
        chosen = [rows[order[i]] for i in batch]
        input_ids, mask = left_pad(chosen, 0, torch.device("cpu"))  # (B, T)
        width = input_ids.shape[1]
        index, targets, owners = [], [], []
        for row, i in enumerate(batch):
            a, b = spans[order[i]]
            shift = width - len(chosen[row])
            for t in range(a, b):
                index.append((row, shift + t - 1))
                targets.append(chosen[row][t])
                owners.append(order[i])
        values = _token_logprobs(baseline(input_ids, mask), torch.tensor([r for r, _ in index]),
                                 torch.tensor([c for _, c in index]), torch.tensor(targets))
        for owner, v in zip(owners, values.tolist()):
            logps[owner] += v
    per = len(openings)
    return {key: sum(logps[k * per : (k + 1) * per]) / per for k, key in enumerate(keys)}
