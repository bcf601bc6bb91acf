"""Relearning curve: probability familiarity after 0, 10, 50 and 100 fine-tuning steps on target
text the model never trained on, a full fine-tune and a LoRA adapter, each one run measured at its
checkpoints. Familiarity against attack strength: an unlearning that holds stays low along the
curve; one that only hid the knowledge climbs back within a few steps."""

from __future__ import annotations

from pathlib import Path

from whp.corpus import read_text
from whp.evaluate.familiarity import measure_probability
from whp.evaluate.prompts import load_passages
from whp.evaluate.relearn import relearning_curve
from whp.evaluate.robust import WRAPPER_HAS_NO_WEIGHTS, skipped

MODES = ("full", "lora")


def attack_text(files: list[str]) -> str:
    """The attack's text: text files as they are, passage files (.jsonl) as their passages, a
    blank line between any two."""
    return "\n\n".join(
        "\n\n".join(p.text for p in load_passages(f)) if Path(f).suffix == ".jsonl" else read_text([f]) for f in files
    )


def measure(model, tokenizer, cfg, path: str) -> dict:
    """One attack per mode of `cfg.relearn_curve_modes` on a fresh copy loaded from `path`; value =
    familiarity at the last checkpoint of the first mode (the full fine-tune by default); each
    mode's curve (familiarity "probe" and slice loss at each of "steps") under "curves"."""
    from whp.inference import InferenceWHP

    if isinstance(model, InferenceWHP):
        return skipped(path, "relearn_curve", WRAPPER_HAS_NO_WEIGHTS)

    def probe(attacked) -> float:
        return measure_probability(attacked, tokenizer, cfg, path, files="probability_prompts")["value"]

    text = attack_text(cfg.relearn_text)
    lrs = {"full": cfg.relearn_curve_lr, "lora": cfg.relearn_curve_lora_lr}
    curves = {mode: relearning_curve(path, tokenizer, text, probe, cfg.relearn_curve_steps, lrs[mode], lora=mode == "lora",
                                     seed=cfg.seed, dtype=cfg.resolved_dtype())
              for mode in cfg.relearn_curve_modes}
    first = curves[cfg.relearn_curve_modes[0]]
    return {"value": first["probe"][-1], "curves": curves}
