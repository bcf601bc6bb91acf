"""Completion prompts cut from the target text itself, offline.

The paper's 300 prompts were written by GPT-4 from random passages. Offline we cut them: a
prompt is the `context_words` words just before an occurrence of an anchored term, and its
references are the anchored terms that follow within `lookahead_words` words (minus any the
prompt already names, since repeating the prompt proves nothing). A model familiar with the
target tends to continue with those terms; an unlearned one should not.

Hook for LLM drafting (not built): a caller may rewrite `CompletionPrompt.prompt` with a chat
model into a paper-style open-ended prompt, keeping `references`; `generate_prompts` is the
offline source of passages and references for that.
"""

from __future__ import annotations

import bisect
import random
import re
from typing import Sequence

from whp.errors import WhpError
from whp.evaluate.judges import mentions
from whp.evaluate.prompts import CompletionPrompt


def _term_pattern(term: str) -> re.Pattern:
    """Whole-word, case-sensitive, any whitespace between the term's words."""
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in term.split()) + r"(?!\w)")


def _occurrences(text: str, keys: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, key) of every occurrence of every key, sorted by position."""
    found = [(m.start(), m.end(), key) for key in keys for m in _term_pattern(key).finditer(text)]
    return sorted(found)


def generate_prompts(
    text: str,
    dictionary_keys: Sequence[str],
    n: int,
    context_words: int = 30,
    seed: int = 0,
    lookahead_words: int = 40,
) -> list[CompletionPrompt]:
    """Up to `n` prompts, each cut just before an occurrence of an anchored term, drawn at
    random (seeded) among all occurrences with `context_words` words of context before them
    and at least one reference left after removing those the prompt names. Prompts do not
    overlap one another's passage (context + lookahead). Same inputs and seed, same prompts."""
    keys = [k for k in dict.fromkeys(k.strip() for k in dictionary_keys) if k]
    if not keys:
        raise WhpError("no dictionary keys to build prompts from")
    spans = [m.span() for m in re.finditer(r"\S+", text)]  # word (start, end) character spans
    word_starts = [s for s, _ in spans]
    occurrences = _occurrences(text, keys)
    candidates = []
    for start, _, _ in occurrences:
        w = _word_index(word_starts, start)  # the word the term begins in
        if w < context_words:
            continue
        prompt = " ".join(text[spans[w - context_words][0] : start].split())
        end = spans[min(w + lookahead_words, len(spans)) - 1][1]
        ahead = [k for s, e, k in occurrences if start <= s and e <= end]
        references = [k for k in dict.fromkeys(ahead) if not mentions(prompt, k)]
        if references:
            candidates.append((w - context_words, w + lookahead_words, prompt, references))
    random.Random(seed).shuffle(candidates)
    chosen: list[tuple[int, int, str, list[str]]] = []
    for candidate in candidates:
        if len(chosen) == n:
            break
        if all(candidate[1] <= c[0] or c[1] <= candidate[0] for c in chosen):
            chosen.append(candidate)
    chosen.sort()
    return [CompletionPrompt(prompt, references) for _, _, prompt, references in chosen]


def _word_index(word_starts: list[int], char: int) -> int:
    """Index of the word containing character `char` (the last word starting at or before it)."""
    return bisect.bisect_right(word_starts, char) - 1
