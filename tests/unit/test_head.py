"""The chunked LM head (whp.methods.head): the same log-probabilities and gradients as whole logits."""

from __future__ import annotations

import pytest
import torch
from helpers_tiny import tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from whp.methods.head import from_hidden, from_logits, plain_head, predict
from whp.methods.lm import lm_loss, masked_mean, token_nll
from whp.methods.whp import soft_label_loss
from whp.models import LoraConfig, add_lora


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 7), k=st.integers(1, 4), bias=st.booleans())
def test_chunked_head_matches_whole_logits_in_value_and_gradient(seed, rows, k, bias):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 6, 5, generator=g, requires_grad=True)  # (B, T, H)
    head = torch.nn.Linear(5, 11, bias=bias)
    with torch.no_grad():
        head.weight.copy_(torch.randn(11, 5, generator=g))
        if bias:
            head.bias.copy_(torch.randn(11, generator=g))
    indices = torch.randint(0, 11, (2, 5, k), generator=g)  # (B, T-1, K)
    valid = torch.rand(2, 5, generator=g) > 0.3  # (B, T-1)
    upstream = torch.randn(2, 5, k, generator=g)

    def grads(logprobs_at):
        out = logprobs_at(indices, valid) * valid[..., None]
        params = [hidden, head.weight] + ([head.bias] if bias else [])
        return out, torch.autograd.grad((out * upstream).sum(), params)

    chunked, chunked_grads = grads(from_hidden(hidden, head, rows=rows))
    whole, whole_grads = grads(from_logits(head(hidden)))
    assert torch.allclose(chunked, whole, atol=1e-5)
    for a, b in zip(chunked_grads, whole_grads):
        assert torch.allclose(a, b, atol=1e-5)


def tiny_batch(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}


def whole_logits_lm_loss(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll, valid = token_nll(from_logits(logits), batch)
    return masked_mean(nll, valid)


@pytest.mark.parametrize("tied", [False, True])
def test_predict_runs_the_head_in_chunks_with_the_same_loss_and_gradients(tied):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)).train()
    batch = tiny_batch(50)
    assert plain_head(model) is model.lm_head
    chunked = lm_loss(model, batch)[0]
    chunked_grads = torch.autograd.grad(chunked, list(model.parameters()))
    whole = whole_logits_lm_loss(model, batch)
    whole_grads = torch.autograd.grad(whole, list(model.parameters()))
    assert torch.isclose(chunked, whole, atol=1e-6)
    for a, b in zip(chunked_grads, whole_grads):
        assert torch.allclose(a, b, atol=1e-6)
    assert isinstance(model.lm_head, torch.nn.Linear)  # the head is back after the pass


def test_predict_with_a_lora_adapter_and_under_bf16_autocast_is_close_to_whole_logits():
    model = add_lora(tiny_model(60), LoraConfig(r=4))
    batch = tiny_batch(60)
    top = torch.randn(2, 9, 3).log_softmax(-1)
    batch |= {"top_values": top, "top_indices": torch.randint(0, 60, (2, 9, 3))}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = soft_label_loss(model, batch)[0]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    from whp.methods.whp import position_losses

    losses, valid = position_losses(from_logits(logits), batch, "soft")
    assert torch.isclose(chunked, masked_mean(losses, valid), rtol=1e-2)


def test_an_adapted_or_post_processed_head_keeps_whole_logits():
    adapted = add_lora(tiny_model(40), LoraConfig(r=4, target_modules="q_proj,lm_head"))
    assert plain_head(adapted) is None

    class Scaled(torch.nn.Module):  # logits = head(h) / 2 (as a temperature or logit scale would): not head(body)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def set_output_embeddings(self, head):
            self.inner.set_output_embeddings(head)

        @property
        def base_model(self):
            return self.inner.model

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits = out.logits / 2
            return out

    model = Scaled(tiny_model(40))
    assert plain_head(model) is None
    batch = tiny_batch(40)
    logprobs = predict(model, batch)(batch["labels"][:, 1:, None])
    expected = from_logits(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)(batch["labels"][:, 1:, None])
    assert torch.equal(logprobs, expected)
