import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whp.evaluate.mia import _lowest_mean, auc

scores = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=15)


def test_hand_made():
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1], [1]) == 0.5
    assert auc([2, 0], [1]) == 0.5
    # pairs (pos > neg): 3>1, 3>2, 2>1, 2=2 (half) -> 3.5 of 4
    assert auc([3, 2], [1, 2]) == 3.5 / 4
    with pytest.raises(ValueError):
        auc([], [1])


def brute_force(pos, neg):
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


@settings(deadline=None)  # the CPU is shared; timing is not under test
@given(scores, scores)
def test_auc_properties(pos, neg):
    a = auc(pos, neg)
    assert 0.0 <= a <= 1.0
    assert a == pytest.approx(brute_force(pos, neg))
    assert auc(neg, pos) == pytest.approx(1 - a)
    assert auc([3 * p + 1 for p in pos], [3 * n + 1 for n in neg]) == pytest.approx(a)  # monotone invariance


def test_lowest_mean():
    values = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    assert _lowest_mean(values, 0.2) == 1.0
    assert _lowest_mean(values, 0.4) == 1.5
    assert _lowest_mean(values, 0.01) == 1.0  # at least one token
    assert _lowest_mean(values, 1.0) == 3.0
