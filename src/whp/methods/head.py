"""Next-token log-probabilities of chosen tokens, without the whole (B, T, V) logits.

Every training loss reads the model's next-token distribution at a few tokens per position
(the label: one; soft labels and the KL retain term: the stored top k) and its normaliser.
`predict(model, batch)` runs the model with its LM head switched off, so that the forward
returns the last hidden states (B, T, H), and applies the head `rows` positions at a time, in
the forward and again in the backward (a chunk's logits are recomputed there). Peak memory
for the head is one (rows, V) fp32 chunk instead of the (B, T, V) logits, their fp32 copy,
softmax and gradient (for a 128k vocabulary and 4 × 2,048 tokens: 16 MB instead of several GB);
on the CPU it also spares the large fresh allocations whose page faults cost more than the
arithmetic.

A model keeps whole logits when its logits are not head(hidden states) (soft-capping,
scaling: `models.split_at_head` probes it), when its head carries an adapter, or when its
weights are sharded (FSDP, DeepSpeed ZeRO-3: the head's weight is split over processes).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from whp.models import causal_lm, split_at_head

LogProbsAt = Callable[..., torch.Tensor]  # (indices (B, T-1, K), valid (B, T-1) | None) -> (B, T-1, K) fp32
CHUNK_BYTES = 16 * 2**20  # one chunk's fp32 logits: small enough for the allocator to reuse, big enough for a fast GEMM


def chunk_rows(vocab_size: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab_size))


def from_logits(logits: torch.Tensor) -> LogProbsAt:
    """Whole logits (B, T, V): the log-probability at position t (< T-1) of each token in indices[:, t]."""
    log_probs = None

    def at(indices: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        nonlocal log_probs
        if log_probs is None:
            log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
        return log_probs.gather(-1, indices)

    return at


class _ChunkedHeadLogProbs(torch.autograd.Function):
    """log softmax(hidden @ weight.T + bias)[n, indices[n, k]], `rows` positions at a time.

    hidden (N, H), weight (V, H), bias (V,) or None, indices (N, K) -> (N, K) fp32. The GEMMs
    run in `dtype` (the autocast dtype when autocast is on), the softmax in fp32."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, indices, dtype, rows):
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            out = torch.empty(indices.shape, dtype=torch.float32, device=hidden.device)  # (N, K)
            lse = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)  # (N,)
            for s in range(0, len(hidden), rows):
                logits = _chunk_logits(hidden[s : s + rows], w, bias, dtype)  # (c, V) fp32
                lse[s : s + rows] = torch.logsumexp(logits, dim=-1)
                out[s : s + rows] = logits.gather(1, indices[s : s + rows]) - lse[s : s + rows, None]
        ctx.save_for_backward(hidden, weight, bias, indices, lse)
        ctx.dtype, ctx.rows = dtype, rows
        return out

    @staticmethod
    def backward(ctx, grad_out):  # (N, K)
        hidden, weight, bias, indices, lse = ctx.saved_tensors
        dtype, rows = ctx.dtype, ctx.rows
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        w = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        chunk_grad_weight = torch.empty(weight.shape, dtype=dtype, device=weight.device) if need_weight else None  # (V, H), reused
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_bias else None
        for s in range(0, len(hidden), rows):
            h, g_out = hidden[s : s + rows], grad_out[s : s + rows].float()  # (c, H), (c, K)
            probs = _chunk_logits(h, w, bias, dtype).sub_(lse[s : s + rows, None]).exp_()  # (c, V) softmax
            grad_logits = probs.mul_(-g_out.sum(1, keepdim=True)).scatter_add_(1, indices[s : s + rows], g_out)  # (c, V)
            g = grad_logits.to(dtype)
            if need_hidden:
                grad_hidden[s : s + rows] = (g @ w).to(hidden.dtype)
            if need_weight:
                grad_weight += torch.mm(g.t(), h.to(dtype), out=chunk_grad_weight)
            if need_bias:
                grad_bias += grad_logits.sum(0)
        return (grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype), None, None, None)


def _chunk_logits(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    logits = (h.to(dtype) @ w.t()).float()  # (c, V)
    return logits if bias is None else logits.add_(bias.float())


def from_hidden(hidden: torch.Tensor, head: torch.nn.Linear, rows: int | None = None) -> LogProbsAt:
    """Last hidden states (B, T, H) and the LM head: log-probabilities at chosen tokens, computed
    only at `valid` positions and `rows` positions at a time (zeros elsewhere)."""
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else head.weight.dtype
    rows = rows or chunk_rows(head.weight.shape[0])

    def at(indices: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        states = hidden[:, :-1]  # (B, T-1, H): position t predicts t+1
        valid = torch.ones(indices.shape[:2], dtype=torch.bool, device=indices.device) if valid is None else valid
        picked = _ChunkedHeadLogProbs.apply(states[valid], head.weight, head.bias, indices[valid], dtype, rows)  # (N, K)
        out = torch.zeros(indices.shape, dtype=torch.float32, device=hidden.device)  # (B, T-1, K)
        return out.index_put((valid,), picked)

    return at


class _PassThrough(torch.nn.Module):
    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return states


def plain_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's LM head when the chunked path applies to it (see the module's docstring), else None.
    The probe against whole logits runs once per model."""
    inner = causal_lm(model)
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if get_head else None
    if type(head) is not torch.nn.Linear or hasattr(head.weight, "ds_id") or type(head.weight).__name__ == "DTensor":
        return None
    if not hasattr(inner, "_whp_plain_head"):
        was_training = inner.training
        inner.eval()  # no dropout in the probe
        inner._whp_plain_head = split_at_head(inner) is not None
        inner.train(was_training)
    return head if inner._whp_plain_head else None


@contextlib.contextmanager
def _head_switched_off(model: torch.nn.Module, head: torch.nn.Linear):
    inner = causal_lm(model)
    inner.set_output_embeddings(_PassThrough())
    try:
        yield
    finally:
        inner.set_output_embeddings(head)


def predict(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> LogProbsAt:
    """One forward pass over `batch`; its next-token log-probabilities at chosen tokens."""
    head = plain_head(model)
    if head is None:
        return from_logits(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)  # (B, T, V)
    with _head_switched_off(model, head):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, H)
    return from_hidden(hidden, head)
