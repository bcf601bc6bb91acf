"""The one stage of a method that is a loss over the baseline (ga, gd, npo: whp.methods):
train the baseline with the method's loss on the target (and retain) blocks; OUT/model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from whp.baseline import save_unlearned, trainable_baseline
from whp.corpus import load_blocks
from whp.methods import LOSS_METHODS
from whp.methods.lm import lm_examples
from whp.models import load_tokenizer
from whp.runs import RunRecord, run_dtype
from whp.train import train

if TYPE_CHECKING:
    from whp.config import RunConfig


def run_loss_method(cfg: RunConfig, out: Path, record: RunRecord) -> Path:
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    method, settings, train_cfg = LOSS_METHODS[cfg.method], getattr(cfg, cfg.method), cfg.train_for(cfg.method)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    width = cfg.corpus.block_size
    target = lm_examples(load_blocks(cfg.target, tokenizer, cfg.corpus), is_retain=False, width=width)
    retain = []
    if cfg.retain and method.uses_retain:
        retain = lm_examples(load_blocks(cfg.retain, tokenizer, cfg.corpus), is_retain=True, width=width)
    model = trainable_baseline(cfg.model, train_cfg, cfg.trust_remote_code)
    examples, loss_fn = method.prepare(model, target, retain, settings, train_cfg, run_dtype(cfg))
    result = train(model, examples, loss_fn, train_cfg, out / "work" / cfg.method, cfg.method, run_dtype(cfg))
    record.stage_done(cfg, cfg.method, time.perf_counter() - started, steps=result.steps, tokens=result.tokens,
                      tokens_forward_backward=result.tokens_forward_backward, first_loss=result.losses[0], final_loss=result.losses[-1], blocks=len(target), retain_blocks=len(retain))
    save_unlearned(cfg, train_cfg, model, result, tokenizer, destination, record)
    return destination
