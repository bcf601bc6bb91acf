"""The model card (README.md) of a model folder that whp writes: the one owner of its text.

`run_card` is written with the model (what was forgotten, how, what it cost); `update_model_card`
adds or replaces its evaluation section (`whp eval`, `whp demo`), leaving other tools' cards alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import whp
from whp.files import atomic_write_bytes

if TYPE_CHECKING:
    from whp.config import RunConfig
    from whp.train import TrainConfig

EVALUATION_HEADING = "## Evaluation ("


def _training_line(train_cfg: TrainConfig) -> str:
    length = f"{train_cfg.max_steps} steps" if train_cfg.max_steps else f"{train_cfg.epochs} epochs"
    batch = f"batch {train_cfg.batch_size}x{train_cfg.grad_accum}"
    return f"lr {train_cfg.lr}, {length}, {batch}, {'LoRA (merged)' if train_cfg.lora else 'all weights'}"


def _dictionary_name(cfg: RunConfig) -> str:
    if not cfg.labels.use_dictionary:
        return "none"
    return cfg.anchors or "extracted from the target (anchors.yaml)"


def _method_lines(cfg: RunConfig) -> str:
    from whp.methods import LOSS_METHODS

    if cfg.method == "whp":
        return (f"by the \"Who's Harry Potter?\" method (Eldan & Russinovich, 2023)\n\n"
                f"- anchored dictionary: `{_dictionary_name(cfg)}`; alpha = {cfg.labels.alpha}; block size {cfg.corpus.block_size}\n"
                f"- fine-tuning: {cfg.finetune.loss} labels, {_training_line(cfg.train_for('finetune'))}")
    if cfg.method == "whp-inference":
        return ("by inference-time WHP (no fine-tuning: the logits are v_B − α·ReLU(v_R − v_B) on the same input)\n\n"
                f"- alpha = {cfg.inference.alpha}; reinforced model: {'`' + cfg.reinforced + '`' if cfg.reinforced else 'trained on the target'}\n"
                "- load with `whp.load_model(<this folder>)` (not `from_pretrained`)")
    method = LOSS_METHODS[cfg.method]
    retain = f"; retain text: {', '.join(f'`{r}`' for r in cfg.retain)}" if cfg.retain and method.uses_retain else ""
    return (f"by `{cfg.method}`: {method.description}\n\n"
            f"- training: {_training_line(cfg.train_for(cfg.method))}; block size {cfg.corpus.block_size}{retain}")


def run_card(cfg: RunConfig, record: dict) -> str:
    """A Markdown card for the model folder: what was forgotten, how, and what it cost."""
    rows = "\n".join(
        f"| {stage} | {facts.get('seconds', '')} | {facts.get('tokens', '')} | {facts.get('final_loss', '')} |"
        for stage, facts in record["stages"].items()
    )
    return f"""---
library_name: transformers
tags: [unlearning, whp]
---

# Unlearned model (whp {whp.__version__})

Made with `whp unlearn --method {cfg.method}` from `{cfg.model}`, forgetting the text in
{', '.join(f'`{t}`' for t in cfg.target)}, {_method_lines(cfg)}

| stage | seconds | tokens | final loss |
|---|---|---|---|
{rows}

Measure what was forgotten and kept with `whp eval --model <this folder>`.
"""


def percent_change(before: Any, after: Any) -> float:
    """(after - before) / before in per cent; NaN when either is missing or not finite, or before is 0."""
    if not _finite(before) or not _finite(after) or not before:
        return float("nan")
    return 100.0 * (after - before) / before


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _percent(before: Any, after: Any) -> str:
    change = percent_change(before, after)
    return "—" if math.isnan(change) else f"{change:+.1f} %"


def evaluation_section(values: dict[str, float], source: str, before: dict[str, float] | None = None) -> str:
    """The evaluation section of a model card, in Markdown: one row per metric with its direction;
    with `before` (the base model's values), also the base's value and the change in per cent."""
    from whp.evaluate.metrics import direction, fmt, ordered

    names = ordered(values)
    if before is None:
        lines = ["| metric | value | direction |", "|---|---:|---|"]
        lines += [f"| {m} | {fmt(values[m])} | {direction(m)} |" for m in names]
    else:
        lines = ["| metric | base model | this model | change | direction |", "|---|---:|---:|---:|---|"]
        lines += [f"| {m} | {fmt(before.get(m))} | {fmt(values[m])} | {_percent(before.get(m), values[m])} | "
                  f"{direction(m)} |" for m in names]
    return f"{EVALUATION_HEADING}{source})\n\n" + "\n".join(lines) + "\n"


def update_model_card(folder: Path, values: dict[str, float], source: str = "whp eval",
                      before: dict[str, float] | None = None) -> None:
    """Write (or replace) the evaluation section of the README.md of a model folder that whp made;
    `before`: the base model's values, shown beside the model's own with the change."""
    card = Path(folder) / "README.md"
    if not card.is_file() or "whp" not in card.read_text():
        return
    head = card.read_text().split("\n" + EVALUATION_HEADING)[0].rstrip("\n")
    atomic_write_bytes(card, f"{head}\n\n{evaluation_section(values, source, before)}".encode())
