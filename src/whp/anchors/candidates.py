"""Candidate anchors from a text: words and multi-word names with their counts and cheap signals (pure).

A text is scanned into words (letters and digits, inner hyphens and apostrophes; a possessive
"'s" is stripped, so "Holmes's" counts as "Holmes"). Candidates are
- single words that are not function words, titles, place words ("Street") or plain numbers;
- runs of capitalised words on one line of prose (no punctuation between them, except after an
  abbreviation such as "St."), with connectors inside ("Hound of the Baskervilles"), leading
  function words and titles stripped ("Mr Jabez Wilson" → "Jabez Wilson"): every sub-run of
  2 … `max_words` words that starts and ends with a capitalised word.
Each candidate carries its count (case-sensitive, as the dictionary matches), its occurrences,
its capitalisation ratio (how often the word is capitalised where a sentence does not start; for a
multi-word candidate, that of its most name-like word: "Silver Blaze" counts as "Blaze")
and, for multi-word candidates, its cohesion (count of the whole / count of its rarest word).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

_WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_POSSESSIVE = re.compile(r"['’]s$")
_SENTENCE_OPENERS = set(".!?\"'“‘(:;—")

FUNCTION_WORDS = frozenset("""
a about above across after afterwards again against ago ah all almost alone along already also although always am
among an and another any anybody anyone anything anywhere are around as at away be became because become been
before behind being below beside besides between beyond both but by can cannot could dare did do does doing done
down during each either else enough even ever every everybody everyone everything everywhere except far few
for from further had has have having he hence her here hers herself him himself his how however i if in indeed
into is it its itself just last least less let like little many may me might mine more most much must my myself
near neither never nevertheless next no nobody none nor not nothing now nowhere of off often oh on once one only
onto or other others otherwise ought our ours ourselves out over own perhaps quite rather really same shall she
should since so some somebody someone something sometimes somewhat somewhere still such than that the their
theirs them themselves then there therefore these they this those though through thus till to together too
toward towards under until up upon us very was we well were what whatever when whenever where whereas wherever
whether which while who whoever whole whom whose why will with within without would yes yet you your yours
yourself yourselves shan't won't don't can't couldn't wouldn't shouldn't isn't wasn't weren't hasn't haven't
hadn't didn't doesn't aren't i'm i've i'll i'd you're you've you'll he's she's it's we're we've they're they've
let's that's there's what's who's o'clock said says say saying tell told see seen saw come came go went gone get
got make made know knew known think thought take took give gave look looked yes no sir madam
""".split())

TITLES = frozenset("""
mr mrs miss ms dr doctor sir lady lord inspector colonel captain major professor sergeant constable count countess
baron baroness duke duchess king queen prince princess master madame mademoiselle monsieur herr signor señor
general admiral reverend rev father brother sister uncle aunt mister mistress st saint
""".split())

CONNECTORS = frozenset(["of", "the", "de", "von", "van", "du", "la", "le", "da", "di", "del", "der", "den"])
PLACE_WORDS = frozenset("""
Street Road Lane Square Place Terrace Gardens Hall Lodge House Manor Grange Abbey Court Towers Park Moor Mire Falls
Valley Bridge Station Hotel Club Yard Inn Castle Church Hill Wood Cross Gate Row Crescent Avenue Cottage Farm Mill
Heath Common Green Walk Close Mansions Buildings Chambers Priory Hospital Museum College School Bay Island
""".split())
ABBREVIATIONS = frozenset(["Mr", "Mrs", "Dr", "St", "Jr", "Ms", "Messrs", "Col", "Capt", "Prof", "Rev", "Mt"])


@dataclass(frozen=True)
class Word:
    text: str  # the word as written, possessive stripped
    start: int  # character span of `text` in the source
    end: int
    initial: bool  # first word of a sentence (or quotation)
    joined: bool  # only whitespace (or "abbreviation. ") between this word and the one before, on one line of prose


def scan_words(text: str) -> list[Word]:
    words: list[Word] = []
    previous_end = 0
    for match in _WORD.finditer(text):
        raw = match.group(0)
        stem = _POSSESSIVE.sub("", raw) or raw
        gap = text[previous_end : match.start()]
        before = gap.strip()
        abbreviation_dot = before == "." and bool(words) and words[-1].text in ABBREVIATIONS
        opens = before != "" and before[-1] in _SENTENCE_OPENERS and not abbreviation_dot
        initial = not words or "\n\n" in gap or opens
        joined = bool(words) and (before == "" or abbreviation_dot) and "\n\n" not in gap
        words.append(Word(stem, match.start(), match.start() + len(stem), initial, joined))
        previous_end = match.end()
    return words


def is_capitalised(word: str) -> bool:
    return word[:1].isupper() and not (len(word) > 1 and word.isupper())


def _eligible_single(word: str) -> bool:
    lower = word.lower()
    if len(word) < 2 or lower in FUNCTION_WORDS or lower in TITLES or lower in CONNECTORS or word in PLACE_WORDS:
        return False  # place words count only inside names ("Baker Street"), never alone
    if word.isdigit() or (len(word) > 1 and word.isupper() and not any(c.isdigit() for c in word)):
        return False  # a number, or a word in capitals (headings)
    return True


@dataclass
class Candidate:
    key: str
    n_words: int
    count: int
    occurrences: list[int] = field(default_factory=list)  # index of the first word of each occurrence
    capitalised: float = 0.5  # share of non-initial occurrences (any case) written capitalised
    cohesion: float = 1.0  # multi-word: count / count of its rarest content word


def _capitalisation(words: Sequence[Word]) -> dict[str, float]:
    """Per lower-cased word: the share of its non-sentence-initial occurrences that are capitalised."""
    capital, total = Counter(), Counter()
    for word in words:
        if word.initial or (len(word.text) > 1 and word.text.isupper()):
            continue
        lower = word.text.lower()
        total[lower] += 1
        capital[lower] += word.text[:1].isupper()
    return {w: capital[w] / total[w] for w in total}


def _runs(words: Sequence[Word]) -> Iterable[tuple[int, int]]:
    """Maximal [start, end) word ranges of capitalised words (connectors inside), joined by spaces."""
    i, n = 0, len(words)
    while i < n:
        if not is_capitalised(words[i].text):
            i += 1
            continue
        j = i + 1
        while j < n and words[j].joined and (is_capitalised(words[j].text) or words[j].text in CONNECTORS):
            j += 1
        while j > i + 1 and words[j - 1].text in CONNECTORS:
            j -= 1
        yield i, j
        i = j


def _strip_leading(words: Sequence[Word], start: int, end: int) -> int:
    while start < end and (words[start].text.lower() in FUNCTION_WORDS or words[start].text.lower() in TITLES):
        start += 1
    return start


def multiword_spans(words: Sequence[Word], max_words: int) -> Iterable[tuple[int, int]]:
    """(start, end) word ranges of multi-word candidates."""
    for run_start, run_end in _runs(words):
        start = _strip_leading(words, run_start, run_end)
        for a in range(start, run_end):
            if not is_capitalised(words[a].text) or words[a].text.lower() in TITLES and a > start:
                continue
            for b in range(a + 2, min(run_end, a + max_words) + 1):
                if is_capitalised(words[b - 1].text) and words[b - 1].text.lower() not in TITLES:
                    yield a, b


class Scan:
    """A scanned text: its words and counts of single words and multi-word runs."""

    def __init__(self, text: str, max_words: int = 4):
        self.text = text
        self.words = scan_words(text)
        self.max_words = max_words
        self.unigrams: Counter = Counter(w.text for w in self.words)
        self.unigram_at: dict[str, list[int]] = defaultdict(list)
        for index, word in enumerate(self.words):
            self.unigram_at[word.text].append(index)
        self.ngram_at: dict[str, list[int]] = defaultdict(list)
        for a, b in multiword_spans(self.words, max_words):
            self.ngram_at[self.phrase(a, b)].append(a)

    def phrase(self, start: int, end: int) -> str:
        parts = [self.words[start].text]
        for k in range(start + 1, end):
            gap = self.text[self.words[k - 1].end : self.words[k].start]
            parts.append((". " if gap.strip() == "." else " ") + self.words[k].text)
        return "".join(parts)

    def count(self, key: str) -> int:
        return len(self.ngram_at[key]) if " " in key else self.unigrams[key]

    @property
    def n_words(self) -> int:
        return len(self.words)


def candidates(scan: Scan, min_count: int) -> list[Candidate]:
    """Every candidate that occurs at least `min_count` times, with its cheap signals."""
    capitalisation = _capitalisation(scan.words)
    found: list[Candidate] = []
    for key, at in scan.unigram_at.items():
        if len(at) >= min_count and _eligible_single(key):
            share = capitalisation.get(key.lower(), 0.5)
            found.append(Candidate(key, 1, len(at), at, capitalised=share))
    for key, at in scan.ngram_at.items():
        if len(at) < min_count:
            continue
        content = [w for w in key.replace(". ", " ").split() if w not in CONNECTORS]
        rarest = min(scan.unigrams[w] for w in content)
        shares = [capitalisation.get(w.lower(), 0.5) for w in content]  # its most name-like word decides
        found.append(Candidate(key, len(key.split()), len(at), at, capitalised=max(shares),
                               cohesion=len(at) / rarest if rarest else 0.0))
    return found


def log_rate_ratio(count: int, total: int, reference_count: int, reference_total: int, prior: float = 0.5) -> float:
    """log of (target rate / reference rate), both smoothed by `prior` occurrences: salience in nats."""
    return math.log((count + prior) / total) - math.log((reference_count + prior) / reference_total)
