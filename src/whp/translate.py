"""Anchored translation of a block and the alignment of its positions (pure; DESIGN §2.3).

Works from character offsets, so any fast tokenizer will do (byte-level BPE, SentencePiece).
Both texts are tokenized whole; an original position t (which predicts token t+1) is kept
when the prefix ending with token t has a translated counterpart ending with a translated
token s, i.e. the translated prefix is the translation of the original prefix:
- outside anchors, a token end maps through the text shift of earlier anchors;
- the last token of an anchor maps to the last token of its translation;
- tokens ending strictly inside an anchor, or straddling an anchor boundary, are ignored
  (those strictly inside are recorded as `interior_positions`: an option labels them, generic.py);
  those that end a word of a multi-word anchor whose alternative has as many words are also
  paired with the end of the alternative's matching word (`interior_word_pairs`: "Red-Headed"
  of "Red-Headed League" ↔ "Copper-Haired" of "Copper-Haired Club"), for another option;
- fix 1: the position predicting the first token of an anchor already seen in the block is
  ignored;
- fix 2: after a translation first occurs, B's logits for its first token(s) are lowered at
  every later translated position (recorded here as `forbidden`, applied in generic.py).
An anchor's region includes the single space before it, so " Holmes" ↔ " Jon" as whole tokens.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from transformers import PreTrainedTokenizerBase

from whp.anchors.dictionary import AnchorMatcher


@dataclass(frozen=True)
class Occurrence:
    """One anchor in a block: its region in the original and in the translated text."""

    key: str
    alternative: str
    start: int  # original region [start, end), leading space included
    end: int
    translated_start: int  # translated region [translated_start, translated_end)
    translated_end: int


@dataclass
class AlignedBlock:
    original_ids: list[int]  # (T,)
    translated_ids: list[int]  # (T',)
    source_positions: list[int]  # (K,) original positions t that receive a generic label
    target_positions: list[int]  # (K,) translated positions aligned with them
    forbidden: list[tuple[int, int]]  # (first translated position it applies at, token id): fix 2
    occurrences: list[Occurrence]
    interior_positions: list[int] = field(default_factory=list)  # (J,) original positions whose next token is inside the same anchor
    interior_word_pairs: list[tuple[int, int]] = field(default_factory=list)  # (original t, translated s) at the same word end inside an anchor and its alternative


def translate_text(text: str, matcher: AnchorMatcher, choice: dict[str, str]) -> tuple[str, list[Occurrence]]:
    """Replace every anchor by its chosen alternative; return the new text and the regions."""
    pieces, occurrences, cursor, shift = [], [], 0, 0
    for match in matcher.find(text):
        key = match.group(0)
        start = match.start() - 1 if match.start() > 0 and text[match.start() - 1] == " " else match.start()
        pieces.append(text[cursor : match.start()])
        pieces.append(choice[key])
        cursor = match.end()
        translated_start = start + shift
        shift += len(choice[key]) - len(key)
        occurrences.append(Occurrence(key, choice[key], start, match.end(), translated_start, match.end() + shift))
    pieces.append(text[cursor:])
    return "".join(pieces), occurrences


def map_boundary(position: int, occurrences: Sequence[Occurrence], region_starts: Sequence[int]) -> int | None:
    """Translated character position of original boundary `position`; None strictly inside an anchor."""
    i = bisect.bisect_left(region_starts, position)  # occurrences[:i] start before `position`
    if i == 0:
        return position
    last = occurrences[i - 1]
    if position < last.end:
        return None
    return position + (last.translated_end - last.end)


def token_ends(offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Non-decreasing end offsets (trimmed whitespace tokens can report an earlier end)."""
    ends, running = [], 0
    for _, end in offsets:
        running = max(running, end)
        ends.append(running)
    return ends


def _ranked(ends: Sequence[int]) -> list[tuple[int, int]]:
    """(end, rank among tokens with that end) per token, to pair tokens that share an end."""
    seen: dict[int, int] = defaultdict(int)
    ranked = []
    for end in ends:
        ranked.append((end, seen[end]))
        seen[end] += 1
    return ranked


def _straddles(start: int, end: int, occurrences: Sequence[Occurrence]) -> bool:
    return any(start < o.start < end or start < o.end < end for o in occurrences)


