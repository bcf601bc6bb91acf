"""Every metric of `whp eval`, declared once: its name, how it is measured, its group and
direction, the settings it depends on (its own cache key) and the values it reports. The suite,
the report, the model card, `whp compare` and `whp demo` all read this table.

A metric is `measure(model, tokenizer, cfg, model_path) -> {"value": ..., details}` (cfg: an
EvalConfig); a new one is a module with its measure function plus an entry below. A metric that
does not apply to a model records `{"value": None, "skipped": reason}`. Each belongs to a suite:
"standard" (what `whp eval` runs by default) or "robust" (attacks that try to bring the target back).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from whp.evaluate import (
    chat,
    crosslingual,
    familiarity,
    incontext,
    jailbreak,
    latent_probe,
    memorisation,
    mia,
    perplexity,
    relearn,
    relearn_curve,
)
from whp.evaluate.robust import COMPLETION, PROBABILITY

FORGET_LOWER = "lower = forgotten"
FORGET_AUC = "near 0.5 = forgotten"
KEEP_HIGHER = "higher = kept"
KEEP_LOWER = "lower = kept"

FAMILIARITY = "Familiarity with the target"
MEMORISATION = "Memorisation and membership"
KEPT = "Side effects and retained ability"
ROBUSTNESS = "Robustness (attacks)"
BENCHMARK_GROUP = "General benchmarks (accuracy)"
OTHER_GROUP = "Other metrics"

BENCHMARKS = "benchmarks"  # the lm-evaluation-harness tasks: one value per task, benchmark_<task>
BENCHMARK_PREFIX = "benchmark_"

STANDARD, ROBUST, ALL = "standard", "robust", "all"  # a metric's suite; ALL chooses both
SUITES = (STANDARD, ROBUST, ALL)


@dataclass(frozen=True)
class Metric:
    name: str  # its record's file name, <name>.json
    measure: Callable[..., dict]  # (model, tokenizer, cfg, model_path) -> {"value": ..., details}
    group: str
    direction: str  # which way "forgotten" or "kept" lies
    settings: tuple[str, ...]  # EvalConfig fields its value depends on (files are hashed by content)
    reports: tuple[str, ...] = ()  # the record's keys that enter the summary, each under its own name; () = "value" as `name`
    demo: bool = False  # a row of the demo's before/after table
    headline: bool = False  # a column of `whp compare`'s table of runs
    suite: str = STANDARD  # STANDARD or ROBUST
    models: tuple[str, ...] = ()  # those of `settings` that name a model (identified by its weights)
    help: str = ""

    def summary(self, record: dict) -> dict[str, Any]:
        """The summary values of one record of this metric."""
        return {key: record[key] for key in self.reports} if self.reports else {self.name: record["value"]}


JUDGE_SETTINGS = ("judge", "llm_url", "llm_model", "llm_max_tokens")
COMPLETION_SETTINGS = (*JUDGE_SETTINGS, "max_new_tokens", "seed")

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("familiarity_probability", functools.partial(familiarity.measure_probability, files="probability_prompts"),
           FAMILIARITY, FORGET_LOWER, ("probability_prompts",), demo=True, headline=True,
           help="next-token probability of target-specific words after revealing prompts"),
    Metric("familiarity_completion", functools.partial(familiarity.measure_completion, files="completion_prompts"),
           FAMILIARITY, FORGET_LOWER, ("completion_prompts", *COMPLETION_SETTINGS), demo=True, headline=True,
           help="the paper's (5·#3 + #2)/N over graded completions"),
    Metric("relearn_familiarity", relearn.measure, FAMILIARITY, FORGET_LOWER,
           ("probability_prompts", "target_text", "relearn_steps", "relearn_lr", "seed"), headline=True,
           help="probability familiarity after a few fine-tuning steps on target text"),
    Metric("verbatim_rouge_l", memorisation.measure_verbatim, MEMORISATION, FORGET_LOWER, ("target_text", "seed"),
           help="ROUGE-L of greedy continuations of target passages"),
    Metric("qa_rouge_l", memorisation.measure_qa, MEMORISATION, FORGET_LOWER, ("qa",),
           help="ROUGE-L recall of answers to questions on the target"),
    Metric("membership", mia.measure, MEMORISATION, FORGET_AUC, ("target_text", "retain_text"),
           reports=("min_k_auc", "min_k_plus_plus_auc"), help="Min-K% and Min-K%++ AUC, target against other passages"),
    Metric("side_effect_probability", functools.partial(familiarity.measure_probability, files="side_effect_probability"),
           KEPT, KEEP_HIGHER, ("side_effect_probability",), demo=True, headline=True,
           help="probability familiarity on related domains that must be kept"),
    Metric("side_effect_completion", functools.partial(familiarity.measure_completion, files="side_effect_completion"),
           KEPT, KEEP_HIGHER, ("side_effect_completion", *COMPLETION_SETTINGS), demo=True,
           help="completion familiarity on related domains that must be kept"),
    Metric("retain_perplexity", perplexity.measure, KEPT, KEEP_LOWER, ("retain_text",), demo=True, headline=True,
           help="perplexity on general text"),
    Metric("incontext_probability", functools.partial(incontext.measure, kind=PROBABILITY), ROBUSTNESS, FORGET_LOWER,
           ("probability_prompts", "incontext_passages"), suite=ROBUST,
           help="probability familiarity with a short and a long target passage before each prompt (mean of the two)"),
    Metric("incontext_completion", functools.partial(incontext.measure, kind=COMPLETION), ROBUSTNESS, FORGET_LOWER,
           ("completion_prompts", "incontext_passages", *COMPLETION_SETTINGS), suite=ROBUST,
           help="completion familiarity with a short and a long target passage before each prompt (mean of the two)"),
    Metric("crosslingual_probability", functools.partial(crosslingual.measure, kind=PROBABILITY, files="crosslingual_probability"),
           ROBUSTNESS, FORGET_LOWER, ("crosslingual_probability", "probability_prompts"), suite=ROBUST,
           help="probability familiarity on the prompts translated into other languages (mean over languages)"),
    Metric("crosslingual_completion", functools.partial(crosslingual.measure, kind=COMPLETION, files="crosslingual_completion"),
           ROBUSTNESS, FORGET_LOWER, ("crosslingual_completion", "completion_prompts", *COMPLETION_SETTINGS), suite=ROBUST,
           help="completion familiarity on the prompts translated into other languages (mean over languages)"),
    Metric("chat_completion", chat.measure, ROBUSTNESS, FORGET_LOWER, ("chat_questions", *JUDGE_SETTINGS, "max_new_tokens"),
           suite=ROBUST, help="(5·#3 + #2)/N over graded answers to questions asked through the chat template"),
    Metric("jailbreak_probability", functools.partial(jailbreak.measure, kind=PROBABILITY), ROBUSTNESS, FORGET_LOWER,
           ("probability_prompts", "jailbreak_prefixes"), suite=ROBUST,
           help="probability familiarity after jailbreak prefixes (mean over prefixes; the worst recorded)"),
    Metric("jailbreak_completion", functools.partial(jailbreak.measure, kind=COMPLETION), ROBUSTNESS, FORGET_LOWER,
           ("completion_prompts", "jailbreak_prefixes", *COMPLETION_SETTINGS), suite=ROBUST,
           help="completion familiarity after jailbreak prefixes (mean over prefixes; the worst recorded)"),
    Metric("relearn_curve", relearn_curve.measure, ROBUSTNESS, FORGET_LOWER,
           ("probability_prompts", "relearn_text", "relearn_curve_steps", "relearn_curve_lr", "relearn_curve_lora_lr",
            "relearn_curve_modes", "seed"), suite=ROBUST,
           help="probability familiarity along a relearning attack on held-out target text, full fine-tune and LoRA"),
    Metric("latent_probe", latent_probe.measure, ROBUSTNESS, FORGET_LOWER,
           ("probability_prompts", "reference_model", "probe_layer", "probe_folds"), suite=ROBUST, models=("reference_model",),
           help="accuracy of a probe trained on a reference model's hidden states, on the evaluated model's"),
)}


def suite_metrics(suite: str) -> list[str]:
    """The metrics of a suite (STANDARD, ROBUST or ALL), in table order."""
    return [m.name for m in METRICS.values() if suite in (m.suite, ALL)]


# a summary value's name -> the metric that reports it
_REPORTED_BY = {name: metric for metric in METRICS.values() for name in (metric.reports or (metric.name,))}


def reported_by(name: str) -> Metric | None:
    return _REPORTED_BY.get(name)


def group(name: str) -> str:
    if name.startswith(BENCHMARK_PREFIX):
        return BENCHMARK_GROUP
    metric = reported_by(name)
    return metric.group if metric else OTHER_GROUP


def direction(name: str) -> str:
    if name.startswith(BENCHMARK_PREFIX):
        return KEEP_HIGHER
    metric = reported_by(name)
    return metric.direction if metric else "—"


def ordered(names) -> list[str]:
    """Summary names in table order: the metrics' (as declared), then benchmarks, then the rest."""
    present = set(names)
    known = [n for n in _REPORTED_BY if n in present]
    benchmarks = sorted(n for n in present if n.startswith(BENCHMARK_PREFIX))
    return known + benchmarks + sorted(present - set(known) - set(benchmarks))


def demo_names() -> list[str]:
    return [n for m in METRICS.values() if m.demo for n in (m.reports or (m.name,))]


def headline_names() -> list[str]:
    return [n for m in METRICS.values() if m.headline for n in (m.reports or (m.name,))]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any) -> str:
    """A metric value for people: 3 decimals, 2 from 10 up, 1 from 100 up; '—' when missing."""
    if value is None:
        return "—"
    if not isinstance(value, (int, float)):
        return str(value)
    digits = 1 if abs(value) >= 100 else 2 if abs(value) >= 10 else 3
    return f"{value:.{digits}f}"
