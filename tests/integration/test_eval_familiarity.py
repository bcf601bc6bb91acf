import pytest
import torch
from helpers_tiny import byte_level_tokenizer, sentencepiece_tokenizer, tiny_model
from transformers import PreTrainedTokenizerFast

from whp.errors import WhpError
from whp.evaluate.familiarity import (
    completion_familiarity,
    familiarity_score,
    generate_completions,
    probability_familiarity,
    target_token_ids,
)
from whp.evaluate.judges import JudgeError, ReferenceJudge
from whp.evaluate.prompts import CompletionPrompt, ProbabilityPrompt

PROMPTS = [
    "Sherlock Holmes's arch-enemy was Professor",
    "Holmes",
    "Mrs Hudson kept the house. Inspector Lestrade of Scotland Yard often asked",
    "The weather<eos> in London was",  # an EOS inside the prompt: it must not be masked as padding
    "A cab rattled past the window while Doctor Watson",
]


@pytest.fixture(scope="module")
def tok():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(len(tok), seed=1)


def no_pad(tok):
    """The same tokenizer without a pad token (most causal LMs): pad falls back to EOS."""
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<eos>")
    assert bare.pad_token is None
    return bare


def test_probabilities_match_unpadded_softmax(model, tok):
    assert tok("x<eos>y", add_special_tokens=False)["input_ids"].count(tok.eos_token_id) == 1
    prompts = [ProbabilityPrompt(p, ["Moriarty", "Watson"]) for p in PROMPTS]
    result = probability_familiarity(model, no_pad(tok), prompts, batch_size=4)
    assert result["n"] == len(PROMPTS)
    for p, d in zip(PROMPTS, result["prompts"]):
        ids = tok(p)["input_ids"]
        with torch.no_grad():
            probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)  # (V,)
        targets = sorted({*target_token_ids(tok, "Moriarty"), *target_token_ids(tok, "Watson")})
        assert 0.0 <= d["probability"] <= 1.0
        assert d["probability"] == pytest.approx(probs[targets].sum().item(), rel=1e-4, abs=1e-7)
        assert d["top1"] == tok.decode([int(probs.argmax())])
        assert d["rank"] == 1 + int((probs > probs[targets].max()).sum())
    assert result["value"] == pytest.approx(sum(d["probability"] for d in result["prompts"]) / len(PROMPTS))


def test_probability_of_the_whole_vocabulary_is_one(model, tok):
    every = [tok.decode([i]) for i in range(len(tok))]
    (d,) = probability_familiarity(model, tok, [ProbabilityPrompt("Holmes", [w for w in every if w.strip()])])["prompts"]
    assert 0.0 < d["probability"] <= 1.0 + 1e-5 and d["rank"] == 1


def test_target_tokens_with_and_without_space():
    tok = byte_level_tokenizer()
    ids = target_token_ids(tok, "Holmes")
    assert tok.decode([ids[0]]).startswith("H") and any(tok.decode([i]).startswith(" H") for i in ids)
    assert len(ids) == len(set(ids))
    sp = sentencepiece_tokenizer()
    assert all(sp.decode([i]).strip() for i in target_token_ids(sp, "Holmes"))


def test_continuation_that_tokenizes_to_nothing(model, tok):
    with pytest.raises(WhpError, match="Holmes"):
        probability_familiarity(model, tok, [ProbabilityPrompt("Holmes", ["<eos>"])])


def test_batched_generation_equals_one_at_a_time(model, tok):
    bare = no_pad(tok)
    batched = generate_completions(model, bare, PROMPTS, max_new_tokens=12, batch_size=5)
    single = [generate_completions(model, bare, [p], max_new_tokens=12, batch_size=1)[0] for p in PROMPTS]
    assert list(batched) == single
    assert batched.new_tokens > 0 and batched.tokens_per_second > 0
    assert generate_completions(model, bare, PROMPTS, max_new_tokens=12, batch_size=2) == batched


def test_sampling_is_seeded(model, tok):
    a = generate_completions(model, tok, PROMPTS[:3], max_new_tokens=10, sample=True, seed=7)
    state = torch.random.get_rng_state()
    assert generate_completions(model, tok, PROMPTS[:3], max_new_tokens=10, sample=True, seed=7) == a
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    others = [generate_completions(model, tok, PROMPTS[:3], max_new_tokens=10, sample=True, seed=s) for s in range(3)]
    assert any(o != a for o in others)


def test_familiarity_score():
    assert familiarity_score([3, 2, 0, 1]) == (5 + 1) / 4
    assert familiarity_score([3] * 4) == 5.0
    assert familiarity_score([]) == 0.0


def test_completion_familiarity_with_reference_judge(model, tok):
    prompts = [CompletionPrompt(p, ["Watson"]) for p in PROMPTS[:3]]
    completions = ["and Watson said", "nothing here", "he played the violin"]
    result = completion_familiarity(model, tok, prompts, ReferenceJudge(themes=["violin"]), completions=completions)
    assert [d["grade"] for d in result["prompts"]] == [3, 0, 2]
    assert result["counts"] == {"0": 1, "1": 0, "2": 1, "3": 1}
    assert result["value"] == pytest.approx(6 / 3)
    generated = completion_familiarity(model, tok, prompts, ReferenceJudge(), max_new_tokens=6)
    assert generated["tokens_per_second"] > 0 and len(generated["prompts"]) == 3


class FailingJudge:
    def grade_many(self, items):
        raise JudgeError("judge endpoint unreachable: refused", "http://x", graded=[(3, "ok"), None, None])


def test_completion_familiarity_keeps_partial_results(model, tok):
    prompts = [CompletionPrompt(p, ["Watson"]) for p in PROMPTS[:3]]
    with pytest.raises(JudgeError) as info:
        completion_familiarity(model, tok, prompts, FailingJudge(), max_new_tokens=4)
    partial = info.value.partial
    assert [d["grade"] for d in partial["prompts"]] == [3, None, None]
    assert all(isinstance(d["completion"], str) for d in partial["prompts"])
    assert partial["n"] == 1 and partial["value"] == 5.0