def first_token_ids(tokenizer: PreTrainedTokenizerBase, phrase: str) -> set[int]:
    """The first token of `phrase`, with and without a leading space, as the tokenizer makes it."""
    ids = set()
    for variant in (" " + phrase, phrase):
        tokens = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if tokens:
            ids.add(tokens[0])
    return ids


def align_block(
    text: str,
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    tokenizer: PreTrainedTokenizerBase,
    matcher: AnchorMatcher,
    choice: dict[str, str],
) -> AlignedBlock:
    """Translate one block and align its positions (see the module docstring for the rules)."""
    translated, occurrences = translate_text(text, matcher, choice)
    last_position = len(ids) - 1  # position T-1 predicts a token outside the block
    if not occurrences:
        identity = list(range(last_position))
        return AlignedBlock(list(ids), list(ids), identity, list(identity), [], [])
    encoding = tokenizer(translated, add_special_tokens=False, return_offsets_mapping=True)
    translated_ids, translated_ends = encoding["input_ids"], token_ends(encoding["offset_mapping"])
    translated_index = {key: j for j, key in enumerate(_ranked(translated_ends))}
    region_starts = [o.start for o in occurrences]
    ends = token_ends(offsets)
    ignored = _repeated_anchor_predictors(ends, occurrences)
    source, target, interior, word_pairs = [], [], [], []
    for t, (end, rank) in enumerate(_ranked(ends[:last_position])):
        start = ends[t - 1] if t else 0
        mapped = map_boundary(end, occurrences, region_starts)
        straddles = _straddles(start, end, occurrences)
        if mapped is None and not straddles:
            interior.append(t)
            word_end = _matching_word_end(end, occurrences[bisect.bisect_left(region_starts, end) - 1])
            s = None if word_end is None else translated_index.get((word_end, rank))
            if s is not None:
                word_pairs.append((t, s))
        if t in ignored or mapped is None or straddles:
            continue
        s = translated_index.get((mapped, rank))
        if s is not None:
            source.append(t)
            target.append(s)
    forbidden = _forbidden_after_first_use(occurrences, translated_ends, tokenizer)
    return AlignedBlock(list(ids), translated_ids, source, target, forbidden, occurrences, interior, word_pairs)


def word_ends(phrase: str) -> list[int]:
    """Character offset just past each whitespace-separated word of `phrase`."""
    return [match.end() for match in re.finditer(r"\S+", phrase)]


def _matching_word_end(end: int, occurrence: Occurrence) -> int | None:
    """Translated character position of the alternative's j-th word end when original position
    `end` (inside `occurrence`) is the anchor's j-th word end and both have as many words; else None."""
    key_ends, alternative_ends = word_ends(occurrence.key), word_ends(occurrence.alternative)
    relative = end - (occurrence.end - len(occurrence.key))
    if len(key_ends) != len(alternative_ends) or relative not in key_ends:
        return None
    return occurrence.translated_end - len(occurrence.alternative) + alternative_ends[key_ends.index(relative)]


def _repeated_anchor_predictors(ends: Sequence[int], occurrences: Sequence[Occurrence]) -> set[int]:
    """Fix 1: positions predicting the first token of an anchor already seen earlier in the block."""
    ignored, seen = set(), set()
    for occurrence in occurrences:
        if occurrence.key in seen:
            first = bisect.bisect_right(ends, occurrence.start)  # first token ending inside the region
            if first > 0:
                ignored.add(first - 1)
        seen.add(occurrence.key)
    return ignored


def _forbidden_after_first_use(
    occurrences: Sequence[Occurrence], translated_ends: Sequence[int], tokenizer: PreTrainedTokenizerBase
) -> list[tuple[int, int]]:
    """Fix 2: (translated position of a translation's first occurrence's last token, token id)."""
    forbidden, seen = [], set()
    for occurrence in occurrences:
        if occurrence.alternative in seen:
            continue
        seen.add(occurrence.alternative)
        last_token = bisect.bisect_left(translated_ends, occurrence.translated_end)
        forbidden.extend((last_token, token) for token in sorted(first_token_ids(tokenizer, occurrence.alternative)))
    return forbidden
