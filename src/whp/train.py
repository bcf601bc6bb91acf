"""One fine-tuning loop for every stage and method.

A method is a loss function `loss_fn(model, batch) -> (loss, n_tokens)`; the loop owns the rest:
deterministic batch order, gradient accumulation, AdamW, lr schedule, bf16 autocast (when the
precision policy picks bf16, whp.precision), progress
bar with loss and tokens/s, a checkpoint every N steps and resume from it.

Several processes (`accelerate launch`, `torchrun`) train one model through accelerate: DDP,
or FSDP / DeepSpeed ZeRO-3 from the user's accelerate config. The global batch stays
batch_size × grad_accum whatever the number of processes: the grad_accum micro-batches of a
step are dealt round-robin to the processes, so a step sees the same examples, and the same
mean gradient, on 1 process or 8 (the paper's "8 × 16" means the same everywhere, and a run
may resume on another number of processes). grad_accum should be a multiple of the number of
processes; otherwise the processes left short repeat a micro-batch with weight 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from whp import distributed
from whp.errors import WhpError
from whp.files import write_json
from whp.models import LoraConfig

log = logging.getLogger("whp")

Batch = dict[str, torch.Tensor]
TrainOverrides = typing.NewType("TrainOverrides", dict)  # a stage's changes to the shared TrainConfig, {field: value}
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
    checkpoint_every: int = field(default=50, metadata={"help": "save a resumable checkpoint every N steps; 0 = never"})
    seed: int = field(default=0, metadata={"help": "seed for batch order and dropout"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (True) or every weight (False)"})
    lora_config: LoraConfig = field(default_factory=LoraConfig, metadata={"help": "LoRA settings"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in the backward pass: far less memory for about a third more compute"})

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
    tokens: int  # positions that carried a loss
    seconds: float
    tokens_forward_backward: int = 0  # every position of every block run forward and backward (compute)
    state_dict: dict[str, torch.Tensor] | None = None  # sharded runs: the trained weights, on the main process only


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


def process_micro_batches(step: int, grad_accum: int, rank: int, world_size: int) -> list[tuple[int, bool]]:
    """(global micro-batch number, whether it counts) of each micro-batch process `rank` runs in
    optimizer step `step`: the step's grad_accum micro-batches dealt round-robin. Every process
    runs as many (FSDP and DeepSpeed gather weights inside each pass); one left short repeats
    one of the step's micro-batches, which does not count (weight 0)."""
    slots = math.ceil(grad_accum / world_size)
    dealt = [slot * world_size + rank for slot in range(slots)]
    return [(step * grad_accum + micro % grad_accum, micro < grad_accum) for micro in dealt]


def micro_batch_indices(n_examples: int, batch_size: int, seed: int, micro_index: int) -> list[int]:
    """Example indices of micro-batch number `micro_index`: a fresh seeded permutation each epoch."""
    per_epoch = math.ceil(n_examples / batch_size)
    epoch, within = divmod(micro_index, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_examples, generator=generator).tolist()
    return order[within * batch_size : (within + 1) * batch_size]


def processed_tokens(n_examples: int, width: int, cfg: TrainConfig, steps: int) -> int:
    """Tokens run forward and backward in `steps` steps over examples `width` tokens wide."""
    micro = steps * cfg.grad_accum
    return width * sum(len(micro_batch_indices(n_examples, cfg.batch_size, cfg.seed, m)) for m in range(micro))


def collate(examples: Sequence[Batch]) -> Batch:
    """Stack examples; every tensor of one key must share its shape across examples."""
    return {key: torch.stack([ex[key] for ex in examples]) for key in examples[0]}


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(folder: Path, acc, prepared, model, optimizer, step: int, losses: list[float], tokens: int) -> None:
    """Written to a temporary sibling and renamed into place by the main process. Unsharded: the
    trainable weights and the optimizer state (the same in every process); sharded (FSDP,
    DeepSpeed): accelerate's own state, every process writing its part."""
    tmp = folder.parent / f".{folder.name}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    if distributed.is_sharded(acc):
        acc.save_state(str(tmp / "accelerate"))
    elif acc.is_main_process:
        torch.save({n: p.detach().cpu().clone() for n, p in _trainable(model).items()}, tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if acc.is_main_process:
        write_json(tmp / "state.json", {"step": step, "losses": losses, "tokens": tokens})
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    acc.wait_for_everyone()


def _load_unsharded_checkpoint(folder: Path, model, optimizer) -> None:
    params = torch.load(folder / "trainable.pt", weights_only=True)
    trainable = _trainable(model)
    with torch.no_grad():
        for name, value in params.items():
            trainable[name].copy_(value)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))


def _set_activation_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Recompute each layer's activations in the backward pass (transformers >= 5 calls it
    activation checkpointing, earlier releases gradient checkpointing)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False}) if on else model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


PLAN_AFTER_STEPS = 2  # the measured time per step, after this many steps, gives the expected time of the rest
LONG_ON_A_CPU_S = 30 * 60


