"""Relearning attack: does the forgotten knowledge come back after a few fine-tuning steps on a
little target text? Published WHP models failed exactly here (Lynch et al. 2024, "Eight methods
to evaluate robust unlearning in LLMs"), so it is a first-class number of every evaluation."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp.corpus import make_blocks, read_text
from whp.errors import WhpError
from whp.evaluate.robust import WRAPPER_HAS_NO_WEIGHTS, skipped
from whp.methods.lm import lm_examples, lm_loss
from whp.models import LoraConfig, add_lora, default_device, load_model
from whp.train import Batch, TrainConfig, train

LORA_RANK = 16  # the adapter of a LoRA relearning attack


def slice_examples(
    tokenizer: PreTrainedTokenizerBase, text: str, block_size: int, n_blocks: int, seed: int
) -> list[Batch]:
    """Up to `n_blocks` blocks of the text (seeded draw, text order) as causal-LM examples."""
    blocks = make_blocks(text, tokenizer, block_size) or make_blocks(text, tokenizer, block_size, keep_tail=True)
    blocks = [b for b in blocks if len(b.ids) >= 2]
    if not blocks:
        raise WhpError("target text is too short for a relearning attack (fewer than 2 tokens)")
    if len(blocks) > n_blocks:
        blocks = sorted(random.Random(seed).sample(blocks, n_blocks), key=lambda b: b.index)
    return lm_examples(blocks)


def mean_loss(model: torch.nn.Module, examples: list[Batch], batch_size: int) -> float:
    """Token-weighted mean next-token loss of the model on the examples."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            group = examples[start : start + batch_size]
            batch = {k: torch.stack([ex[k] for ex in group]).to(device) for k in group[0]}  # (B, T)
            loss, n = lm_loss(model, batch)
            total, count = total + loss.item() * n, count + n
    return total / count


def relearning_curve(
    model_path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    target_text: str,
    probe: Callable[[PreTrainedModel], float],
    checkpoints: Sequence[int],
    lr: float = 1e-5,
    lora: bool = False,
    block_size: int = 256,
    batch_size: int = 4,
    n_blocks: int = 8,
    seed: int = 0,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Load a fresh copy of the (unlearned) model and fine-tune it at a constant `lr` on `n_blocks`
    blocks of target text for the last of `checkpoints` steps (every weight, or with `lora` a
    fresh rank-16 LoRA adapter), measuring `probe` (e.g. probability familiarity) and the loss on
    the slice after each checkpoint's number of steps (0 = before training), along the one run.
    `device` defaults to this process's device; the attack trains under `dtype` (bf16: autocast
    over fp32 weights, as every whp training stage)."""
    device = device or str(default_device())
    model = load_model(model_path)
    if lora:
        torch.manual_seed(seed)  # the adapter's initial weights
        model = add_lora(model, LoraConfig(r=LORA_RANK))
    model = model.to(device)
    examples = slice_examples(tokenizer, target_text, block_size, n_blocks, seed)
    wanted = set(checkpoints)
    points: dict[int, tuple[float, float]] = {}

    def measure_at(steps_done: int) -> None:
        if steps_done in wanted:
            model.eval()
            points[steps_done] = probe(model), mean_loss(model, examples, batch_size)

    started = time.perf_counter()
    measure_at(0)
    losses, tokens = [], 0
    if max(checkpoints) > 0:
        cfg = TrainConfig(lr=lr, max_steps=max(checkpoints), batch_size=batch_size, schedule="constant",
                          checkpoint_every=0, seed=seed, lora=lora)
        result = train(model, examples, lm_loss, cfg, work_dir=None, desc="relearning attack", dtype=dtype, after_step=measure_at)
        losses, tokens = result.losses, result.tokens
    return {
        "steps": list(checkpoints),
        "probe": [points[s][0] for s in checkpoints],
        "slice_loss": [points[s][1] for s in checkpoints],
        "train_losses": losses,
        "lr": lr,
        "lora": lora,
        "blocks": len(examples),
        "block_size": len(examples[0]["input_ids"]),
        "tokens_trained": tokens,
        "seconds": time.perf_counter() - started,
    }


def relearning_attack(
    model_path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    target_text: str,
    probe: Callable[[PreTrainedModel], float],
    steps: int = 20,
    lr: float = 1e-5,
    **sizes_and_device,
) -> dict:
    """Fine-tune a fresh copy of the (unlearned) model, every weight, for `steps` steps
    (`relearning_curve`, whose block_size, batch_size, n_blocks, seed, device and dtype the other
    keywords set) and measure `probe` (e.g. probability familiarity, higher = more familiar)
    before and after. value = the probe after the attack; an unlearning that holds keeps it near
    the value before (`change` ≈ 0), one that only hid the knowledge jumps back towards the
    original model's value. Also reported: the model's loss on the slice before and after (it
    must fall: the attack did train), per-step losses."""
    curve = relearning_curve(model_path, tokenizer, target_text, probe, [0, steps], lr, **sizes_and_device)
    (probe_before, probe_after), (loss_before, loss_after) = curve["probe"], curve["slice_loss"]
    return {
        "value": probe_after,
        "probe_before": probe_before,
        "probe_after": probe_after,
        "change": probe_after - probe_before,
        "slice_loss_before": loss_before,
        "slice_loss_after": loss_after,
        "train_losses": curve["train_losses"],
        "steps": steps,
        "lr": lr,
        "blocks": curve["blocks"],
        "block_size": curve["block_size"],
        "tokens_trained": curve["tokens_trained"],
        "seconds": curve["seconds"],
    }


def measure(model, tokenizer, cfg, path: str) -> dict:
    """The attack trains a fresh copy loaded from `path`; the probe is probability familiarity."""
    from whp.evaluate.familiarity import measure_probability
    from whp.inference import InferenceWHP

    if isinstance(model, InferenceWHP):
        return skipped(path, "relearn_familiarity", WRAPPER_HAS_NO_WEIGHTS)

    def probe(attacked) -> float:
        return measure_probability(attacked, tokenizer, cfg, path, files="probability_prompts")["value"]

    return relearning_attack(path, tokenizer, read_text(cfg.target_text), probe, steps=cfg.relearn_steps,
                             lr=cfg.relearn_lr, seed=cfg.seed, dtype=cfg.resolved_dtype())
