"""What the robustness metrics share: the familiarity measures over variants of the prompts (a
target passage before them, another language, a jailbreak prefix), each variant measured as the
standard metric measures its prompts; and the record of a metric that does not apply to a model."""

from __future__ import annotations

import dataclasses
import logging
import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from whp.evaluate.familiarity import completion_under, probability_under
from whp.evaluate.prompts import load_completion_prompts, load_probability_prompts

log = logging.getLogger("whp")


@dataclass(frozen=True)
class PromptKind:
    """Probability or completion prompts: the setting that lists their files, how they load, what
    their answers are, and how they are measured."""

    files: str  # the EvalConfig setting of the (English) prompt files
    load: Callable[[str], list]
    answers: Callable[[Any], list[str]]
    measure: Callable[..., dict]  # (model, tokenizer, cfg, prompts) -> {"value": ..., details}

    def prompts(self, cfg) -> list:
        """Every prompt of the files `cfg` (an EvalConfig) gives for this kind, in order."""
        return [p for f in getattr(cfg, self.files) for p in self.load(f)]


PROBABILITY = PromptKind("probability_prompts", load_probability_prompts, operator.attrgetter("continuations"), probability_under)
COMPLETION = PromptKind("completion_prompts", load_completion_prompts, operator.attrgetter("references"), completion_under)


def joined(prefix: str, prompt: str) -> str:
    """`prefix`, a blank line, then `prompt`."""
    return f"{prefix.rstrip()}\n\n{prompt}"


def with_prefix(prompt, prefix: str):
    """The same probability or completion prompt with `prefix` before its text."""
    return dataclasses.replace(prompt, prompt=joined(prefix, prompt.prompt))


def measure_variants(kind: PromptKind, model, tokenizer, cfg, variants: dict[str, Sequence], key: str) -> dict:
    """Each variant's prompts measured alike: value = the mean of the variants' values, which are
    also recorded by name under `key`; each variant's whole result under "details"."""
    results = {name: kind.measure(model, tokenizer, cfg, list(prompts)) for name, prompts in variants.items()}
    values = {name: result["value"] for name, result in results.items()}
    return {"value": sum(values.values()) / len(values), key: values, "details": results}


def skipped(path: str, metric: str, reason: str) -> dict:
    """The record of a metric that does not apply to this model, the reason logged."""
    log.warning("%s: %s %s", path, metric, reason)
    return {"value": None, "skipped": reason}


WRAPPER_HAS_NO_WEIGHTS = "not defined for the inference-time WHP wrapper (no weights of its own to fine-tune)"
