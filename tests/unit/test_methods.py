"""The loss of each unlearning method (ga, gd, npo) on hand-made logits, to exact values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whp.common import IGNORE
from whp.methods.ga import ga_loss
from whp.methods.gd import gd_loss
from whp.methods.head import from_logits
from whp.methods.lm import token_nll
from whp.methods.npo import NPOConfig, npo_loss, npo_term, top_k_kl


def exact(value: float):
    """Equal up to float32 rounding (the losses compute in float32)."""
    return pytest.approx(value, rel=1e-6, abs=1e-6)


class FixedLogits(torch.nn.Module):
    """A stand-in model that returns the given logits (B, T, V) whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask):
        assert input_ids.shape == self.logits.shape[:2]
        return SimpleNamespace(logits=self.logits)


def probs_logits(*rows: list[list[float]]) -> torch.Tensor:
    """Logits (B, T, V) whose softmax is the given probabilities."""
    return torch.tensor(rows, dtype=torch.float64).log()


def batch(labels: list[list[int]], retain: list[bool] | None = None, **extra) -> dict[str, torch.Tensor]:
    ids = torch.tensor(labels).clamp(min=0)  # (B, T)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(labels)}
    if retain is not None:
        out["is_retain"] = torch.tensor(retain)
    return out | extra


