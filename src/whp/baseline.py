"""The baseline as every training stage takes it and gives it back: a fresh fp32 copy (with a
seeded LoRA adapter when the stage trains one), and the trained model, whole, saved as a
`from_pretrained` folder with its model card."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from whp import distributed, peft_adapter
from whp.card import run_card
from whp.models import add_lora, load_model, save_model
from whp.train import TrainConfig, TrainResult

if TYPE_CHECKING:
    from whp.config import RunConfig
    from whp.runs import RunRecord


def trainable_baseline(model_name: str, train_cfg: TrainConfig, trust_remote_code: bool = False):
    """The baseline in fp32 on the CPU (training places it), with a fresh seeded LoRA adapter if asked."""
    model = load_model(model_name, torch.float32, trust_remote_code)
    if train_cfg.lora:
        torch.manual_seed(train_cfg.seed)  # the adapter's initial weights
        model = add_lora(model, train_cfg.lora_config)
    return model


def trained_model(model_name: str, train_cfg: TrainConfig, model, result: TrainResult, trust_remote_code: bool = False):
    """The trained model, whole, on the main process: `model` itself, or after a sharded run
    (FSDP, DeepSpeed) a plain copy on the CPU holding the gathered weights."""
    if result.state_dict is None:
        return model
    with distributed.unsharded_loading():
        whole = trainable_baseline(model_name, train_cfg, trust_remote_code)
    whole.load_state_dict(result.state_dict)
    return whole


def save_unlearned(cfg: RunConfig, train_cfg: TrainConfig, model, result: TrainResult, tokenizer, destination: Path,
                   record: RunRecord) -> None:
    """The main process writes the trained model, adapter merged, with its card to `destination`
    (a `from_pretrained` folder); every process waits until it is there."""
    if distributed.is_main():
        whole = peft_adapter.merged(trained_model(cfg.model, train_cfg, model, result, cfg.trust_remote_code))
        save_model(whole, tokenizer, destination, {"README.md": run_card(cfg, record.data)})
    distributed.barrier()
