"""One fine-tuning loop for every stage and method.

A method is a loss function `loss_fn(model, batch) -> (loss, n_tokens)`; the loop owns the rest:
deterministic batch order, gradient accumulation, AdamW, lr schedule, bf16 autocast, progress
bar with loss and tokens/s, a checkpoint every N steps and resume from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from whp.files import atomic_folder, write_json
from whp.models import LoraConfig

log = logging.getLogger("whp")

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, int]]


@dataclass
class TrainConfig:
    """Optimisation settings shared by every training stage."""

    lr: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data (used when max_steps is 0)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = derive from epochs"})
    batch_size: int = field(default=4, metadata={"help": "blocks per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    schedule: str = field(default="linear", metadata={"help": "lr decay after warm-up: constant, linear or cosine"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast for forward and backward"})
    checkpoint_every: int = field(default=50, metadata={"help": "save a resumable checkpoint every N steps; 0 = never"})
    seed: int = field(default=0, metadata={"help": "seed for batch order and dropout"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (True) or every weight (False)"})
    lora_config: LoraConfig = field(default_factory=LoraConfig, metadata={"help": "LoRA settings"})

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        if self.schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"schedule must be constant, linear or cosine, got {self.schedule!r}")
        if self.max_steps < 0 or self.epochs <= 0 and self.max_steps == 0:
            raise ValueError("give max_steps > 0 or epochs > 0")

    def total_steps(self, n_examples: int) -> int:
        if self.max_steps:
            return self.max_steps
        micro_per_epoch = math.ceil(n_examples / self.batch_size)
        return max(1, math.ceil(self.epochs * micro_per_epoch / self.grad_accum))


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    tokens: int
    seconds: float


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def micro_batch_indices(n_examples: int, batch_size: int, seed: int, micro_index: int) -> list[int]:
    """Example indices of micro-batch number `micro_index`: a fresh seeded permutation each epoch."""
    per_epoch = math.ceil(n_examples / batch_size)
    epoch, within = divmod(micro_index, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_examples, generator=generator).tolist()
    return order[within * batch_size : (within + 1) * batch_size]


def collate(examples: Sequence[Batch]) -> Batch:
    """Stack examples; every tensor of one key must share its shape across examples."""
    return {key: torch.stack([ex[key] for ex in examples]) for key in examples[0]}


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(folder: Path, model, optimizer, step: int, losses: list[float], tokens: int) -> None:
    with atomic_folder(folder) as tmp:
        torch.save({n: p.detach().clone() for n, p in _trainable(model).items()}, tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": step, "losses": losses, "tokens": tokens})


def _load_checkpoint(folder: Path, model, optimizer) -> tuple[int, list[float], int]:
    params = torch.load(folder / "trainable.pt", weights_only=True)
    trainable = _trainable(model)
    with torch.no_grad():
        for name, value in params.items():
            trainable[name].copy_(value)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    return state["step"], state["losses"], state["tokens"]


def _truncate_log(path: Path, steps: int) -> None:
    """Keep the log lines of the `steps` steps a resumed run starts from (later ones are redone)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)[:steps]
        path.write_text("".join(lines))


def train(
    model: torch.nn.Module,
    examples: Sequence[Batch],
    loss_fn: LossFn,
    cfg: TrainConfig,
    work_dir: Path | None = None,
    desc: str = "training",
) -> TrainResult:
    """Train `model` in place. With `work_dir`, checkpoints go to `work_dir/checkpoint` and a
    re-run resumes from the last one; per-step losses go to `work_dir/train_log.jsonl`."""
    if not examples:
        raise ValueError("no training examples")
    total = cfg.total_steps(len(examples))
    device = next(model.parameters()).device
    params = list(_trainable(model).values())
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    checkpoint = Path(work_dir) / "checkpoint" if work_dir else None
    step, losses, tokens = 0, [], 0
    if checkpoint and checkpoint.is_dir():
        step, losses, tokens = _load_checkpoint(checkpoint, model, optimizer)
        log.info("%s: resuming at step %d of %d", desc, step, total)
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        _truncate_log(Path(work_dir) / "train_log.jsonl", step)
    model.train()
    started = time.perf_counter()
    session_tokens = 0
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True)
    while step < total:
        torch.manual_seed(cfg.seed + step)  # per step: a resumed run draws the same dropout as a straight one
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.schedule)
        step_loss, step_tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            indices = micro_batch_indices(len(examples), cfg.batch_size, cfg.seed, step * cfg.grad_accum + micro)
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in indices]).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, n_tokens = loss_fn(model, batch)
            (loss / cfg.grad_accum).backward()
            step_loss += loss.item() / cfg.grad_accum
            step_tokens += n_tokens
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(step_loss)
        tokens += step_tokens
        session_tokens += step_tokens
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{session_tokens / max(elapsed, 1e-9):.0f}")
        bar.update(1)
        if work_dir:
            with open(Path(work_dir) / "train_log.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "loss": step_loss, "lr": optimizer.param_groups[0]["lr"]}) + "\n")
        if checkpoint and cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == total):
            _save_checkpoint(checkpoint, model, optimizer, step, losses, tokens)
    bar.close()
    model.eval()
    return TrainResult(steps=step, losses=losses, tokens=tokens, seconds=time.perf_counter() - started)
