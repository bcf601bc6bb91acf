"""The combination formula (whp.generic), fix 2, the label stage's labels and the Hugging Face
label shift (DESIGN §2.4-2.5), the model passes split at the head (whp.passes)."""

from __future__ import annotations

import pytest
import torch
from helpers_tiny import tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import Gemma2Config, Gemma2ForCausalLM

import whp.labels
from whp.common import IGNORE
from whp.generic import generic_logits_, lower_forbidden_
from whp.labels import (
    LabelsConfig,
    batch_labels,
    block_labels,
    compute_labels,
    identity_alignment,
)
from whp.methods.whp import (
    hard_label_loss,
    soft_label_loss,
    soft_targets_cross_entropy,
    whp_loss,
)
from whp.models import split_at_head
from whp.passes import HeadIntoBuffer, ModelPass, label_passes, model_pass, shared_pair
from whp.shards import pad_right
from whp.translate import AlignedBlock


def generic_logits(v_r: torch.Tensor, v_b: torch.Tensor, alpha: float) -> torch.Tensor:
    """The paper's formula written plainly: the specification whp.generic must compute."""
    return v_b - alpha * torch.relu(v_r - v_b)


def test_generic_logits_by_hand():
    v_b = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    v_r = torch.tensor([[2.0, 3.0, -1.0, -1.0]])  # R raised token 1 by 2, lowered token 2
    assert torch.equal(generic_logits_(v_b.clone(), v_r.clone(), alpha=5.0), torch.tensor([[2.0, -9.0, 0.0, -1.0]]))
    assert torch.equal(generic_logits_(v_b.clone(), v_r.clone(), alpha=0.0), v_b)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0, 10), rows=st.integers(1, 100), bf16=st.booleans())
def test_the_chunked_in_place_formula_is_the_formula(seed, alpha, rows, bf16):
    """generic_logits_ over (B, T, V), a chunk of rows at a time, in place, equals the plain formula."""
    gen = torch.Generator().manual_seed(seed)
    v_b, v_r = torch.randn(2, rows, 13, generator=gen), torch.randn(2, rows, 13, generator=gen)
    v_r = v_r.bfloat16() if bf16 else v_r
    expected = generic_logits(v_r.float(), v_b, alpha)
    assert torch.allclose(generic_logits_(v_b.clone(), v_r.clone(), alpha), expected, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(alpha=st.floats(0, 10), seed=st.integers(0, 1000))
def test_generic_never_above_baseline(alpha, seed):
    torch.manual_seed(seed)
    v_r, v_b = torch.randn(3, 7), torch.randn(3, 7)
    v = generic_logits(v_r, v_b, alpha)
    assert torch.all(v <= v_b + 1e-6)
    untouched = v_r <= v_b
    assert torch.equal(v[untouched], v_b[untouched])


def test_lower_forbidden_only_from_its_start_and_only_downwards():
    v = torch.tensor([[0.0, 10.0, 2.0], [0.0, 10.0, 2.0], [0.0, -10.0, 2.0]])  # 3 positions, V=3
    positions = torch.tensor([4, 5, 6])
    lowered = lower_forbidden_(v.clone(), positions, [(5, 1)])
    assert lowered[0, 1] == 10.0, "before the translation occurred: untouched"
    assert torch.isclose(lowered[1, 1], v[1].mean()), "after: lowered to the position's mean"
    assert lowered[2, 1] == -10.0, "never raised"
    assert torch.equal(lowered[:, [0, 2]], v[:, [0, 2]])


def _aligned(source, target, length=6, forbidden=()):
    return AlignedBlock(list(range(length)), list(range(length)), list(source), list(target), list(forbidden), [])


def test_labels_argmax_and_hf_shift():
    v_b = torch.zeros(6, 5)
    v_r = torch.zeros(6, 5)
    v_b[1, 3] = 1.0  # baseline's favourite at original position 1 (translated position 2)
    v_b[2, 4] = 2.0  # translated position 2 prefers token 4 ...
    v_r[1, 4] = 3.0  # ... but the reinforced model raised 4 at original position 1
    result = block_labels(_aligned([1, 3], [2, 2]), v_r, v_b, LabelsConfig(alpha=5.0, top_k=0))
    assert result.labels.tolist()[0] == IGNORE
    assert result.labels[2] == 0, "label computed at position 1 is stored at 2; token 4 pushed down"
    assert result.labels[4] == 4, "position 3 uses v_b[2]: token 4 (R did not raise it at position 3)"
    assert [i for i, x in enumerate(result.labels.tolist()) if x != IGNORE] == [2, 4]


def test_top_k_soft_targets_sit_at_the_predicting_position():
    v_b = torch.randn(6, 9)
    result = block_labels(_aligned([0, 4], [0, 4]), None, v_b, LabelsConfig(alpha=0.0, top_k=3))
    assert torch.equal(result.top_indices[4], v_b[4].topk(3).indices)
    assert result.labels[5] == v_b[4].argmax()
    assert torch.allclose(result.top_values[4].exp(), torch.softmax(v_b[4], -1).topk(3).values), "full-vocabulary probabilities"
    assert result.top_values[4].exp().sum() < 1, "not renormalised over the k tokens"
    assert torch.all(result.top_values[1] == 0)


def test_hard_label_loss_is_cross_entropy_of_position_t_against_label_t_plus_1():
    model = tiny_model(50)
    ids = torch.randint(0, 50, (2, 8))
    labels = torch.full((2, 8), IGNORE)
    labels[:, 3] = 7
    labels[1, 6] = 9
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    loss, n = hard_label_loss(model, batch)
    logits = model(input_ids=ids).logits
    manual = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 2], logits[1, 2], logits[1, 5]]), torch.tensor([7, 7, 9])
    )
    assert n == 3
    assert torch.isclose(loss, manual, atol=1e-5)


