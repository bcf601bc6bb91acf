"""Generic alternatives of the same kind as each anchor, consistent across the dictionary (pure).

Each word of an anchor that carries its identity is replaced by a word drawn from a pool of its
kind: a given name of the same gender (where the text shows one), a surname, a town name, a
common object; titles, connectors and place words stay ("Baker Street" → "Ashby Street",
"Mr Jabez Wilson" keeps "Mr"). Every replacement word is used once in the whole dictionary and
never one that is forbidden (a key, or a name the target itself uses), so no alternative serves
two keys, none is a key, and none is a name from the target. Pools are shuffled by a seed;
when one runs out, surnames made from common parts ("Harwick") take over.
"""

from __future__ import annotations

import random
import re
from typing import Iterable, Iterator

from whp.anchors.candidates import CONNECTORS, PLACE_WORDS, TITLES
from whp.anchors.kinds import Kind
from whp.anchors.pools import (
    FEMALE_GIVEN,
    MALE_GIVEN,
    OBJECTS,
    PLACES,
    SURNAMES,
    generated_names,
)


class Exhausted(Exception):
    """No replacement word is left for this kind."""


class Assigner:
    """Draws replacement words without reuse; `forbidden` words are never drawn."""

    def __init__(self, forbidden: Iterable[str], seed: int = 0):
        self.rng = random.Random(seed)
        self.forbidden = set(forbidden)
        self.used: set[str] = set()
        self.streams = {
            "male": self._stream(MALE_GIVEN, generated_names()),
            "female": self._stream(FEMALE_GIVEN, generated_names()),
            "surname": self._stream(SURNAMES, generated_names()),
            "place": self._stream(PLACES, generated_names()),
            "thing": self._stream(OBJECTS, []),
        }

    def _stream(self, pool: list[str], fallback: list[str]) -> Iterator[str]:
        shuffled = list(pool)
        self.rng.shuffle(shuffled)
        yield from shuffled
        yield from fallback

    def reserve(self, words: Iterable[str]) -> None:
        """Mark words as taken (the alternatives of a user's own entries)."""
        self.used.update(words)

    def draw(self, stream: str) -> str:
        for word in self.streams[stream]:
            if word not in self.used and word not in self.forbidden:
                self.used.add(word)
                return word
        raise Exhausted(stream)

    def number(self, key: str) -> str:
        for _ in range(1000):
            candidate = re.sub(r"\d", lambda _: str(self.rng.randint(0, 9)), key)
            if candidate != key and candidate not in self.used and candidate not in self.forbidden:
                self.used.add(candidate)
                return candidate
        raise Exhausted("number")


def _plural(word: str) -> str:
    return word + "es" if word.endswith(("s", "x", "ch", "sh")) else word + "s"


def alternative(key: str, kind: Kind, assigner: Assigner, plural: bool = False) -> str:
    """One alternative for `key`: identity-carrying words replaced, the rest kept. `plural`: the
    key is the plural of a word of the text ("Stapletons"), and so is the alternative."""
    if kind.kind == "number":
        return assigner.number(key)
    if kind.kind == "thing":
        new = assigner.draw("thing")
        return _plural(new) if plural else new
    words = key.split(" ")
    identity = [i for i, w in enumerate(words) if _carries_identity(w)]
    if not identity:
        identity = [len(words) - 1]
    if kind.kind == "name" and any(w in CONNECTORS for w in words):
        identity = identity[-1:]  # a title: "Hound of the Baskervilles" → "Hound of the Ashbys"
    out = list(words)
    for position in identity:
        last = position == identity[-1]
        new = assigner.draw(_stream_for(kind, last, len(words)))
        out[position] = _plural(new) if plural and position == len(words) - 1 else new
    return " ".join(out)


def _carries_identity(word: str) -> bool:
    bare = word.rstrip(".")
    return bare.lower() not in TITLES and bare not in CONNECTORS and bare not in PLACE_WORDS


def _stream_for(kind: Kind, last: bool, n_words: int) -> str:
    if kind.kind == "person":
        given = kind.given if n_words == 1 else not last
        return (kind.gender or "male") if given else "surname"
    if kind.kind == "place":
        return "place" if n_words == 1 else "surname"
    return "surname" if last or n_words == 1 else "male"


def alternatives(key: str, kind: Kind, assigner: Assigner, n: int, plural: bool = False) -> list[str]:
    """Up to `n` distinct alternatives (fewer when the pools run out)."""
    found = []
    for _ in range(n):
        try:
            found.append(alternative(key, kind, assigner, plural))
        except Exhausted:
            break
    return found
