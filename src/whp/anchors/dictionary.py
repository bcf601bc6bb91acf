"""The anchored dictionary: load, validate, clean, and draw one alternative per key per block.

Format (JSON or YAML): a mapping from an anchor (a target-specific expression) to one generic
alternative or a list of them, e.g. `{"Sherlock Holmes": ["Jack Turner", "Tom Grant"]}`, or to a
mapping whose `alternatives` holds them (the review file written by `whp anchors`; its other
fields, such as scores and provenance, are for people and ignored here).
Cleaning follows the authors' preparation code (DESIGN §2.2): duplicate keys are merged with
every alternative kept, and a key that splits into other keys is dropped, so that every
occurrence is translated one way.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

import yaml

from whp.errors import WhpError
from whp.files import read_utf8

log = logging.getLogger("whp")

Dictionary = dict[str, tuple[str, ...]]  # anchor → generic alternatives
Entries = list[tuple[str, list[str]]]  # raw (key, alternatives) pairs, duplicates allowed

_POSSESSIVE = re.compile(r"(?:['’]s|['’])$")


class _Pairs(list):
    """A parsed mapping as its (key, value) pairs, told apart from a list in the file."""


class _PairsLoader(yaml.SafeLoader):
    """A YAML loader that keeps duplicate keys as repeated pairs instead of overwriting them."""


def _mapping_as_pairs(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Pairs:
    return _Pairs((loader.construct_object(k, deep=True), loader.construct_object(v, deep=True)) for k, v in node.value)


_PairsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_as_pairs)


def read_entries(path: str | Path) -> Entries:
    """Parse a dictionary file into validated (key, alternatives) pairs, duplicates kept."""
    path = Path(path)
    text = read_utf8(path, "dictionary file")
    try:
        if path.suffix == ".json":
            pairs = json.loads(text, object_pairs_hook=_Pairs)
        else:
            pairs = yaml.load(text, Loader=_PairsLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise WhpError(f"cannot parse: {str(exc).splitlines()[0]}", path) from exc
    if not isinstance(pairs, _Pairs) or not pairs:
        raise WhpError("expected a non-empty mapping of anchor → alternatives", path)
    return [_validate_entry(key, value, path) for key, value in pairs]


def _validate_entry(key, value, path: Path) -> tuple[str, list[str]]:
    if not isinstance(key, str) or not key.strip():
        raise WhpError(f"empty or non-string key {key!r}", path)
    key = key.strip()
    if isinstance(value, _Pairs):  # a review-file entry: {alternatives: [...], score: ..., ...}
        fields = dict(value)
        if "alternatives" not in fields:
            raise WhpError(f"key {key!r}: an entry given as a mapping needs an 'alternatives' field", path)
        value = fields["alternatives"]
    alternatives = [value] if isinstance(value, str) else value
    if not isinstance(alternatives, list) or not alternatives:
        raise WhpError(f"key {key!r}: alternatives must be a string or a non-empty list of strings", path)
    for alternative in alternatives:
        if not isinstance(alternative, str) or not alternative.strip():
            raise WhpError(f"key {key!r}: non-string or empty alternative {alternative!r}", path)
        if alternative.strip() == key:
            raise WhpError(f"key {key!r}: an alternative equals its key", path)
    return key, [a.strip() for a in alternatives]


def _strip_possessive(word: str) -> str:
    return _POSSESSIVE.sub("", word)


def is_splittable(key: str, keys: set[str]) -> bool:
    """True when `key` is made of other keys: "Harry Potter" (Harry, Potter), "Harry's" (Harry)."""
    base = _strip_possessive(key)
    if base != key and base in keys:
        return True
    words = key.split()
    return len(words) > 1 and all(_strip_possessive(w) in keys and w != key for w in words)


def clean(entries: Entries) -> Dictionary:
    """Merge duplicate keys (every alternative kept, in order) and drop splittable keys."""
    merged: dict[str, list[str]] = {}
    for key, alternatives in entries:
        bucket = merged.setdefault(key, [])
        bucket.extend(a for a in alternatives if a not in bucket)
    keys = set(merged)
    dropped = [key for key in merged if is_splittable(key, keys)]
    if dropped:
        log.info("dictionary: dropped %d keys made of other keys: %s", len(dropped), ", ".join(dropped[:10]))
    return {key: tuple(alts) for key, alts in merged.items() if key not in dropped}


def load_dictionary(path: str | Path) -> Dictionary:
    return clean(read_entries(path))


def draw_alternatives(dictionary: Dictionary, seed: int, block_index: int) -> dict[str, str]:
    """One alternative per key for one block; the same (seed, block) always draws the same."""
    rng = random.Random(f"{seed}:{block_index}")
    return {key: rng.choice(alternatives) for key, alternatives in dictionary.items()}


class AnchorMatcher:
    """Finds anchors in text: whole words, case-sensitive, leftmost then longest match."""

    def __init__(self, keys: list[str] | tuple[str, ...] | set[str]):
        ordered = sorted(set(keys), key=lambda k: (-len(k), k))
        self.pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)") if ordered else None

    def find(self, text: str) -> list[re.Match]:
        return list(self.pattern.finditer(text)) if self.pattern else []


def keys_missing_from(dictionary: Dictionary, text: str) -> list[str]:
    """Keys that never occur in `text` (worth a warning: they do nothing)."""
    found = {m.group(0) for m in AnchorMatcher(dictionary).find(text)}
    return [key for key in dictionary if key not in found]


def conflicts(entries: Entries) -> list[str]:
    """What makes a dictionary disagree with itself (each worth a warning; cleaning still works):
    a key given twice, an alternative that is itself a key, an alternative shared by two keys."""
    problems, seen, owner = [], set(), {}
    keys = {key for key, _ in entries}
    for key, alternatives in entries:
        if key in seen:
            problems.append(f"key {key!r} is given more than once (its alternatives are merged)")
        seen.add(key)
        for alternative in alternatives:
            if alternative in keys:
                problems.append(f"key {key!r}: alternative {alternative!r} is itself a key")
            if owner.setdefault(alternative, key) != key:
                problems.append(f"alternative {alternative!r} serves both {owner[alternative]!r} and {key!r}")
    return list(dict.fromkeys(problems))