def test_soft_loss_equals_hard_loss_for_one_hot_targets():
    model = tiny_model(50)
    ids = torch.randint(0, 50, (1, 8))
    labels = torch.full((1, 8), IGNORE)
    labels[0, 4] = 11
    top_values = torch.full((1, 8, 2), -1e4)  # log-probabilities: one-hot on token 11 at position 3
    top_values[0, 3] = torch.tensor([0.0, -1e4])
    top_indices = torch.zeros(1, 8, 2, dtype=torch.long)
    top_indices[0, 3] = torch.tensor([11, 12])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
             "top_values": top_values, "top_indices": top_indices}
    soft, n_soft = soft_label_loss(model, batch)
    hard, n_hard = hard_label_loss(model, batch)
    assert n_soft == n_hard == 1
    assert torch.isclose(soft, hard, atol=1e-5)


def test_soft_cross_entropy_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))  # (1, 1, 3)
    values = torch.log(torch.tensor([[[0.5, 0.3]]]))  # p = (0.5, 0.3) over tokens 0 and 1; 0.2 in the tail
    indices = torch.tensor([[[0, 1]]])
    loss = soft_targets_cross_entropy(logits.log_softmax(-1).gather(-1, indices), values)[0, 0]
    # the model's rest (token 2) holds 0.25, the generic rest 0.2
    expected = -(0.5 * torch.log(torch.tensor(0.5)) + 0.3 * torch.log(torch.tensor(0.25)) + 0.2 * torch.log(torch.tensor(0.25)))
    assert torch.isclose(loss, expected)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_soft_cross_entropy_is_stationary_where_the_model_matches_the_target(seed, k):
    """At q = p the gradient vanishes: the loss neither sharpens the top k nor empties the tail."""
    logits = torch.randn(1, 1, 9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    top = logits.log_softmax(-1).topk(k)
    z = logits.clone().float().requires_grad_(True)
    soft_targets_cross_entropy(z.log_softmax(-1).gather(-1, top.indices), top.values.float())[0, 0].backward()
    assert torch.allclose(z.grad, torch.zeros_like(z.grad), atol=1e-5)


def test_retain_examples_add_their_own_weighted_mean():
    model = tiny_model(50)
    ids = torch.randint(0, 50, (2, 8))
    labels = torch.full((2, 8), IGNORE)
    labels[0, 3], labels[0, 5], labels[1, 2] = 7, 8, 9
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    target_only = {k: v[:1] for k, v in batch.items()}
    retain_only = {k: v[1:] for k, v in batch.items()}
    with torch.no_grad():
        l_target, _ = hard_label_loss(model, target_only)
        l_retain, _ = hard_label_loss(model, retain_only)
        mixed, n = whp_loss(model, {**batch, "is_retain": torch.tensor([False, True])}, "hard", retain_weight=0.5)
    assert n == 3
    assert torch.isclose(mixed, l_target + 0.5 * l_retain, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.0, 1.0, 5.0]), n_forbidden=st.integers(0, 3))