# Two rows of 3 tokens over a vocabulary of 2; position t predicts the label at t+1.
TARGET = [[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]  # labels 0, 1, 0: NLL log 2 at t=0, log(4/3) at t=1
RETAIN = [[0.75, 0.25], [0.5, 0.5], [0.5, 0.5]]  # labels 1, 0, 1: NLL log(4/3) at t=0, log 2 at t=1
LABELS = [[0, 0, 1], [1, 0, 1]]


def test_token_nll_reads_the_label_of_the_next_position_and_skips_ignored_and_padding():
    labels = [[0, 0, 1], [1, 0, IGNORE]]
    b = batch(labels)
    b["attention_mask"] = torch.tensor([[1, 1, 1], [1, 1, 0]])
    nll, valid = token_nll(from_logits(probs_logits(TARGET, RETAIN)), b)
    assert valid.tolist() == [[True, True], [True, False]]
    assert nll[0].tolist() == pytest.approx([math.log(2), math.log(4 / 3)], rel=1e-6)
    assert nll[1, 0].item() == exact(math.log(4 / 3))


def test_ga_is_the_negated_mean_nll():
    loss, n = ga_loss(FixedLogits(probs_logits(TARGET, RETAIN)), batch(LABELS))
    assert n == 4
    assert loss.item() == exact(-(math.log(2) + math.log(4 / 3)) / 2)


def test_gd_ascends_on_target_and_descends_on_retain():
    b = batch([[0, 0, 1], [0, 0, 1]], retain=[False, True])
    loss, n = gd_loss(FixedLogits(probs_logits(TARGET, [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])), b, retain_weight=3.0)
    target_nll = (math.log(2) + math.log(4 / 3)) / 2
    retain_nll = (-math.log(0.9) - math.log(0.8)) / 2
    assert n == 4
    assert loss.item() == exact(-target_nll + 3.0 * retain_nll)


def test_gd_without_retain_rows_is_ga():
    model = FixedLogits(probs_logits(TARGET, RETAIN))
    gd, _ = gd_loss(model, batch(LABELS, retain=[False, False]), retain_weight=5.0)
    ga, _ = ga_loss(model, batch(LABELS))
    assert gd.item() == exact(ga.item())


def test_npo_term_at_the_reference_and_at_known_ratios():
    beta = 0.1
    assert npo_term(torch.tensor([-3.0]), torch.tensor([-3.0]), beta).item() == exact(2 * math.log(2) / beta)
    # π/π_ref = 3, β = 1: (2/1)·log(1 + 3)
    assert npo_term(torch.tensor([math.log(3.0)]), torch.tensor([0.0]), 1.0).item() == exact(2 * math.log(4))
    # π/π_ref = 1/4, β = 0.5: 4·log(1 + (1/4)^0.5) = 4·log 1.5
    assert npo_term(torch.tensor([math.log(0.25)]), torch.tensor([0.0]), 0.5).item() == exact(4 * math.log(1.5))


@settings(max_examples=100, deadline=None)
@given(delta=st.floats(-50, 50), beta=st.floats(0.01, 5))
def test_npo_term_is_positive_and_its_slope_is_twice_sigmoid(delta, beta):
    logprob = torch.tensor([delta], dtype=torch.float64, requires_grad=True)
    value = npo_term(logprob, torch.tensor([0.0], dtype=torch.float64), beta)
    value.sum().backward()
    assert value.item() >= 0
    assert logprob.grad.item() == exact(2 * torch.sigmoid(torch.tensor(beta * delta, dtype=torch.float64)).item())


def test_npo_loss_sums_log_probabilities_over_the_sequence():
    # row 0's sequence log-probability: log(1/2) + log(3/4); reference chosen so that π/π_ref = 3, β = 1
    logprob = math.log(0.5) + math.log(0.75)
    b = batch([[0, 0, 1]], ref_logprob=torch.tensor([logprob - math.log(3)], dtype=torch.float64))
    loss, n = npo_loss(FixedLogits(probs_logits(TARGET)), b, beta=1.0)
    assert n == 2
    assert loss.item() == exact(2 * math.log(4))


def test_npo_with_gd_retain_adds_the_retain_nll():
    b = batch(LABELS, retain=[False, True], ref_logprob=torch.tensor([math.log(0.5) + math.log(0.75), 0.0], dtype=torch.float64))
    loss, n = npo_loss(FixedLogits(probs_logits(TARGET, RETAIN)), b, beta=0.5, retain_loss="gd", retain_weight=2.0)
    retain_nll = (math.log(4 / 3) + math.log(2)) / 2
    assert n == 4
    assert loss.item() == exact(2 * math.log(2) / 0.5 + 2.0 * retain_nll)


def log_q(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return logits.float().log_softmax(-1).gather(-1, indices)  # (B, T, k)


def test_top_k_kl_on_hand_made_distributions():
    model_logits = probs_logits([[0.75, 0.25]])  # q
    baseline = torch.tensor([[[0.5, 0.5]]], dtype=torch.float64).log()  # p, both tokens kept
    indices = torch.tensor([[[0, 1]]])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert top_k_kl(log_q(model_logits, indices), baseline).item() == exact(expected)
    assert top_k_kl(log_q(baseline, indices), baseline).item() == exact(0.0)


def test_top_k_kl_counts_the_rest_of_the_vocabulary_as_one_outcome():
    p, q = [0.5, 0.3, 0.2], [0.6, 0.2, 0.2]
    baseline_top = torch.tensor([[[math.log(0.5), math.log(0.3)]]], dtype=torch.float64)  # k = 2 of V = 3
    indices = torch.tensor([[[0, 1]]])
    full_kl = sum(a * math.log(a / b) for a, b in zip(p, q))  # the rest is one token, so the bucket is exact
    assert top_k_kl(log_q(probs_logits([q]), indices), baseline_top).item() == exact(full_kl)
    assert top_k_kl(log_q(probs_logits([p]), indices), baseline_top).item() == exact(0.0)


def test_npo_with_kl_retain_uses_the_baseline_top_k():
    top_values = torch.tensor([[[0.5, 0.5]] * 3] * 2, dtype=torch.float64).log()  # (B, T, k) baseline uniform
    top_indices = torch.tensor([[[0, 1]] * 3] * 2)
    b = batch(LABELS, retain=[False, True], ref_logprob=torch.tensor([math.log(0.5) + math.log(0.75), 0.0], dtype=torch.float64),
              top_values=top_values, top_indices=top_indices)
    loss, _ = npo_loss(FixedLogits(probs_logits(TARGET, RETAIN)), b, beta=1.0, retain_loss="kl", retain_weight=1.0)
    kl_t0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # retain row, position 0 (q = 3/4, 1/4)
    assert loss.item() == exact(2 * math.log(2) + kl_t0 / 2)  # position 1: q = p, KL 0


def test_npo_config_checks():
    with pytest.raises(ValueError, match="beta"):
        NPOConfig(beta=0)
    with pytest.raises(ValueError, match="retain_loss"):
        NPOConfig(retain_loss="ce")
