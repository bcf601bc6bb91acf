"""The one place that talks to peft (its API moves between releases)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import PreTrainedModel


def add_adapter(model: PreTrainedModel, lora) -> PeftModel:
    """A fresh trainable LoRA adapter on `model` (base weights frozen). `lora`: whp.models.LoraConfig."""
    targets = lora.target_modules
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
    layers = model.config.num_hidden_layers
    top = range(max(0, layers - lora.top_layers), layers) if lora.top_layers else None
    if top is not None and targets == "all-linear":  # peft takes layer indices only with named modules
        target_modules = _linear_names(model)
    config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_modules,
        layers_to_transform=list(top) if top is not None else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _linear_names(model: PreTrainedModel) -> list[str]:
    """The names of the model's linear layers other than its LM head ('all-linear' spelled out)."""
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def load_adapter(model: PreTrainedModel, folder: Path, trainable: bool = False) -> PeftModel:
    return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / "adapter_config.json").is_file()


def merged(model) -> PreTrainedModel:
    """The plain model with the adapter folded into its weights."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def adapter_layers(model) -> list[BaseTunerLayer]:
    return [module for module in model.modules() if isinstance(module, BaseTunerLayer)]


@contextlib.contextmanager
def adapter_disabled(model) -> Iterator[None]:
    """Run the base model under the adapter (the LoRA-shared baseline). Flips each adapter
    layer's switch: peft's own `disable_adapter` also inspects the model and resets every
    adapter weight's requires_grad, ~30 ms a call, which the label stage paid per block."""
    layers = adapter_layers(model)
    before = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, state in zip(layers, before):
            layer._disable_adapters = state


def adapter_off(fn: Callable, model) -> Callable:
    """`fn` run with `model`'s adapter switched off (the LoRA-shared baseline)."""
    def call(*args):
        with adapter_disabled(model):
            return fn(*args)

    return call


def is_adapted(module) -> bool:
    """Whether an adapter changes this module's output (e.g. an LM head that LoRA targets)."""
    return isinstance(module, torch.nn.Module) and bool(adapter_layers(module))