def test_chunked_in_place_labels_equal_the_formula(seed, alpha, n_forbidden):
    """block_labels (chunked, in place) = argmax of generic_logits after lower_forbidden_, row by row."""
    gen = torch.Generator().manual_seed(seed)
    length, translated_length, vocab = 80, 90, 23
    v_r, v_b = torch.randn(length, vocab, generator=gen), torch.randn(translated_length, vocab, generator=gen)
    source = sorted(torch.randperm(length - 1, generator=gen)[:60].tolist())
    target = sorted(torch.randperm(translated_length, generator=gen)[:60].tolist())
    forbidden = [(int(torch.randint(0, 90, (1,), generator=gen)), int(torch.randint(0, vocab, (1,), generator=gen)))
                 for _ in range(n_forbidden)]
    aligned = AlignedBlock(list(range(length)), list(range(translated_length)), source, target, forbidden, [])
    result = block_labels(aligned, v_r, v_b, LabelsConfig(alpha=alpha, top_k=4))
    t = torch.tensor(target)
    expected = generic_logits(v_r[source], lower_forbidden_(v_b[t].clone(), t, forbidden), alpha)
    assert torch.equal(result.labels[torch.tensor(source) + 1], expected.argmax(-1))
    expected_logprobs = expected.topk(4).values - expected.logsumexp(-1, keepdim=True)
    assert torch.allclose(result.top_values[source], expected_logprobs, atol=1e-5)


@pytest.mark.parametrize("pin_k", [0, 2])
@pytest.mark.parametrize("same_next", [False, True])
def test_word_pairs_are_labelled_from_the_alternatives_word_end_without_the_anchors_next_token(pin_k, same_next):
    """anchor_interiors=words: interior position 2 (paired with translated position 5) gets the
    combination of v_R at 2 and v_B at 5, the anchor's next token (original token 3) first lowered
    to the mean of v_B unless the alternative goes on with the same token (translated token 6);
    interior position 3 (no pair) and the other positions are as by default."""
    gen = torch.Generator().manual_seed(7)
    v_r, v_b = torch.randn(8, 64, generator=gen), torch.randn(9, 64, generator=gen)  # (T, V), (T', V)
    ids = [0, 1, 7, 9, 4, 5, 6, 2]
    translated = [10, 11, 12, 13, 14, 15, 9 if same_next else 16, 17, 18]
    v_r[2, 9], v_b[5, 9] = 20.0, 19.0  # both models would continue the anchor
    aligned = AlignedBlock(ids, translated, [0, 1, 4, 5, 6], [0, 1, 6, 7, 8], [], [], interior_positions=[2, 3],
                           interior_word_pairs=[(2, 5)])
    plain = block_labels(aligned, v_r, v_b, LabelsConfig(alpha=5.0, top_k=3, pin_k=pin_k))
    labelled = block_labels(aligned, v_r, v_b, LabelsConfig(alpha=5.0, top_k=3, pin_k=pin_k, anchor_interiors="words"))
    assert plain.labels[3] == IGNORE and labelled.labels[4] == IGNORE == plain.labels[4]
    assert torch.equal(labelled.labels[[1, 2, 5, 6, 7]], plain.labels[[1, 2, 5, 6, 7]]), "other positions unchanged"
    assert torch.equal(labelled.top_values[[0, 1, 4, 5, 6]], plain.top_values[[0, 1, 4, 5, 6]])
    base = v_b[5].clone()
    if not same_next:
        base[9] = base.mean()
    expected = generic_logits(v_r[2], base, 5.0)
    assert labelled.labels[3] == expected.argmax()
    assert (expected.argmax() == 9) == same_next, "lowered only where the alternative goes on differently"
    stored = dict(zip(labelled.top_indices[2].tolist(), labelled.top_values[2].tolist()))
    assert stored[int(expected.argmax())] == pytest.approx(float(expected.log_softmax(-1).max()), abs=1e-5)
    if pin_k:
        assert stored[9] == pytest.approx(float(expected.log_softmax(-1)[9]), abs=1e-5), \
            "the reinforced model's pick is pinned at its generic probability"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.0, 5.0]), top_k=st.integers(1, 5), pin_k=st.integers(1, 4),
       n_forbidden=st.integers(0, 2))
