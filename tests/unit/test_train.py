"""The shared training loop: lr schedule, batch order, step counts, and resume after interruption."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers_tiny import TRAINING_TEXT, byte_level_tokenizer, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from whp.corpus import make_blocks
from whp.methods.lm import lm_examples, lm_loss
from whp.models import LoraConfig, add_lora
from whp.train import (
    TrainConfig,
    lr_factor,
    micro_batch_indices,
    process_micro_batches,
    train,
)

# ---- learning-rate schedule ----------------------------------------------------------------------


def test_warmup_is_linear_up_to_the_peak():
    assert [lr_factor(s, 10, 4, "linear") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [lr_factor(s, 10, 4, "constant") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_linear_decay():
    factors = [lr_factor(s, 10, 2, "linear") for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2:] == pytest.approx([1 - k / 8 for k in range(8)])  # 1.0, 0.875, ..., 0.125
    assert lr_factor(10, 10, 2, "linear") == 0.0


def test_cosine_decay():
    assert lr_factor(0, 10, 0, "cosine") == 1.0
    assert lr_factor(5, 10, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(2, 10, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_factor(10, 10, 0, "cosine") == pytest.approx(0.0)


def test_constant_after_warmup():
    assert [lr_factor(s, 10, 3, "constant") for s in range(3, 10)] == [1.0] * 7


def test_single_step_run_uses_the_peak():
    for schedule in ("constant", "linear", "cosine"):
        assert lr_factor(0, 1, 0, schedule) == 1.0


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(1, 500),
    warmup=st.integers(0, 600),
    schedule=st.sampled_from(["constant", "linear", "cosine"]),
    data=st.data(),
)
def test_lr_factor_within_zero_one_and_shaped(total, warmup, schedule, data):
    step = data.draw(st.integers(0, total - 1))
    factor = lr_factor(step, total, warmup, schedule)
    assert 0.0 < factor <= 1.0  # never above the peak, and no step within the run is wasted at lr 0
    if step + 1 < total:
        following = lr_factor(step + 1, total, warmup, schedule)
        if step + 1 < warmup:
            assert following > factor  # warm-up rises
        elif step >= warmup:
            assert following <= factor  # decay never rises


# ---- batch order ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 9), seed=st.integers(0, 10**6), epoch=st.integers(0, 20))
def test_each_epoch_is_a_permutation(n, batch_size, seed, epoch):
    per_epoch = math.ceil(n / batch_size)
    batches = [micro_batch_indices(n, batch_size, seed, epoch * per_epoch + i) for i in range(per_epoch)]
    assert sorted(i for batch in batches for i in batch) == list(range(n))
    assert all(len(batch) == batch_size for batch in batches[:-1]) and 1 <= len(batches[-1]) <= batch_size
    assert batches == [micro_batch_indices(n, batch_size, seed, epoch * per_epoch + i) for i in range(per_epoch)]


def test_epochs_and_seeds_shuffle_differently():
    first = [micro_batch_indices(50, 50, 0, epoch)[:] for epoch in range(3)]
    assert first[0] != first[1] != first[2]
    assert micro_batch_indices(50, 50, 0, 0) != micro_batch_indices(50, 50, 1, 0)
    assert micro_batch_indices(50, 50, 3, 7) == micro_batch_indices(50, 50, 3, 7)


# ---- step counts and validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "n", "steps"),
    [
        ({"max_steps": 7, "epochs": 3}, 100, 7),  # max_steps wins
        ({"epochs": 1, "batch_size": 4}, 10, 3),  # 3 micro-batches
        ({"epochs": 3, "batch_size": 4, "grad_accum": 2}, 10, 5),  # 9 micro-batches / 2, rounded up
        ({"epochs": 0.5, "batch_size": 2}, 10, 3),  # half of 5 micro-batches, rounded up
        ({"epochs": 1, "batch_size": 8, "grad_accum": 16}, 10, 1),  # at least one step
        ({"epochs": 2, "batch_size": 1}, 1, 2),
    ],
)
def test_total_steps(kwargs, n, steps):
    assert TrainConfig(**kwargs).total_steps(n) == steps


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"lr": 0}, "lr must be positive"),
        ({"batch_size": 0}, "at least 1"),
        ({"grad_accum": 0}, "at least 1"),
        ({"schedule": "step"}, "schedule"),
        ({"max_steps": -1}, "max_steps"),
        ({"epochs": 0}, "max_steps"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        TrainConfig(**kwargs)


# ---- the loop: accumulation and resume -----------------------------------------------------------


@pytest.fixture(scope="module")
def examples():
    tokenizer = byte_level_tokenizer()
    blocks = make_blocks(TRAINING_TEXT, tokenizer, block_size=24)
    assert len(blocks) >= 8
    return tokenizer, lm_examples(blocks[:8])


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def resume_config(**kwargs) -> TrainConfig:
    base = dict(lr=3e-3, max_steps=6, batch_size=2, grad_accum=2, warmup_steps=2, schedule="cosine",
                beta2=0.98, weight_decay=0.01, lora=False, checkpoint_every=1, seed=5)
    return TrainConfig(**{**base, **kwargs})


class Interrupt(Exception):
    pass


def interrupted_after(calls: int):
    """lm_loss that raises on micro-batch number `calls` (0-based): a kill in the middle of a step."""
    count = 0

    def loss_fn(model, batch):
        nonlocal count
        if count == calls:
            raise Interrupt
        count += 1
        return lm_loss(model, batch)

    return loss_fn


def test_training_reduces_the_loss(examples):
    tokenizer, data = examples
    model = tiny_model(len(tokenizer))
    result = train(model, data, lm_loss, resume_config(lr=1e-2, max_steps=8, schedule="constant", warmup_steps=0))
    assert result.steps == 8 and len(result.losses) == 8
    assert result.losses[-1] < result.losses[0] - 0.1
    assert result.tokens == 8 * 2 * 2 * 23  # steps × micro-batches × blocks × predicted tokens per block
    assert not model.training


def test_resume_after_interruption_equals_a_straight_run(examples, tmp_path):
    tokenizer, data = examples
    cfg = resume_config()

    straight = tiny_model(len(tokenizer), seed=1)
    straight_result = train(straight, data, lm_loss, cfg, work_dir=tmp_path / "straight")

    # a run killed in the middle of step 4 (checkpoint of step 3 on disk) ...
    killed = tiny_model(len(tokenizer), seed=1)
    with pytest.raises(Interrupt):
        train(killed, data, interrupted_after(3 * cfg.grad_accum + 1), cfg, work_dir=tmp_path / "resumed")
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3

    # ... then a fresh process: a new model with the same initial weights, the same work_dir
    fresh = tiny_model(len(tokenizer), seed=1)
    resumed_result = train(fresh, data, lm_loss, cfg, work_dir=tmp_path / "resumed")

    assert resumed_result.steps == 6
    assert resumed_result.losses == straight_result.losses
    assert resumed_result.tokens == straight_result.tokens
    expected, got = parameters(straight), parameters(fresh)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)
    initial = parameters(tiny_model(len(tokenizer), seed=1))
    assert any(not torch.equal(initial[name], got[name]) for name in got)  # it did train

    log = [json.loads(line) for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4, 5, 6]
    assert log == straight_log


def test_resume_with_dropout_equals_a_straight_run(examples, tmp_path):
    """Dropout draws random numbers every step: a resumed run must draw the same ones."""
    tokenizer, data = examples
    cfg = resume_config(max_steps=4, lora=True, lora_config=LoraConfig(r=4, alpha=8, dropout=0.3), lr=1e-2)

    def fresh():
        torch.manual_seed(11)  # the base weights and the adapter's initial weights
        return add_lora(tiny_model(len(tokenizer), seed=11), cfg.lora_config)

    straight = fresh()
    straight_result = train(straight, data, lm_loss, cfg, work_dir=tmp_path / "straight")
    with pytest.raises(Interrupt):
        train(fresh(), data, interrupted_after(2 * cfg.grad_accum), cfg, work_dir=tmp_path / "resumed")
    resumed = fresh()
    resumed_result = train(resumed, data, lm_loss, cfg, work_dir=tmp_path / "resumed")
    assert resumed_result.losses == straight_result.losses
    expected = parameters(straight)
    for name, value in parameters(resumed).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_rerunning_a_finished_run_trains_no_more(examples, tmp_path):
    tokenizer, data = examples
    cfg = resume_config(max_steps=2)
    first = tiny_model(len(tokenizer), seed=2)
    result = train(first, data, lm_loss, cfg, work_dir=tmp_path)
    again = tiny_model(len(tokenizer), seed=2)
    calls = []

    def counting_loss(model, batch):
        calls.append(1)
        return lm_loss(model, batch)

    second = train(again, data, counting_loss, cfg, work_dir=tmp_path)
    assert calls == [] and second.steps == 2 and second.losses == result.losses
    expected = parameters(first)
    assert all(torch.equal(p, expected[name]) for name, p in parameters(again).items())
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2


def test_gradient_accumulation_matches_one_big_batch(examples):
    """batch 2 × accumulation 2 sees the same blocks as batch 4 × 1 and averages the same gradient
    (8 examples: both layouts cover one epoch in exactly 2 steps)."""
    tokenizer, data = examples
    assert len(data) == 8
    big = tiny_model(len(tokenizer), seed=3)
    accumulated = tiny_model(len(tokenizer), seed=3)
    a = train(big, data, lm_loss, resume_config(max_steps=2, batch_size=4, grad_accum=1, checkpoint_every=0))
    b = train(accumulated, data, lm_loss, resume_config(max_steps=2, batch_size=2, grad_accum=2, checkpoint_every=0))
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    expected = parameters(big)
    for name, value in parameters(accumulated).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_no_examples_is_an_error(examples):
    tokenizer, _ = examples
    with pytest.raises(ValueError, match="no training examples"):
        train(tiny_model(len(tokenizer)), [], lm_loss, resume_config())


# ---- several processes: micro-batches dealt round-robin ------------------------------------------


@settings(max_examples=200, deadline=None)
@given(grad_accum=st.integers(1, 12), world_size=st.integers(1, 8), step=st.integers(0, 50))
def test_processes_share_each_steps_micro_batches_exactly_once(grad_accum, world_size, step):
    dealt = [process_micro_batches(step, grad_accum, rank, world_size) for rank in range(world_size)]
    assert len({len(d) for d in dealt}) == 1, "every process runs as many passes (FSDP and DeepSpeed need it)"
    counted = sorted(micro for d in dealt for micro, counts in d if counts)
    assert counted == list(range(step * grad_accum, (step + 1) * grad_accum))
    assert all(step * grad_accum <= micro < (step + 1) * grad_accum for d in dealt for micro, _ in d)


def test_one_process_runs_every_micro_batch_in_order():
    assert process_micro_batches(3, 4, 0, 1) == [(12, True), (13, True), (14, True), (15, True)]
    assert process_micro_batches(0, 1, 1, 2) == [(0, False)], "a process left short repeats one, uncounted"


def test_gradient_checkpointing_changes_no_number(examples):
    tokenizer, data = examples
    plain, checkpointed = tiny_model(len(tokenizer), seed=4), tiny_model(len(tokenizer), seed=4)
    calls = {"plain": 0, "checkpointed": 0}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        model.model.layers[0].mlp.register_forward_pre_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    a = train(plain, data, lm_loss, resume_config(max_steps=3, checkpoint_every=0))
    b = train(checkpointed, data, lm_loss, resume_config(max_steps=3, checkpoint_every=0, gradient_checkpointing=True))
    probe = 2  # whp.methods.head checks once per model that its logits are head(hidden states): two passes
    assert calls == {"plain": 6 + probe, "checkpointed": 12 + probe}, "each layer ran again in the backward pass"
    assert a.losses == pytest.approx(b.losses, rel=1e-6)
    expected = parameters(plain)
    for name, value in parameters(checkpointed).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules()), "switched off after training"


def test_training_states_its_plan_and_expected_time(examples, caplog, monkeypatch):
    """Before a long stage: the tokens it will train on, then, after two measured steps, the
    expected time of the rest; on a CPU a long run names the preset made for it."""
    import whp.train

    caplog.set_level("INFO", logger="whp")
    monkeypatch.setattr(whp.train, "LONG_ON_A_CPU_S", 0.0)
    tokenizer, data = examples
    train(tiny_model(len(tokenizer)), data, lm_loss, resume_config(max_steps=4, checkpoint_every=0), desc="demo stage")
    messages = [r.message for r in caplog.records]
    assert "demo stage: 4 steps x 4 blocks of 24 tokens = 384 tokens forward+backward" in messages
    assert any(m.startswith("demo stage: about ") and m.endswith(" left at the measured speed") for m in messages)
    assert any("--preset small" in m for m in messages)
