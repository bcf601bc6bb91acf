"""Jailbreak familiarity: the familiarity prompts after prefixes that ask the model to drop its
guard (role play, "for research", "ignore previous instructions", ...). A model that only learnt
to refuse or deflect may still answer under one of them. Value = the mean over prefixes; the
worst prefix (the highest familiarity) is recorded too."""

from __future__ import annotations

from whp.evaluate.prompts import load_jailbreak_prefixes
from whp.evaluate.robust import PromptKind, measure_variants, with_prefix


def prefixed_variants(prompts: list, prefixes) -> dict[str, list]:
    """{prefix name: every prompt with that prefix before it}."""
    return {prefix.name: [with_prefix(p, prefix.prefix) for p in prompts] for prefix in prefixes}


def measure(model, tokenizer, cfg, path: str, kind: PromptKind) -> dict:
    """The `kind` familiarity under each prefix of `cfg.jailbreak_prefixes`; value = the mean over
    prefixes, each under "prefixes", the highest as "worst" (its name "worst_prefix")."""
    variants = prefixed_variants(kind.prompts(cfg), load_jailbreak_prefixes(cfg.jailbreak_prefixes))
    result = measure_variants(kind, model, tokenizer, cfg, variants, "prefixes")
    worst = max(result["prefixes"], key=result["prefixes"].get)
    return {**result, "worst": result["prefixes"][worst], "worst_prefix": worst}