def test_pinned_tokens_are_stored_once_after_the_top_k_with_their_generic_logprobs(seed, alpha, top_k, pin_k, n_forbidden):
    """pin_k: each labelled position stores the top k generic tokens other than the pinned ones,
    then the pinned ones (the reinforced model's top pin_k; the baseline's before fix 2 when
    alpha is 0), all with their generic log-probabilities; the argmax labels do not change."""
    gen = torch.Generator().manual_seed(seed)
    length, vocab = 40, 17
    v_r, v_b = torch.randn(length, vocab, generator=gen), torch.randn(length, vocab, generator=gen)
    positions = list(range(length - 1))
    forbidden = [(int(torch.randint(0, length, (1,), generator=gen)), int(torch.randint(0, vocab, (1,), generator=gen)))
                 for _ in range(n_forbidden)]
    aligned = AlignedBlock(list(range(length)), list(range(length)), positions, positions, forbidden, [])
    plain = block_labels(aligned, v_r, v_b, LabelsConfig(alpha=alpha, top_k=top_k))
    pinned = block_labels(aligned, v_r, v_b, LabelsConfig(alpha=alpha, top_k=top_k, pin_k=pin_k))
    assert torch.equal(pinned.labels, plain.labels)
    t = torch.tensor(positions)
    log_p = generic_logits(v_r[t], lower_forbidden_(v_b[t].clone(), t, forbidden), alpha).log_softmax(-1)  # (K, V)
    pins = (v_r[t] if alpha else v_b[t]).topk(pin_k).indices  # (K, pin_k)
    stored = pinned.top_indices[positions]  # (K, top_k + pin_k)
    assert stored.shape[1] == top_k + pin_k and torch.equal(stored[:, top_k:], pins)
    assert all(len(set(row.tolist())) == top_k + pin_k for row in stored), "no token stored twice"
    assert torch.allclose(pinned.top_values[positions], log_p.gather(1, stored), atol=1e-5)
    others = log_p.scatter(1, pins, float("-inf"))
    assert torch.allclose(pinned.top_values[positions, :top_k], others.topk(top_k).values, atol=1e-5)


def test_a_pinned_token_cannot_take_the_rest_mass():
    """Why pins: the generic distribution keeps 0.3 outside its stored top 2. A model that puts all
    of that 0.3 on the token the labels pushed down (token 2) loses nothing against one that
    spreads it, unless token 2 is stored (pinned) with its generic probability ~0."""
    generic = torch.tensor([0.5, 0.2, 1e-6, 0.1, 0.1, 0.1 - 1e-6])  # over 6 tokens; token 2 was pushed down
    leaking = torch.tensor([0.5, 0.2, 0.3, 1e-9, 1e-9, 1e-9])
    spread = torch.tensor([0.5, 0.2, 1e-9, 0.1, 0.1, 0.1])

    def loss(model_probs, stored):
        indices = torch.tensor([[stored]])  # (1, 1, k)
        return soft_targets_cross_entropy(model_probs.log()[indices], generic.log()[indices])[0, 0]

    assert torch.isclose(loss(leaking, [0, 1]), loss(spread, [0, 1]), atol=1e-4), "the rest bucket cannot tell them apart"
    assert loss(leaking, [0, 1, 2]) > loss(spread, [0, 1, 2]) + 1.0, "pinned, the leak costs"


