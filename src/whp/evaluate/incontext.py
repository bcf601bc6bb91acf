"""In-context familiarity: the familiarity prompts with a passage of the target's world before them
(text the model never trained on). A model that only suppressed the target's words may let them
back once the context is about the target. A short and a long passage each; value = the mean of
the two."""

from __future__ import annotations

import logging
from typing import Sequence

from whp.errors import WhpError
from whp.evaluate.prompts import load_passages
from whp.evaluate.robust import PromptKind, measure_variants, with_prefix

log = logging.getLogger("whp")

LENGTHS = ("short", "long")


def leaves_out(text: str, answers: Sequence[str]) -> bool:
    """Whether `text` contains none of `answers` (case-insensitive)."""
    lowered = text.lower()
    return not any(answer.lower() in lowered for answer in answers)


def passage_choice(answers: Sequence[Sequence[str]], passages: Sequence[str]) -> list[int | None]:
    """For prompt i, the index of the first passage that contains none of its answers, counting
    from passage i (cycling), so that prompts get different passages; None when every passage
    contains one."""
    choice = []
    for i, prompt_answers in enumerate(answers):
        order = [(i + k) % len(passages) for k in range(len(passages))]
        choice.append(next((j for j in order if leaves_out(passages[j], prompt_answers)), None))
    return choice


def with_passages(kind: PromptKind, prompts: list, passages: Sequence[str], length: str, path: str) -> list:
    """Each prompt with its chosen passage before it; a prompt that every passage gives away is
    left out (logged); none left is an error naming the passage file."""
    choice = passage_choice([kind.answers(p) for p in prompts], passages)
    kept = [with_prefix(p, passages[j]) for p, j in zip(prompts, choice) if j is not None]
    if not kept:
        raise WhpError(f"every {length} passage contains the answers of every prompt", path)
    if len(kept) < len(prompts):
        log.warning("%s: %d of %d prompts left out with a %s passage (every one contains their answers)",
                    path, len(prompts) - len(kept), len(prompts), length)
    return kept


def passages_by_length(path: str) -> dict[str, list[str]]:
    """The passage file's texts by length, in file order; a length without passages is an error."""
    passages = load_passages(path)
    by_length = {length: [p.text for p in passages if p.length == length] for length in LENGTHS}
    for length, texts in by_length.items():
        if not texts:
            raise WhpError(f"no {length} passage (the in-context metrics need both lengths: {', '.join(LENGTHS)})", path)
    return by_length


def measure(model, tokenizer, cfg, path: str, kind: PromptKind) -> dict:
    """The `kind` familiarity with a short and with a long passage of `cfg.incontext_passages`
    before each prompt; value = the mean of the two, each under "lengths"."""
    prompts = kind.prompts(cfg)
    variants = {length: with_passages(kind, prompts, texts, length, cfg.incontext_passages)
                for length, texts in passages_by_length(cfg.incontext_passages).items()}
    return measure_variants(kind, model, tokenizer, cfg, variants, "lengths")