def _state_plan(desc: str, seconds_left: float, device: torch.device) -> None:
    """One line with the expected time of the rest of a training run; on a CPU, a long one names
    the preset made for small models on a CPU."""
    log.info("%s: about %s left at the measured speed", desc, _duration(seconds_left))
    if device.type == "cpu" and seconds_left > LONG_ON_A_CPU_S:
        log.warning("%s would take about %s on this CPU: these settings are sized for a GPU (the paper's); "
                    "`--preset small` is the measured recipe for small models on a CPU", desc, _duration(seconds_left))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 90 else f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


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
    dtype: torch.dtype = torch.float32,
    after_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train `model` in place (in every process). With `work_dir`, checkpoints go to
    `work_dir/checkpoint` and a re-run resumes from the last one; per-step losses go to
    `work_dir/train_log.jsonl`. `dtype` bf16 runs forward and backward under bf16 autocast (fp32
    master weights); fp32 runs them in fp32. A sharded run (FSDP, DeepSpeed) leaves `model` split over the
    processes: its trained weights come back whole in `TrainResult.state_dict` on the main process.
    `after_step(steps_done)` is called in every process after each optimizer step (a measurement
    along the run, e.g. a relearning curve); the model is put back in training mode after it."""
    if not examples:
        raise ValueError("no training examples")
    total = cfg.total_steps(len(examples))
    rank, world = distributed.rank(), distributed.world_size()
    slots = math.ceil(cfg.grad_accum / world)
    if cfg.grad_accum % world:
        log.warning("%s: grad_accum %d is not a multiple of the %d processes: %d of %d micro-batch passes per step are repeats "
                    "that do not count", desc, cfg.grad_accum, world, slots * world - cfg.grad_accum, slots * world)
    acc = distributed.accelerator(slots)
    if acc.gradient_accumulation_steps != slots:
        raise WhpError(f"the accelerate config sets gradient_accumulation_steps={acc.gradient_accumulation_steps}: whp sets it "
                       f"from {desc}'s grad_accum (remove it from the accelerate config)")
    if cfg.gradient_checkpointing:
        _set_activation_checkpointing(model, True)
    optimizer = torch.optim.AdamW(
        list(_trainable(model).values()), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    checkpoint = Path(work_dir) / "checkpoint" if work_dir else None
    resuming = bool(checkpoint and checkpoint.is_dir())
    if resuming and not distributed.is_sharded(acc):
        _load_unsharded_checkpoint(checkpoint, model, optimizer)
    prepared, optimizer = acc.prepare(model, optimizer)
    step, losses, tokens = 0, [], 0
    if resuming:
        if distributed.is_sharded(acc):
            acc.load_state(str(checkpoint / "accelerate"))
        state = json.loads((checkpoint / "state.json").read_text())
        step, losses, tokens = state["step"], state["losses"], state["tokens"]
        log.info("%s: resuming at step %d of %d", desc, step, total)
    log_path = Path(work_dir) / "train_log.jsonl" if work_dir else None
    if log_path and acc.is_main_process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, step)
    prepared.train()
    started, first_step = time.perf_counter(), step
    session_tokens = 0
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True,
               **({} if acc.is_main_process else {"disable": True}))
    weight = world * slots / cfg.grad_accum  # accelerate divides by `slots`, DDP averages over `world`: mean over grad_accum
    width = len(examples[0]["input_ids"])
    if acc.is_main_process and step < total:
        log.info("%s: %d steps x %d blocks of %d tokens = %s tokens forward+backward", desc, total - step,
                 cfg.batch_size * cfg.grad_accum, width, f"{(total - step) * cfg.batch_size * cfg.grad_accum * width:,}")
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.schedule)
        loss_sum, step_tokens = 0.0, 0
        for micro, counts in process_micro_batches(step, cfg.grad_accum, rank, world):
            torch.manual_seed(cfg.seed * 1_000_003 + micro)  # dropout: one draw per micro-batch, whichever process runs it, resumed or not
            indices = micro_batch_indices(len(examples), cfg.batch_size, cfg.seed, micro)
            batch = {k: v.to(acc.device) for k, v in collate([examples[i] for i in indices]).items()}
            with acc.accumulate(prepared):
                with torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    loss, n_tokens = loss_fn(prepared, batch)
                acc.backward(loss * (weight if counts else 0.0))
            if counts:
                loss_sum += loss.item()
                step_tokens += n_tokens
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(prepared.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:
            loss_sum, step_tokens = acc.reduce(torch.tensor([loss_sum, step_tokens], dtype=torch.float64, device=acc.device), "sum").tolist()
        step_loss = loss_sum / cfg.grad_accum
        step += 1
        losses.append(step_loss)
        tokens += int(step_tokens)
        session_tokens += int(step_tokens)
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{session_tokens / max(elapsed, 1e-9):.0f}")
        bar.update(1)
        if acc.is_main_process and step == first_step + PLAN_AFTER_STEPS and step < total:
            _state_plan(desc, elapsed / PLAN_AFTER_STEPS * (total - step), acc.device)
        if log_path and acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "loss": step_loss, "lr": optimizer.param_groups[0]["lr"]}) + "\n")
        if checkpoint and cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == total):
            _save_checkpoint(checkpoint, acc, prepared, model, optimizer, step, losses, tokens)
        if after_step is not None:
            after_step(step)
            prepared.train()
    bar.close()
    prepared.eval()
    if cfg.gradient_checkpointing:
        _set_activation_checkpointing(model, False)
    state_dict = distributed.full_state_dict(acc, prepared) if distributed.is_sharded(acc) else None
    return TrainResult(steps=step, losses=losses, tokens=tokens, seconds=time.perf_counter() - started, state_dict=state_dict,
                       tokens_forward_backward=processed_tokens(len(examples), width, cfg, step))