def test_pin_k_needs_soft_labels():
    assert LabelsConfig(top_k=8, pin_k=4).pin_k == 4
    with pytest.raises(ValueError, match="pin_k"):
        LabelsConfig(top_k=0, pin_k=4)


def test_anchor_interiors_option_is_checked():
    assert LabelsConfig(anchor_interiors="words").anchor_interiors == "words"
    for bad in ("train", "suppress"):
        with pytest.raises(ValueError, match="ignore or words"):
            LabelsConfig(anchor_interiors=bad)


# ---- the LM head a few positions at a time ---------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.0, 5.0]))
def test_labels_from_hidden_states_and_head_equal_those_from_whole_logits(seed, alpha, monkeypatch_head_rows):
    """Logits made HEAD_ROWS positions at a time (here 7) give the labels of the whole (T, V)
    logits, bit for bit in fp32."""
    gen = torch.Generator().manual_seed(seed)
    length, hidden, vocab = 40, 6, 29
    head_r, head_b = torch.nn.Linear(hidden, vocab, bias=False), torch.nn.Linear(hidden, vocab, bias=False)
    h_r, h_b = torch.randn(length, hidden, generator=gen), torch.randn(length + 3, hidden, generator=gen)
    source = sorted(torch.randperm(length - 1, generator=gen)[:30].tolist())
    target = sorted(torch.randint(0, length + 3, (30,), generator=gen).tolist())  # repeats allowed
    aligned = AlignedBlock(list(range(length)), list(range(length + 3)), source, target, [(5, 3), (20, 7)], [])
    cfg = LabelsConfig(alpha=alpha, top_k=3)
    with torch.no_grad():
        chunked = block_labels(aligned, h_r, h_b, cfg, head_r, head_b)
        whole = block_labels(aligned, head_r(h_r), head_b(h_b), cfg)
    assert torch.equal(chunked.labels, whole.labels)
    assert torch.allclose(chunked.top_values, whole.top_values, atol=1e-6)
    assert torch.equal(chunked.top_indices, whole.top_indices)


@pytest.fixture
def monkeypatch_head_rows(monkeypatch):
    monkeypatch.setattr(whp.labels, "HEAD_ROWS", 7)


def test_split_at_head_reproduces_the_logits_or_declines():
    llama = tiny_model(60)
    body, head = split_at_head(llama)
    ids = torch.randint(0, 60, (2, 9))
    with torch.no_grad():
        assert torch.allclose(head(body(input_ids=ids).last_hidden_state), llama(input_ids=ids).logits, atol=1e-6)
    torch.manual_seed(0)
    capped = Gemma2ForCausalLM(Gemma2Config(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                            final_logit_softcapping=0.5))
    assert split_at_head(capped) is None, "soft-capped logits are not head(body)"


def test_batch_labels_through_split_model_equal_those_through_whole_logits():
    base, reinforced = tiny_model(60, seed=1), tiny_model(60, seed=2)
    gen = torch.Generator().manual_seed(0)
    blocks = []
    for n in (20, 14):
        ids = torch.randint(0, 60, (n,), generator=gen).tolist()
        blocks.append(AlignedBlock(ids, ids[:-2], list(range(n - 3)), list(range(n - 3)), [(4, 9)], []))

    def whole(model):
        return ModelPass(lambda ids: model(input_ids=ids).logits)

    def split(model):
        body, head = split_at_head(model)
        return ModelPass(lambda ids: body(input_ids=ids).last_hidden_state, head)

    cfg = LabelsConfig(alpha=5.0, top_k=4)
    expected = batch_labels(blocks, whole(reinforced), whole(base), cfg, pad_id=0)
    got = batch_labels(blocks, split(reinforced), split(base), cfg, pad_id=0)
    for e, g in zip(expected, got):
        assert torch.equal(e.labels, g.labels)
        assert torch.allclose(e.top_values, g.top_values, atol=1e-5)


