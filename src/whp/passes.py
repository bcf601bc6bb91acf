"""The baseline B and the reinforced model R, loaded once for the label stage and for anchor
extraction, and their forward passes split at the LM head.

When R is a LoRA adapter the two share one set of base weights: R is the adapted model and B is
the same model with the adapter switched off around each call (half the memory of two models).
The label stage runs each body over a batch to hidden states and applies the LM head only to a
few positions at a time (`ModelPass`), so no (batch, length, vocabulary) logits are held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from whp import peft_adapter
from whp.errors import WhpError
from whp.models import (
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    model_vocab_size,
    split_at_head,
)

log = logging.getLogger("whp")

Head = Callable[[torch.Tensor], torch.Tensor]  # per-position states (c, H) -> logits (c, V)


def identity(states: torch.Tensor) -> torch.Tensor:
    return states


class HeadIntoBuffer:
    """A bias-free linear LM head that writes its logits into one reused (rows, V) buffer. On the
    CPU a fresh allocation of that size per call costs page faults that can exceed the GEMM itself
    (measured: 39 ms against 16 ms for 512 × 576 × 49,152 in bf16). The returned logits are valid
    until the next call."""

    def __init__(self, head: torch.nn.Linear):
        self.weight = head.weight  # (V, H)
        self.buffer: torch.Tensor | None = None

    def __call__(self, states: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        if states.dtype != self.weight.dtype or (torch.is_grad_enabled() and self.weight.requires_grad):  # autocast, autograd
            return torch.nn.functional.linear(states, self.weight)
        rows = states.reshape(-1, states.shape[-1])  # (c, H)
        if self.buffer is None or len(self.buffer) < len(rows) or self.buffer.dtype != rows.dtype:
            self.buffer = torch.empty(len(rows), len(self.weight), dtype=rows.dtype, device=rows.device)
        logits = torch.mm(rows, self.weight.t(), out=self.buffer[: len(rows)])  # (c, V)
        return logits.view(*states.shape[:-1], len(self.weight))


@dataclass
class ModelPass:
    """One model's forward pass over a batch, split at its LM head: `body` (right-padded ids (B, T),
    run without an attention mask) -> hidden states (B, T, H); `head` turns a few positions'
    states into logits (c, V). A model whose logits are not head(body) (soft-capping, scaling)
    has the whole forward as its body, giving logits (B, T, V), and the identity as its head."""

    body: Callable[[torch.Tensor], torch.Tensor]
    head: Head = identity


@dataclass
class ModelPair:
    """B and R in memory. `shared`: R is a peft model whose adapter, switched off, gives B
    (then `baseline` is that same model); `reinforced` is None when no R is used."""

    baseline: torch.nn.Module
    reinforced: torch.nn.Module | None = None
    shared: bool = False


def load_pair(model: str, reinforced: str | Path | None, dtype: torch.dtype, device: torch.device,
              trust_remote_code: bool = False) -> ModelPair:
    """B from `model` and R from `reinforced` (a LoRA adapter folder or a full model; None: no R),
    in `dtype` on `device`, in eval mode. The tokenizers must match (checked before any weights load)."""
    path = Path(reinforced) if reinforced is not None else None
    if path is not None and not path.is_dir():
        raise WhpError("no reinforced model here: run `whp reinforce` first, or pass --reinforced", path)
    if path is not None and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        check_same_vocabulary(load_tokenizer(model, trust_remote_code), load_tokenizer(path, trust_remote_code), model, str(path))
    base = load_model(model, dtype, trust_remote_code).to(device)
    if path is None:
        return ModelPair(base)
    if peft_adapter.is_adapter_folder(path):
        return shared_pair(peft_adapter.load_adapter(base, path))
    other = load_model(path, dtype, trust_remote_code).to(device)
    if model_vocab_size(other) != model_vocab_size(base):
        raise WhpError(f"vocabulary size {model_vocab_size(other)} differs from the baseline's {model_vocab_size(base)}", path)
    return ModelPair(base, other.eval())


def shared_pair(adapted: torch.nn.Module) -> ModelPair:
    """A pair from a peft model (the adapter cast to the base weights' dtype: no casts per call)."""
    dtype = next(p.dtype for p in adapted.parameters())
    adapted = adapted.to(dtype).eval()
    return ModelPair(adapted, adapted, shared=True)


def model_pass(model, device: torch.device, compiled: bool = False) -> ModelPass:
    """`model` split at its LM head when its logits allow it (see models.split_at_head); with
    `compiled`, its body (or whole forward) through torch.compile."""
    split = split_at_head(model)
    if split is None:
        log.info("this model post-processes its logits: the label stage keeps whole (batch, length, vocabulary) logits")
        whole = torch.compile(model) if compiled else model
        return ModelPass(lambda ids: whole(input_ids=ids.to(device)).logits)
    body, head = split
    body = torch.compile(body) if compiled else body
    head = HeadIntoBuffer(head) if type(head) is torch.nn.Linear and head.bias is None else head
    return ModelPass(lambda ids: body(input_ids=ids.to(device)).last_hidden_state, head)


def label_passes(pair: ModelPair, device: torch.device, compiled: bool = False) -> tuple[ModelPass | None, ModelPass]:
    """The reinforced and baseline passes of the label stage. For a shared pair, B's body is R's
    with the adapter off (the head too, only if the adapter changes it: each switch costs a walk
    over the model)."""
    if pair.reinforced is None:
        return None, model_pass(pair.baseline, device, compiled)
    if not pair.shared:
        return model_pass(pair.reinforced, device, compiled), model_pass(pair.baseline, device, compiled)
    shared = pair.reinforced
    reinforced = model_pass(shared, device, compiled)
    with peft_adapter.adapter_disabled(shared):
        baseline = model_pass(shared, device, compiled)
    head = peft_adapter.adapter_off(baseline.head, shared) if peft_adapter.is_adapted(baseline.head) else baseline.head
    return reinforced, ModelPass(peft_adapter.adapter_off(baseline.body, shared), head)
