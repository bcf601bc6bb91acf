"""Membership inference on the target: can one still tell target text from similar unseen text
by the model's token probabilities? (MUSE's privacy leak uses Min-K%; Min-K%++ is stronger.)

- Min-K% (Shi et al. 2024): mean of the lowest k% token log-probabilities log p(x_t | x_<t).
- Min-K%++ (Zhang et al. 2024): per token (log p(x_t) − μ_t) / σ_t, with μ_t and σ_t the mean
  and standard deviation of log p(v) for v drawn from the model's own next-token distribution;
  mean of the lowest k%.

For both, a higher score = the text looks more like training data.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp import batches, distributed
from whp.corpus import read_text
from whp.errors import WhpError


def _lowest_mean(values: torch.Tensor, k: float) -> float:
    """Mean of the lowest ceil(k·n) values (at least one) of a 1-D tensor."""
    count = max(1, math.ceil(k * values.numel()))
    return values.sort().values[:count].mean().item()


def _token_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int, max_tokens: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per text: (log p(x_t), Min-K%++ z-scores), each (n_t,), for every predicted token."""
    rows = [r[:max_tokens] for r in batches.encode(tokenizer, texts)]
    for text, row in zip(texts, rows):
        if len(row) < 2:
            raise WhpError(f"text has fewer than 2 tokens, nothing to score: {text[:60]!r}")
    device, pad = batches.model_device(model), batches.pad_id(tokenizer)
    mine: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.inference_mode():
        for batch in batches.my_batches(len(rows), batch_size):
            input_ids, mask = batches.left_pad([rows[i] for i in batch], pad, device)  # (B, T)
            logits = batches.forward_logits(model, input_ids, mask)[:, :-1]  # (B, T-1, V)
            for row, i in enumerate(batch):
                n = len(rows[i]) - 1  # predicted tokens: the last n positions (left padding)
                logp = logits[row, -n:].log_softmax(-1)  # (n, V), one row at a time to bound memory
                token_logp = logp.gather(-1, input_ids[row, -n:, None]).squeeze(-1)  # (n,)
                p = logp.exp()
                mu = (p * logp).sum(-1)  # (n,)
                sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()  # (n,)
                mine[i] = (token_logp.cpu(), ((token_logp - mu) / sigma).cpu())
    every = distributed.merged(mine)
    return [every[i] for i in range(len(rows))]


def min_k_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    k: float = 0.2,
    batch_size: int = 4,
    max_tokens: int = 512,
    plus_plus: bool = False,
) -> list[float]:
    """Min-K% score per text (mean of its lowest k% token log-probs, ≤ 0), or with `plus_plus`
    Min-K%++ (mean of its lowest k% calibrated token scores); higher = more member-like."""
    scores = _token_scores(model, tokenizer, texts, batch_size, max_tokens)
    return [_lowest_mean(z if plus_plus else lp, k) for lp, z in scores]


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve by the rank statistic (Mann-Whitney U / n₊n₋), ties counted
    half: the probability that a random positive scores above a random negative."""
    if not positive or not negative:
        raise ValueError("AUC needs at least one positive and one negative score")
    scored = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum, i = 0.0, 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(label for _, label in scored[i:j])
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def membership_auc(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    member_texts: Sequence[str],
    nonmember_texts: Sequence[str],
    k: float = 0.2,
    batch_size: int = 4,
    max_tokens: int = 512,
) -> dict:
    """How well Min-K% and Min-K%++ tell target passages (members) from similar passages the
    model never trained on (non-members). AUC 0.5 = indistinguishable, 1 = every target passage
    looks more familiar than every non-member. value = the Min-K% AUC (as MUSE's privacy leak).
    An unlearned model should come close to the AUC of a model that never saw the target (MUSE
    compares with a retrained model); far below it is a leak too (the target is conspicuously
    unfamiliar)."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    members = _token_scores(model, tokenizer, member_texts, batch_size, max_tokens)
    others = _token_scores(model, tokenizer, nonmember_texts, batch_size, max_tokens)
    mk = [_lowest_mean(lp, k) for lp, _ in members], [_lowest_mean(lp, k) for lp, _ in others]
    mkpp = [_lowest_mean(z, k) for _, z in members], [_lowest_mean(z, k) for _, z in others]
    min_k_auc, pp_auc = auc(*mk), auc(*mkpp)
    return {
        "value": min_k_auc,
        "min_k_auc": min_k_auc,
        "min_k_plus_plus_auc": pp_auc,
        "k": k,
        "members": len(members),
        "nonmembers": len(others),
        "member_min_k": mk[0],
        "nonmember_min_k": mk[1],
        "member_min_k_plus_plus": mkpp[0],
        "nonmember_min_k_plus_plus": mkpp[1],
    }


def passages(texts: list[str], words: int = 150) -> list[str]:
    """Texts cut into passages of about `words` words."""
    all_words = "\n\n".join(read_text([t]) for t in texts).split()
    return [" ".join(all_words[i : i + words]) for i in range(0, len(all_words) - words + 1, words)]


def measure(model, tokenizer, cfg, path: str) -> dict:
    """Min-K% and Min-K%++ AUC: target passages against retain passages (whp eval)."""
    return membership_auc(model, tokenizer, passages(cfg.target_text), passages(cfg.retain_text))
