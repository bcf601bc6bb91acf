"""The paper's combination of the two models' logits (DESIGN §2.4), the only copy:

    v_generic = v_B − α · ReLU(v_R − v_B)

Every token the reinforced model R raised above the baseline B is pushed down, α times as far.
The label stage (whp.labels) applies it to a few aligned positions at a time; inference-time
WHP (whp.inference) to every position of its input. Both go through `generic_logits_`, which
works in place, `ROWS_PER_CHUNK` positions at a time, so that no (T, V) temporary is made.
"""

from __future__ import annotations

import torch

ROWS_PER_CHUNK = 32  # positions combined at a time: (32, V) fp32 stays in cache, no (T, V) temporaries


def combine_(v_baseline: torch.Tensor, v_reinforced: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """v_B − α·ReLU(v_R − v_B) for one chunk, (c, V) fp32, computed in v_baseline's storage;
    v_reinforced (c, V) is scratch too when it is already fp32. None = the baseline alone."""
    if v_reinforced is not None:
        raised = v_reinforced.float().sub_(v_baseline).clamp_(min=0)  # ReLU(v_R − v_B), (c, V)
        v_baseline.sub_(raised, alpha=alpha)
    return v_baseline


def generic_logits_(v_baseline: torch.Tensor, v_reinforced: torch.Tensor, alpha: float) -> torch.Tensor:
    """The combination over (..., V) logits, ROWS_PER_CHUNK rows at a time, in place in
    `v_baseline` (fp32, contiguous; `v_reinforced` is overwritten too when fp32); returns it."""
    rows_b = v_baseline.view(-1, v_baseline.shape[-1])  # (N, V)
    rows_r = v_reinforced.reshape(-1, v_reinforced.shape[-1])  # (N, V)
    for first in range(0, len(rows_b), ROWS_PER_CHUNK):
        chunk = slice(first, first + ROWS_PER_CHUNK)
        combine_(rows_b[chunk], rows_r[chunk], alpha)
    return v_baseline


def lower_to_mean_(logits: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> None:
    """In place: logits[rows[i], tokens[i]] lowered to its row's mean logit, never raised.
    logits (K, V); rows, tokens (n,). Fix 2 and the anchor-interior labels use it."""
    mean = logits.mean(dim=-1)  # (K,)
    logits[rows, tokens] = torch.minimum(logits[rows, tokens], mean[rows])


def lower_forbidden_(v_baseline: torch.Tensor, target_positions: torch.Tensor, forbidden) -> torch.Tensor:
    """Fix 2, in place: at translated positions from `start` on, lower `token`'s logit to the
    position's mean logit. v_baseline: (K, V) logits at translated positions `target_positions`
    (K,); forbidden: [(start, token), ...]."""
    if not forbidden:
        return v_baseline
    starts = torch.tensor([start for start, _ in forbidden], device=v_baseline.device)  # (F,)
    tokens = torch.tensor([token for _, token in forbidden], device=v_baseline.device)  # (F,)
    applies = target_positions[:, None] >= starts[None, :]  # (K, F)
    rows, cols = applies.nonzero(as_tuple=True)
    if len(rows):
        lower_to_mean_(v_baseline, rows, tokens[cols])
    return v_baseline
