"""Stage 3 (DESIGN §2.5): fine-tune the baseline on the generic labels, the original blocks as
inputs, with retain blocks (their targets the baseline's own predictions) mixed in. The loss
functions are in whp.methods.whp."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from whp.baseline import save_unlearned, trainable_baseline
from whp.errors import WhpError
from whp.methods.whp import whp_loss
from whp.models import load_tokenizer
from whp.runs import RunRecord, run_dtype
from whp.shards import load_examples
from whp.train import TrainOverrides, train

if TYPE_CHECKING:
    from whp.config import RunConfig


@dataclass
class FinetuneConfig:
    """Stage 3: fine-tune the baseline on the generic labels."""

    loss: str = field(default="hard", metadata={"help": "hard (argmax labels, the paper's) or soft (cross-entropy to the stored generic top-k; needs labels.top_k > 0)"})
    retain_weight: float = field(default=1.0, metadata={"help": "weight of the loss on retain text (toward the baseline's own predictions)"})
    train: TrainOverrides = field(default_factory=lambda: TrainOverrides({"lr": 1e-6, "beta2": 0.98, "batch_size": 8, "grad_accum": 16, "max_steps": 150, "lora": False}),
                        metadata={"help": "this stage's training settings over the shared `train` block (the paper, 7B: lr 1e-6, "
                                          "batch 8x16, AdamW betas (0.9, 0.98), 120-150 steps, every weight)"})

    def __post_init__(self) -> None:
        if self.loss not in ("hard", "soft"):
            raise ValueError(f"loss must be hard or soft, got {self.loss!r}")
        if self.retain_weight < 0:
            raise ValueError("retain_weight must be >= 0")


def run_finetune(cfg: RunConfig, out: Path, record: RunRecord, labels: Path) -> Path:
    """OUT/model: the baseline fine-tuned on the labels in `labels` (a finished labels folder)."""
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    examples = load_examples(labels) + load_examples(labels, prefix="retain")
    if cfg.finetune.loss == "soft" and "top_values" not in examples[0]:
        raise WhpError("finetune.loss=soft but these labels have no top-k logits (set labels.top_k)", labels)
    train_cfg = cfg.train_for("finetune")
    model = trainable_baseline(cfg.model, train_cfg, cfg.trust_remote_code)
    loss_fn = functools.partial(whp_loss, loss=cfg.finetune.loss, retain_weight=cfg.finetune.retain_weight)
    result = train(model, examples, loss_fn, train_cfg, out / "work" / "finetune", "fine-tune on generic labels", run_dtype(cfg))
    record.stage_done(cfg, "finetune", time.perf_counter() - started, steps=result.steps, tokens=result.tokens,
                      tokens_forward_backward=result.tokens_forward_backward, first_loss=result.losses[0], final_loss=result.losses[-1])
    save_unlearned(cfg, train_cfg, model, result, tokenizer, destination, record)
    return destination
