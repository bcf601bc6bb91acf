"""Stage 1, the reinforced model R (DESIGN §2.1): the baseline fine-tuned further on the target
with the plain causal-LM loss, so that where R's logits rise above the baseline's, the token is
target-specific. A LoRA adapter by default: the baseline is then R with the adapter switched
off, one set of weights for both. The same recipe trains the adapter `whp anchors` scores
candidates with when no reinforced model is given."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from whp import distributed
from whp.baseline import trainable_baseline, trained_model
from whp.corpus import Block, load_blocks
from whp.files import atomic_folder
from whp.methods.lm import lm_examples, lm_loss
from whp.models import load_tokenizer, save_model
from whp.runs import RunRecord, reinforced_path, run_dtype
from whp.train import TrainConfig, TrainOverrides, train

if TYPE_CHECKING:
    from whp.config import RunConfig


@dataclass
class ReinforceConfig:
    """Stage 1: fine-tune the baseline further on the target (a LoRA adapter by default)."""

    train: TrainOverrides = field(default_factory=lambda: TrainOverrides({"lr": 1e-4, "epochs": 3, "warmup_steps": 10}),
                        metadata={"help": "this stage's training settings over the shared `train` block (the paper, 7B full "
                                          "fine-tune: 3 epochs, lr 3e-6, batch 8x16; LoRA wants a larger lr)"})


def reinforce(model_name: str, blocks: Sequence[Block], train_cfg: TrainConfig, dtype: torch.dtype,
              work_dir: Path | None, desc: str = "reinforce", trust_remote_code: bool = False):
    """The baseline trained on `blocks` with the causal-LM loss: (model, TrainResult)."""
    model = trainable_baseline(model_name, train_cfg, trust_remote_code)
    result = train(model, lm_examples(blocks), lm_loss, train_cfg, work_dir, desc, dtype)
    return model, result


def run_reinforce(cfg: RunConfig, out: Path, record: RunRecord) -> Path:
    """OUT/reinforced: the adapter (or full model) and the tokenizer; skipped with --reinforced."""
    destination = reinforced_path(cfg, out)
    if cfg.reinforced or destination.is_dir():
        return destination
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    blocks = load_blocks(cfg.target, tokenizer, cfg.corpus)
    train_cfg = cfg.train_for("reinforce")
    model, result = reinforce(cfg.model, blocks, train_cfg, run_dtype(cfg), out / "work" / "reinforce",
                              trust_remote_code=cfg.trust_remote_code)
    if distributed.is_main():
        model = trained_model(cfg.model, train_cfg, model, result, cfg.trust_remote_code)
        if train_cfg.lora:
            with atomic_folder(destination) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        else:
            save_model(model, tokenizer, destination)
    distributed.barrier()
    record.stage_done(cfg, "reinforce", time.perf_counter() - started, steps=result.steps, tokens=result.tokens,
                      tokens_forward_backward=result.tokens_forward_backward, final_loss=result.losses[-1], blocks=len(blocks))
    return destination
