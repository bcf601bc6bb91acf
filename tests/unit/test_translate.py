"""Alignment of original and translated blocks (DESIGN §2.3), for byte-level BPE and SentencePiece."""

from __future__ import annotations

import bisect

import pytest
from helpers_tiny import byte_level_tokenizer, sentencepiece_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whp.anchors.dictionary import AnchorMatcher
from whp.corpus import make_blocks
from whp.translate import (
    align_block,
    first_token_ids,
    token_ends,
    translate_text,
    word_ends,
)

TOKENIZERS = {"byte_level": byte_level_tokenizer(), "sentencepiece": sentencepiece_tokenizer()}
CHOICE = {"Holmes": "Jon", "Watson": "Tom Hale", "Baker Street": "Elm Road", "Baker": "Cook", "Moriarty": "Smith",
          "Red-Headed League": "Copper Club", "Study in Scarlet": "Sketch of Grey Rain"}
MATCHER = AnchorMatcher(CHOICE)
PLAIN_WORDS = ["the", "detective", "said", "London", "fog", "Holmesian", "Bakery", "pipe", "violin", "tea", "221", "é"]
PUNCTUATION = [".", ",", "'s", "'", "!", " (", ")", "\n", "  ", " \""]


def aligned(text: str, tokenizer, choice=CHOICE, matcher=MATCHER):
    block = make_blocks(text, tokenizer, block_size=100_000, keep_tail=True)[0]
    return block, align_block(block.text, block.ids, block.offsets, tokenizer, matcher, choice)


def offsets_of(tokenizer, text: str) -> list[int]:
    return token_ends(tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])


def translate_prefix(text: str, occurrences, cut: int) -> str:
    """The original text up to `cut` with the full text's anchors (those ending by `cut`) replaced."""
    out, cursor = "", 0
    for occ in occurrences:
        if occ.end > cut:
            break
        word_start = occ.end - len(occ.key)
        out += text[cursor:word_start] + occ.alternative
        cursor = occ.end
    return out + text[cursor:cut]


@st.composite
def texts(draw) -> str:
    pieces = draw(st.lists(st.sampled_from(PLAIN_WORDS + list(CHOICE) + PUNCTUATION), min_size=1, max_size=40))
    text = ""
    for piece in pieces:
        text += piece if piece in PUNCTUATION or not text else " " + piece
    return text


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts())
def test_kept_positions_have_translated_prefixes(name, text):
    """For every kept (t, s): translated text up to token s = translation of the original up to token t."""
    tokenizer = TOKENIZERS[name]
    block, result = aligned(text, tokenizer)
    if not result.occurrences:
        return
    translated, occurrences = translate_text(block.text, MATCHER, CHOICE)
    original_ends = token_ends(block.offsets)
    translated_ends = offsets_of(tokenizer, translated)
    for t, s in zip(result.source_positions, result.target_positions):
        expected = translate_prefix(block.text, occurrences, original_ends[t])
        assert translated[: translated_ends[s]] == expected, (t, s)
    assert result.source_positions == sorted(set(result.source_positions))
    assert result.target_positions == sorted(set(result.target_positions))


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=100, deadline=None)
@given(text=texts())
def test_inner_anchor_positions_and_repeats_are_ignored(name, text):
    tokenizer = TOKENIZERS[name]
    block, result = aligned(text, tokenizer)
    ends = token_ends(block.offsets)
    kept = set(result.source_positions)
    assert not kept & set(result.interior_positions)
    starts = [0] + ends[:-1]
    inside_some = {t for t in range(len(ends) - 1) for occ in result.occurrences if occ.start <= starts[t] and occ.start < ends[t] < occ.end}
    assert set(result.interior_positions) == inside_some, "interior = positions whose token ends strictly inside an anchor and starts within it"
    seen = set()
    for occ in result.occurrences:
        for t in kept:
            assert not occ.start < ends[t] < occ.end, "a position inside an anchor kept"
        first = bisect.bisect_right(ends, occ.start)  # first token reaching into the anchor
        if occ.key in seen and first > 0:
            assert first - 1 not in kept, "the position predicting a repeated anchor was kept (fix 1)"
        seen.add(occ.key)


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.sampled_from(PLAIN_WORDS), min_size=1, max_size=30))
def test_text_without_anchors_aligns_as_identity(name, words):
    block, result = aligned(" ".join(words), TOKENIZERS[name])
    assert result.translated_ids == list(block.ids)
    assert result.source_positions == result.target_positions == list(range(len(block.ids) - 1))
    assert result.forbidden == []


