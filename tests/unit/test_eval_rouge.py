from hypothesis import given, settings
from hypothesis import strategies as st

from whp.evaluate.memorisation import (
    lcs_length,
    passage_windows,
    rouge_l,
    rouge_l_recall,
    rouge_l_scores,
    words,
)

sentences = st.lists(st.sampled_from(["holmes", "watson", "the", "a", "pipe", "Fog", "221b", "..."]), max_size=12).map(
    " ".join
)


def test_known_values():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("dog", "the cat") == 0.0
    # LCS of "police killed the gunman" / "the gunman killed police" is 2 ("police killed" or "the gunman")
    p, r, f = rouge_l_scores("police killed the gunman", "the gunman killed police")
    assert (p, r) == (0.5, 0.5) and f == 0.5
    assert rouge_l_recall("Mrs Hudson, the landlady", "Mrs. Hudson") == 1.0
    assert words("Holmes's PIPE!") == ["holmes", "s", "pipe"]
    assert rouge_l("", "") == 0.0 and rouge_l("a", "") == 0.0


def test_lcs():
    assert lcs_length("abcbdab", "bdcaba") == 4
    assert lcs_length([], ["a"]) == 0


@settings(deadline=None)  # the CPU is shared; timing is not under test
@given(sentences, sentences)
def test_rouge_bounds_and_symmetry(a, b):
    f = rouge_l(a, b)
    assert 0.0 <= f <= 1.0
    assert f == rouge_l(b, a)
    assert rouge_l_recall(a, b) == rouge_l_scores(b, a)[0]


@settings(deadline=None)  # the CPU is shared; timing is not under test
@given(sentences)
def test_rouge_identity(a):
    assert rouge_l(a, a) == (1.0 if words(a) else 0.0)
    assert rouge_l(a.upper(), a) == rouge_l(a, a)


@settings(deadline=None)  # the CPU is shared; timing is not under test
@given(st.integers(0, 500), st.integers(1, 50), st.integers(1, 20), st.integers(0, 3))
def test_passage_windows_disjoint_in_text(n_tokens, window, n, seed):
    starts = passage_windows(n_tokens, window, n, seed)
    assert len(starts) <= n and starts == sorted(starts)
    assert all(s + window <= n_tokens for s in starts)
    assert all(b - a >= window for a, b in zip(starts, starts[1:]))
    assert starts == passage_windows(n_tokens, window, n, seed)
