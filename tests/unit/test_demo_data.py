"""Checks on the built-in Sherlock Holmes demo data (src/whp/data/demo/)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml


def _demo_dir():
    try:
        d = resources.files("whp") / "data" / "demo"
        if d.is_dir():
            return d
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "src" / "whp" / "data" / "demo"


DEMO = _demo_dir()


def _read(*parts: str) -> str:
    node = DEMO
    for p in parts:
        node = node / p
    return node.read_text(encoding="utf-8")


def _words(text: str) -> int:
    return len(text.split())


def _jsonl(name: str) -> list[dict]:
    rows = []
    for i, line in enumerate(_read(name).splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        assert isinstance(row, dict), f"{name}:{i} is not an object"
        rows.append(row)
    return rows


def _check_completion(name: str) -> list[dict]:
    rows = _jsonl(name)
    for row in rows:
        assert set(row) == {"prompt", "references"}, (name, row)
        assert isinstance(row["prompt"], str) and row["prompt"].strip()
        refs = row["references"]
        assert isinstance(refs, list) and refs, (name, row)
        for ref in refs:
            assert isinstance(ref, str) and ref.strip(), (name, row)
            assert ref.lower() not in row["prompt"].lower(), (
                f"{name}: reference {ref!r} already in prompt {row['prompt']!r}"
            )
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == len(set(prompts)), f"{name}: duplicate prompts"
    return rows


def _check_probability(name: str) -> list[dict]:
    rows = _jsonl(name)
    for row in rows:
        assert set(row) == {"prompt", "continuations"}, (name, row)
        prompt = row["prompt"]
        assert isinstance(prompt, str) and prompt.strip()
        assert prompt == prompt.rstrip(), f"{name}: trailing whitespace in {prompt!r}"
        conts = row["continuations"]
        assert isinstance(conts, list) and conts, (name, row)
        for c in conts:
            assert isinstance(c, str) and c == c.strip() and c, (name, row)
            assert 1 <= len(c.split()) <= 3, (name, c)
            assert c.lower() not in prompt.lower(), (name, row)
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == len(set(prompts)), f"{name}: duplicate prompts"
    return rows


def test_corpus_size():
    corpus = DEMO / "corpus"
    files = [f for f in corpus.iterdir() if f.name.endswith(".txt")]
    assert len(files) >= 3
    total = sum(_words(f.read_text(encoding="utf-8")) for f in files)
    assert total >= 15_000, total


def test_anchors_dictionary():
    anchors = yaml.safe_load(_read("anchors.yaml"))
    assert isinstance(anchors, dict)
    assert len(anchors) >= 150
    keys = set(anchors)
    seen: dict[str, str] = {}
    for key, alts in anchors.items():
        assert isinstance(key, str) and key.strip(), key
        assert isinstance(alts, list) and alts, key
        for alt in alts:
            assert isinstance(alt, str) and alt.strip(), (key, alt)
            assert alt != key, key
            assert alt not in keys, f"alternative {alt!r} of {key!r} is itself a key"
            assert alt not in seen, f"{alt!r} used for both {seen.get(alt)!r} and {key!r}"
            seen[alt] = key


def test_anchor_keys_occur_in_corpus():
    anchors = yaml.safe_load(_read("anchors.yaml"))
    corpus = DEMO / "corpus"
    text = "\n".join(
        f.read_text(encoding="utf-8") for f in corpus.iterdir() if f.name.endswith(".txt")
    )
    missing = [
        k for k in anchors if not re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", text)
    ]
    assert not missing, missing


def test_completion_prompts():
    tune = _check_completion("completion_tune.jsonl")
    held = _check_completion("completion_heldout.jsonl")
    assert len(tune) + len(held) >= 110
    assert len(tune) >= 50 and len(held) >= 50
    assert not {r["prompt"] for r in tune} & {r["prompt"] for r in held}


def test_probability_prompts():
    tune = _check_probability("probability_tune.jsonl")
    held = _check_probability("probability_heldout.jsonl")
    assert len(tune) + len(held) >= 44
    assert len(tune) >= 20 and len(held) >= 20
    assert not {r["prompt"] for r in tune} & {r["prompt"] for r in held}


def test_side_effect_prompts():
    comp = _check_completion("side_effect_completion.jsonl")
    prob = _check_probability("side_effect_probability.jsonl")
    assert len(comp) >= 30
    assert len(prob) >= 20
    for row in comp + prob:
        assert "holmes" not in row["prompt"].lower()
        assert "sherlock" not in row["prompt"].lower()


def test_qa_pairs():
    rows = _jsonl("qa.jsonl")
    assert len(rows) >= 40
    for row in rows:
        assert set(row) == {"question", "answer"}, row
        assert row["question"].strip().endswith("?"), row
        assert row["answer"].strip(), row
    questions = [r["question"] for r in rows]
    assert len(questions) == len(set(questions))


def test_retain_text():
    text = _read("retain.txt")
    assert _words(text) >= 2_500
    for forbidden in ("Holmes", "Watson", "Baker Street"):
        assert forbidden not in text, forbidden


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "anchors.yaml",
        "retain.txt",
        "qa.jsonl",
        "completion_tune.jsonl",
        "completion_heldout.jsonl",
        "probability_tune.jsonl",
        "probability_heldout.jsonl",
        "side_effect_completion.jsonl",
        "side_effect_probability.jsonl",
    ],
)
def test_files_present_and_utf8(name):
    assert _read(name).strip()
