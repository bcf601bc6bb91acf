import math

import pytest
import torch
from helpers_tiny import TRAINING_TEXT, byte_level_tokenizer, tiny_model

from whp.errors import WhpError
from whp.evaluate.memorisation import qa_knowledge, verbatim_memorisation
from whp.evaluate.mia import membership_auc, min_k_scores
from whp.evaluate.perplexity import perplexity
from whp.evaluate.prompts import QAItem

TEXTS = [line for line in TRAINING_TEXT.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tok():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(len(tok), seed=2)


def loss(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()


def test_perplexity_of_one_block_is_exp_loss(model, tok):
    text = TEXTS[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    result = perplexity(model, tok, text, block_size=512)
    assert result["blocks"] == 1 and result["tokens"] == len(ids) - 1
    assert result["value"] == pytest.approx(math.exp(loss(model, ids)), rel=1e-5)


def test_perplexity_over_blocks_with_padded_tail(model, tok):
    text = " ".join(TEXTS[:3])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    blocks = [ids[i : i + 16] for i in range(0, len(ids), 16)]
    assert len(blocks[-1]) not in (0, 1, 16)  # a shorter tail, padded in a batch
    nll = sum(loss(model, b) * (len(b) - 1) for b in blocks) / sum(len(b) - 1 for b in blocks)
    for batch_size in (1, 3):
        result = perplexity(model, tok, text, block_size=16, batch_size=batch_size)
        assert result["nll"] == pytest.approx(nll, rel=1e-5)
    with pytest.raises(WhpError):
        perplexity(model, tok, "a", block_size=16)


def manual_scores(model, tok, text, k):
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)  # (T-1, V)
    token = logp.gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp**2).sum(-1) - mu**2).sqrt()
    n = max(1, math.ceil(k * token.numel()))
    return token.sort().values[:n].mean().item(), ((token - mu) / sigma).sort().values[:n].mean().item()


def test_min_k_scores_match_manual_and_batching(model, tok):
    texts = TEXTS[:4]
    mk = min_k_scores(model, tok, texts, k=0.2, batch_size=3)
    pp = min_k_scores(model, tok, texts, k=0.2, batch_size=3, plus_plus=True)
    for text, a, b in zip(texts, mk, pp):
        ma, mb = manual_scores(model, tok, text, 0.2)
        assert a == pytest.approx(ma, rel=1e-4) and b == pytest.approx(mb, rel=1e-3, abs=1e-4)
        assert a <= 0


def test_membership_auc(model, tok):
    result = membership_auc(model, tok, TEXTS[:3], TEXTS[:3])
    assert result["value"] == result["min_k_auc"] == 0.5 and result["min_k_plus_plus_auc"] == 0.5
    result = membership_auc(model, tok, TEXTS[:3], TEXTS[3:6])
    assert 0 <= result["min_k_auc"] <= 1 and 0 <= result["min_k_plus_plus_auc"] <= 1
    assert len(result["member_min_k"]) == 3 and result["members"] == 3


def test_verbatim_memorisation(model, tok):
    text = " ".join(TEXTS * 3)
    result = verbatim_memorisation(model, tok, text, n_passages=3, prompt_tokens=8, continuation_tokens=6, seed=1)
    assert result["n"] == 3 and 0 <= result["value"] <= 1
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for p in result["passages"]:
        start = p["token_offset"]
        assert p["truth"] == tok.decode(ids[start + 8 : start + 14])
    assert result == {**verbatim_memorisation(model, tok, text, 3, 8, 6, seed=1), "tokens_per_second": result["tokens_per_second"]}
    with pytest.raises(WhpError, match="too short"):
        verbatim_memorisation(model, tok, "Holmes", prompt_tokens=8, continuation_tokens=6)


def test_qa_knowledge(model, tok):
    items = [QAItem("Where did Holmes live?", "Baker Street"), QAItem("Who was his friend?", "Doctor Watson")]
    result = qa_knowledge(model, tok, items, max_new_tokens=6)
    assert result["n"] == 2 and 0 <= result["value"] <= 1
    assert all("\n" not in d["model_answer"] for d in result["items"])
