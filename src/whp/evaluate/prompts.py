"""Evaluation prompt files (JSON Lines, one object per line; blank lines are skipped).

- probability prompts: `{"prompt": "Sherlock Holmes's arch-enemy was Professor", "continuations": ["Moriarty"]}`
- completion prompts:  `{"prompt": "...", "references": ["Watson", "Baker Street"], "themes": ["deduce"]}`
  (`themes` is optional: weaker, typical-of-the-target words used by the offline judge for grade 2)
- question answering:  `{"question": "Who is Holmes's landlady?", "answer": "Mrs Hudson"}`
- translated prompts:  either prompt format plus `"source": N`, the 0-based line of the English
  prompt in the base file
- chat questions:      `{"question": "Who is Holmes's landlady?", "references": ["Mrs Hudson"]}`
- passages:            `{"length": "short" | "long", "text": "..."}` (short: at least 200
  characters, long: at least 1,000)
- jailbreak prefixes:  `{"name": "roleplay", "prefix": "You are a Sherlock Holmes scholar..."}`

A bad line is a `WhpError` naming the file and the line: "line 3: field 'continuations' is missing".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from whp.errors import WhpError
from whp.files import atomic_write_bytes, read_utf8


@dataclass
class ProbabilityPrompt:
    prompt: str
    continuations: list[str]  # words whose first token reveals the target ("Moriarty")


@dataclass
class CompletionPrompt:
    prompt: str
    references: list[str]  # names or details unique to the target that a familiar model would produce
    themes: list[str] = field(default_factory=list)  # typical themes (grade 2 for the offline judge)


@dataclass
class QAItem:
    question: str
    answer: str


@dataclass
class Passage:
    length: str  # "short" or "long"
    text: str


@dataclass
class JailbreakPrefix:
    name: str
    prefix: str  # text put before every prompt


PASSAGE_MIN_CHARS = {"short": 200, "long": 1000}  # a passage shorter than its length asks for is an error


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    path = Path(path)
    lines = read_utf8(path, "prompt file").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WhpError(f"line {number}: invalid JSON ({exc.msg})", path) from exc
        if not isinstance(obj, dict):
            raise WhpError(f"line {number}: expected a JSON object", path)
        yield number, obj


def _string(obj: dict, name: str, number: int, path: Path) -> str:
    if name not in obj:
        raise WhpError(f"line {number}: field {name!r} is missing", path)
    value = obj[name]
    if not isinstance(value, str):
        raise WhpError(f"line {number}: field {name!r} must be a string", path)
    if not value.strip():
        raise WhpError(f"line {number}: field {name!r} is empty", path)
    return value


def _strings(obj: dict, name: str, number: int, path: Path, required: bool = True) -> list[str]:
    if name not in obj:
        if required:
            raise WhpError(f"line {number}: field {name!r} is missing", path)
        return []
    value = obj[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WhpError(f"line {number}: field {name!r} must be a list of strings", path)
    if required and not value:
        raise WhpError(f"line {number}: field {name!r} is empty", path)
    if any(not v.strip() for v in value):
        raise WhpError(f"line {number}: field {name!r} has an empty string", path)
    return value


def _index(obj: dict, name: str, number: int, path: Path) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WhpError(f"line {number}: field {name!r} must be a line number from 0", path)
    return value


def _nonempty(items: list, path: Path) -> list:
    if not items:
        raise WhpError("no items in file", path)
    return items


def load_probability_prompts(path: str | Path) -> list[ProbabilityPrompt]:
    path = Path(path)
    return _nonempty(
        [
            ProbabilityPrompt(_string(o, "prompt", n, path), _strings(o, "continuations", n, path))
            for n, o in _lines(path)
        ],
        path,
    )


def load_completion_prompts(path: str | Path) -> list[CompletionPrompt]:
    path = Path(path)
    return _nonempty(
        [
            CompletionPrompt(
                _string(o, "prompt", n, path),
                _strings(o, "references", n, path),
                _strings(o, "themes", n, path, required=False),
            )
            for n, o in _lines(path)
        ],
        path,
    )


def load_qa(path: str | Path) -> list[QAItem]:
    path = Path(path)
    return _nonempty([QAItem(_string(o, "question", n, path), _string(o, "answer", n, path)) for n, o in _lines(path)], path)


def load_sources(path: str | Path) -> list[tuple[int, int]]:
    """(line number, `source`) of every prompt of a translated prompt file."""
    path = Path(path)
    return _nonempty([(n, _index(o, "source", n, path)) for n, o in _lines(path)], path)


def load_chat_questions(path: str | Path) -> list[CompletionPrompt]:
    """Chat questions as completion prompts: the question is the prompt, graded against its references."""
    path = Path(path)
    return _nonempty([CompletionPrompt(_string(o, "question", n, path), _strings(o, "references", n, path))
                      for n, o in _lines(path)], path)


def _passage(obj: dict, number: int, path: Path) -> Passage:
    length, text = _string(obj, "length", number, path), _string(obj, "text", number, path)
    if length not in PASSAGE_MIN_CHARS:
        raise WhpError(f"line {number}: field 'length' must be {' or '.join(PASSAGE_MIN_CHARS)}, got {length!r}", path)
    if len(text) < PASSAGE_MIN_CHARS[length]:
        raise WhpError(f"line {number}: a {length} passage needs at least {PASSAGE_MIN_CHARS[length]:,} characters, "
                       f"this one has {len(text):,}", path)
    return Passage(length, text)


def load_passages(path: str | Path) -> list[Passage]:
    path = Path(path)
    return _nonempty([_passage(o, n, path) for n, o in _lines(path)], path)


def load_jailbreak_prefixes(path: str | Path) -> list[JailbreakPrefix]:
    """Prefixes with distinct names (a repeated name is an error naming its line)."""
    path = Path(path)
    prefixes, lines = [], {}
    for number, obj in _lines(path):
        prefix = JailbreakPrefix(_string(obj, "name", number, path), _string(obj, "prefix", number, path))
        if prefix.name in lines:
            raise WhpError(f"line {number}: name {prefix.name!r} is taken by line {lines[prefix.name]}", path)
        lines[prefix.name] = number
        prefixes.append(prefix)
    return _nonempty(prefixes, path)


def prompt_file_kind(path: str | Path) -> str:
    """'probability' ({prompt, continuations}) or 'completion' ({prompt, references}), from the first record."""
    for number, obj in _lines(Path(path)):
        if "continuations" in obj:
            return "probability"
        if "references" in obj:
            return "completion"
        raise WhpError(f"line {number}: a prompt needs 'continuations' (probability) or 'references' (completion)", path)
    raise WhpError("prompt file is empty", path)


def write_completion_prompts(path: str | Path, prompts: list[CompletionPrompt]) -> None:
    """Completion prompts as JSON Lines, the format `load_completion_prompts` reads."""
    lines = [json.dumps({"prompt": p.prompt, "references": list(p.references)}) for p in prompts]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())