# ---- shards shared between processes ---------------------------------------------------------------


def test_processes_write_disjoint_shards_that_make_the_one_process_set(tmp_path):
    model = tiny_model(60, seed=3)
    gen = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 60, (12,), generator=gen).tolist() for _ in range(7)]
    forward = ModelPass(lambda ids: model(input_ids=ids).logits)
    cfg = LabelsConfig(alpha=0.0, shard_blocks=2, batch_size=2)

    def run(folder, rank, world):
        return compute_labels(folder, len(ids), lambda i: identity_alignment(ids[i]), None, forward, cfg, 0,
                              rank=rank, world_size=world)

    run(tmp_path / "one", 0, 1)
    counts = [run(tmp_path / "three", rank, 3)["blocks"] for rank in range(3)]
    assert counts == [3, 2, 2], "shards 0 and 3 (blocks 0, 1, 6); shard 1 (2, 3); shard 2 (4, 5)"
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "three").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()
    assert run(tmp_path / "three", 1, 3)["blocks"] == 0, "a finished shard is skipped"


@pytest.mark.parametrize("targets", ["all-linear", "q_proj,v_proj,lm_head"])
def test_lora_shared_passes_are_the_reinforced_and_the_base_model(targets, tmp_path):
    """R = base + adapter, B = the same weights with the adapter off, also when it adapts the LM head."""
    from whp.models import LoraConfig, add_lora

    base, plain = tiny_model(60, seed=5), tiny_model(60, seed=5)
    torch.manual_seed(1)
    shared = add_lora(base, LoraConfig(r=4, alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, p in shared.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    shared.eval()
    reinforced, baseline = label_passes(shared_pair(shared), torch.device("cpu"))
    ids = torch.randint(0, 60, (2, 10))
    with torch.inference_mode():
        expected_b = plain(input_ids=ids).logits
        expected_r = shared(input_ids=ids).logits
        got_b = baseline.head(baseline.body(ids))
        got_r = reinforced.head(reinforced.body(ids))
    assert torch.allclose(got_b, expected_b, atol=1e-5)
    assert torch.allclose(got_r, expected_r, atol=1e-5)
    assert not torch.allclose(got_r, got_b, atol=1e-3), "the adapter does change the logits"


def test_head_into_buffer_gives_the_linear_heads_logits_and_reuses_its_buffer():
    linear = torch.nn.Linear(6, 10, bias=False)
    head = HeadIntoBuffer(linear)
    states = torch.randn(5, 6)
    first = head(states).clone()
    buffer = head.buffer
    assert torch.allclose(first, linear(states), atol=1e-6)
    assert torch.allclose(head(states[:3]), linear(states[:3]), atol=1e-6)
    assert head.buffer is buffer, "fewer rows: the same buffer"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(states.bfloat16()).dtype == torch.bfloat16  # another dtype: computed without the buffer


def test_label_passes_of_a_right_padded_batch_match_each_block_alone():
    """The label stage's passes run without the attention mask: right padding never reaches a real position."""
    model = tiny_model(70, seed=3)
    blocks = [[5, 9, 14, 2, 33, 8, 61], [7, 3, 40]]
    ids, _ = pad_right(blocks, pad_id=0)  # (2, 7), the second block padded on the right
    passes = model_pass(model, torch.device("cpu"))
    with torch.inference_mode():
        batched = passes.head(passes.body(ids)).clone()  # (2, 7, V)
        for row, block in enumerate(blocks):
            alone = model(input_ids=torch.tensor([block])).logits[0]  # (T, V), the whole model, its own mask
            assert torch.allclose(batched[row, : len(block)], alone, atol=1e-5)
