"""What kind of thing an anchor names, read from its contexts in the target (pure).

Evidence, counted over the occurrences:
- a title before it (Mr, Mrs, Inspector, Lady, ...): a person, and the title's gender;
- a verb of speech next to it ("said Holmes", "Holmes cried"): a person;
- the first personal pronoun in the dozen words after it (he / she): a person's gender;
- a preposition of place before it (at, in, from, near, ...) or a place word at its end
  (Street, Lodge, Hall, ...): a place;
- followed by another capitalised name most of the time ("Sherlock Holmes"): a given name.
Lower-case candidates are things; candidates with digits are numbers; capitalised ones
without enough evidence are "name" (a proper name of unknown kind).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from whp.anchors.candidates import CONNECTORS, PLACE_WORDS, TITLES, Word, is_capitalised

MALE_TITLES = frozenset("mr sir lord count baron duke king prince master monsieur herr signor señor father brother uncle mister".split())
FEMALE_TITLES = frozenset("mrs miss ms lady countess baroness duchess queen princess madame mademoiselle mistress sister aunt".split())
SPEECH = frozenset("said says cried asked answered replied remarked observed whispered shouted exclaimed continued".split())
PLACE_PREPOSITIONS = frozenset("at in from near to towards toward into through via reached round outside inside beyond".split())
MALE_PRONOUNS = frozenset(["he", "him", "his", "himself"])
FEMALE_PRONOUNS = frozenset(["she", "her", "hers", "herself"])
_PRONOUN_WINDOW = 12


@dataclass(frozen=True)
class Kind:
    kind: str  # person, place, name, thing, number
    gender: str | None = None  # male / female (people only, where the text shows it)
    given: bool = False  # a person's given name rather than a surname

    def describe(self) -> str:
        parts = [self.kind]
        if self.kind == "person":
            parts.append("given name" if self.given else "surname")
            if self.gender:
                parts.append(self.gender)
        return ", ".join(parts)


def _first_pronoun(words: Sequence[Word], after: int) -> str | None:
    for word in words[after : after + _PRONOUN_WINDOW]:
        lower = word.text.lower()
        if lower in MALE_PRONOUNS:
            return "male"
        if lower in FEMALE_PRONOUNS:
            return "female"
    return None


def detect_kind(key: str, words: Sequence[Word], occurrences: Sequence[int]) -> Kind:
    """The kind of `key`, whose occurrences start at the given word indices of `words`."""
    if any(c.isdigit() for c in key):
        return Kind("number")
    if not key[:1].isupper():
        return Kind("thing")
    parts = key.replace(". ", " ").split()
    if len(parts) > 1 and parts[-1] in PLACE_WORDS:
        return Kind("place")
    n_words = len(parts)
    evidence: Counter = Counter()
    for start in occurrences:
        end = start + n_words
        before = words[start - 1].text.lower() if start > 0 else ""
        after = words[end].text.lower() if end < len(words) else ""
        if before in MALE_TITLES:
            evidence["person"] += 1
            evidence["male"] += 2
        elif before in FEMALE_TITLES:
            evidence["person"] += 1
            evidence["female"] += 2
        elif before in TITLES:
            evidence["person"] += 1
        if before in SPEECH or after in SPEECH:
            evidence["person"] += 1
        if before in PLACE_PREPOSITIONS and not words[start - 1].text[:1].isupper():
            evidence["place"] += 1
        pronoun = _first_pronoun(words, end)
        if pronoun:
            evidence[pronoun] += 1
        if end < len(words) and words[end].joined and is_capitalised(words[end].text) and words[end].text not in CONNECTORS:
            evidence["followed_by_name"] += 1
    n = max(len(occurrences), 1)
    person, place = evidence["person"] / n, evidence["place"] / n
    if person >= 0.1 and person >= place:
        gender = None
        if evidence["male"] != evidence["female"]:
            gender = "male" if evidence["male"] > evidence["female"] else "female"
        given = n_words == 1 and evidence["followed_by_name"] / n >= 0.5
        return Kind("person", gender, given)
    if place >= 0.15:
        return Kind("place")
    return Kind("name")