@pytest.mark.parametrize("name", TOKENIZERS)
def test_anchor_end_maps_to_translation_end_and_context_is_shared(name):
    tokenizer = TOKENIZERS[name]
    text = "The fog lay on Baker Street and the detective said the tea was cold."
    block, result = aligned(text, tokenizer)
    translated, _ = translate_text(block.text, MATCHER, CHOICE)
    assert translated == "The fog lay on Elm Road and the detective said the tea was cold."
    ends, t_ends = token_ends(block.offsets), offsets_of(tokenizer, translated)
    pairs = dict(zip(result.source_positions, result.target_positions))
    anchor_end = text.index(" and")
    t_last = ends.index(anchor_end)
    assert t_last in pairs and t_ends[pairs[t_last]] == translated.index(" and"), "last anchor token ↔ last translation token"
    before = ends.index(text.index(" Baker"))
    assert before in pairs, "the position before the anchor is kept"
    tail = [t for t, end in enumerate(ends[:-1]) if end > anchor_end]
    assert all(t in pairs for t in tail), "plain text after the anchor keeps every position"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_longest_candidate_wins(name):
    _, result = aligned("He walked down Baker Street past the Bakery and Baker.", TOKENIZERS[name])
    assert [o.key for o in result.occurrences] == ["Baker Street", "Baker"]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_possessive_and_block_edges(name):
    tokenizer = TOKENIZERS[name]
    text = "Holmes's violin was old, said Watson"
    block, result = aligned(text, tokenizer)
    assert [o.key for o in result.occurrences] == ["Holmes", "Watson"]
    translated, _ = translate_text(block.text, MATCHER, CHOICE)
    assert translated == "Jon's violin was old, said Tom Hale"
    ends = token_ends(block.offsets)
    kept = dict(zip(result.source_positions, result.target_positions))
    assert ends.index(len("Holmes")) in kept, "an anchor at the very start keeps its last token"
    assert max(kept) < len(block.ids) - 1, "the last position predicts beyond the block and has no label"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_repeated_anchor_fix1_example(name):
    """'my name is Holmes' after Holmes was already seen must not teach the generic name."""
    tokenizer = TOKENIZERS[name]
    text = "Holmes said the tea was cold. My name is Holmes, he said."
    block, result = aligned(text, tokenizer)
    ends = token_ends(block.offsets)
    second = text.index(" Holmes,")
    predictor = bisect.bisect_right(ends, second) - 1
    assert ends[predictor] <= second
    assert predictor not in result.source_positions
    first_predictor_free = ends.index(len("Holmes"))
    assert first_predictor_free in result.source_positions


@pytest.mark.parametrize("name", TOKENIZERS)
def test_fix2_forbids_first_tokens_after_first_use(name):
    tokenizer = TOKENIZERS[name]
    text = "The detective met Watson in London, and later the detective met Watson again."
    block, result = aligned(text, tokenizer)
    translated, occurrences = translate_text(block.text, MATCHER, CHOICE)
    t_ends = offsets_of(tokenizer, translated)
    first_end = occurrences[0].translated_end
    start = bisect.bisect_left(t_ends, first_end)
    assert t_ends[start] == first_end, "applies from the last token of the first translation on"
    assert sorted(result.forbidden) == sorted((start, tok) for tok in first_token_ids(tokenizer, "Tom Hale"))
    assert len(result.forbidden) >= 1


def test_multi_token_anchor_inner_positions():
    tokenizer = TOKENIZERS["byte_level"]
    text = "They met Moriarty at the falls."
    block, result = aligned(text, tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(block.ids))
    ends = token_ends(block.offsets)
    occ = result.occurrences[0]
    inside = [t for t, e in enumerate(ends) if occ.start < e < occ.end]
    assert inside, f"Moriarty should be several tokens here: {pieces}"
    assert not set(inside) & set(result.source_positions)
    assert result.interior_positions == inside, "recorded for the anchor_interiors option"
    assert all(occ.start < ends[t + 1] <= occ.end for t in inside), "each predicts a token of the same anchor"


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts())
def test_interior_word_pairs_join_matching_word_ends(name, text):
    """Each (t, s) of interior_word_pairs: t is an interior position ending the j-th word of its
    anchor, s the translated token ending the j-th word of the alternative, and the two have as
    many words; every such t whose matching word end is a translated token end is paired."""
    tokenizer = TOKENIZERS[name]
    block, result = aligned(text, tokenizer)
    translated, _ = translate_text(block.text, MATCHER, CHOICE)
    ends, t_ends = token_ends(block.offsets), offsets_of(tokenizer, translated)
    pairs = dict(result.interior_word_pairs)
    assert set(pairs) <= set(result.interior_positions)
    for t in result.interior_positions:
        occ = next(o for o in result.occurrences if o.start < ends[t] < o.end)
        key_ends, alt_ends = word_ends(occ.key), word_ends(occ.alternative)
        relative = ends[t] - (occ.end - len(occ.key))
        expected = None
        if len(key_ends) == len(alt_ends) and relative in key_ends:
            expected = occ.translated_end - len(occ.alternative) + alt_ends[key_ends.index(relative)]
        if t in pairs:
            assert t_ends[pairs[t]] == expected, (t, pairs[t])
            assert translated[: t_ends[pairs[t]]].endswith(occ.alternative[: alt_ends[key_ends.index(relative)]])
        else:
            assert expected is None or expected not in t_ends, f"position {t} could have been paired"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_word_pairs_need_as_many_words(name):
    """'Red-Headed' of 'Red-Headed League' pairs with 'Copper'; a three-word anchor with a four-word
    alternative pairs nothing; 'Baker Street' ↔ 'Elm Road' pairs ' Baker' with ' Elm'."""
    tokenizer = TOKENIZERS[name]
    text = "He read of the Red-Headed League and A Study in Scarlet near Baker Street today."
    block, result = aligned(text, tokenizer)
    translated, _ = translate_text(block.text, MATCHER, CHOICE)
    assert translated == "He read of the Copper Club and A Sketch of Grey Rain near Elm Road today."
    ends, t_ends = token_ends(block.offsets), offsets_of(tokenizer, translated)
    pairs = {ends[t]: t_ends[s] for t, s in result.interior_word_pairs}
    assert pairs == {text.index(" League"): translated.index(" Club"), text.index(" Street"): translated.index(" Road")}
