"""Memorisation and knowledge of the target, as MUSE measures them (Shi et al. 2024):
verbatim continuation of target passages, and answers to questions about the target,
both scored by ROUGE-L (implemented here, no dependency)."""

from __future__ import annotations

import random
import re
from typing import Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp import batches
from whp.corpus import read_text
from whp.errors import WhpError
from whp.evaluate.prompts import QAItem, load_qa


def words(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters, digits and underscores); punctuation dropped."""
    return re.findall(r"\w+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, O(len(a)·len(b)) time, O(len(b)) memory."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_scores(candidate: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of ROUGE-L over lower-cased words; all 0 when either side has no words."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0, 0.0, 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return precision, recall, 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure in [0, 1]: 1 = same words in the same order, 0 = no word in common."""
    return rouge_l_scores(candidate, reference)[2]


def rouge_l_recall(candidate: str, reference: str) -> float:
    """Share of the reference's words that the candidate reproduces in order, in [0, 1]."""
    return rouge_l_scores(candidate, reference)[1]


def passage_windows(n_tokens: int, window: int, n_passages: int, seed: int) -> list[int]:
    """Start offsets of up to `n_passages` non-overlapping windows, drawn (seeded) from the
    consecutive slots [0, window), [window, 2·window), ... and returned in text order."""
    slots = list(range(0, n_tokens - window + 1, window))
    if len(slots) > n_passages:
        slots = sorted(random.Random(seed).sample(slots, n_passages))
    return slots


def verbatim_memorisation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    n_passages: int = 50,
    prompt_tokens: int = 64,
    continuation_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
) -> dict:
    """Give the model `prompt_tokens` tokens of a target passage, let it continue greedily for
    `continuation_tokens` tokens, and compare with the true continuation. value = mean ROUGE-L
    F1 in [0, 1]; higher = more verbatim memorisation (MUSE's VerbMem, which uses F1 too)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    window = prompt_tokens + continuation_tokens
    starts = passage_windows(len(ids), window, n_passages, seed)
    if not starts:
        raise WhpError(f"text is too short for verbatim memorisation ({len(ids)} tokens, need {window})")
    prompts = [ids[s : s + prompt_tokens] for s in starts]  # each (prompt_tokens,)
    truths = [ids[s + prompt_tokens : s + window] for s in starts]  # each (continuation_tokens,)
    new, stats = batches.generate_ids(model, tokenizer, prompts, continuation_tokens, batch_size)
    details = []
    for start, prompt, truth, generated in zip(starts, prompts, truths, new):
        truth_text, generated_text = batches.decode(tokenizer, truth), batches.decode(tokenizer, generated)
        details.append({
            "token_offset": start,
            "prompt": batches.decode(tokenizer, prompt),
            "truth": truth_text,
            "generated": generated_text,
            "rouge_l": rouge_l(generated_text, truth_text),
        })
    value = sum(d["rouge_l"] for d in details) / len(details)
    return {"value": value, "n": len(details), "tokens_per_second": stats.tokens_per_second, "passages": details}


QA_TEMPLATE = "Question: {question}\nAnswer:"
# Two general-knowledge examples in the same format, so that base and chat models alike answer
# briefly on the answer line (as MUSE's KnowMem prompts with in-context examples).
QA_FEW_SHOT = (
    "Question: What is the capital of France?\nAnswer: Paris\n\n"
    "Question: Who wrote Romeo and Juliet?\nAnswer: William Shakespeare\n\n"
)


def qa_knowledge(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[QAItem],
    max_new_tokens: int = 24,
    batch_size: int = 16,
    few_shot: bool = True,
) -> dict:
    """Ask each question ("Question: ...\\nAnswer:", after `QA_FEW_SHOT` unless `few_shot` is
    off), take the greedy answer up to its first line break, and score ROUGE-L recall of the
    true answer in it. value = mean recall in [0, 1]; higher = the model still knows the target
    (MUSE's KnowMem uses recall as well). Every shared word counts, so write answers without
    filler ("Baker Street", not "at Baker Street")."""
    if not items:
        raise WhpError("no questions")
    prefix = QA_FEW_SHOT if few_shot else ""
    rows = batches.encode(tokenizer, [prefix + QA_TEMPLATE.format(question=i.question) for i in items])
    new, _ = batches.generate_ids(model, tokenizer, rows, max_new_tokens, batch_size)
    details = []
    for item, ids in zip(items, new):
        answer = batches.decode(tokenizer, ids).strip().split("\n")[0].strip()
        details.append({
            "question": item.question,
            "answer": item.answer,
            "model_answer": answer,
            "rouge_l_recall": rouge_l_recall(answer, item.answer),
        })
    value = sum(d["rouge_l_recall"] for d in details) / len(details)
    return {"value": value, "n": len(details), "items": details}


# ---- as metrics of whp eval (whp.evaluate.metrics) -----------------------------------------------


def measure_verbatim(model, tokenizer, cfg, path: str) -> dict:
    return verbatim_memorisation(model, tokenizer, read_text(cfg.target_text), seed=cfg.seed, batch_size=cfg.batch_size)


def measure_qa(model, tokenizer, cfg, path: str) -> dict:
    if not cfg.qa:
        raise WhpError("no QA file given (--qa)")
    return qa_knowledge(model, tokenizer, load_qa(cfg.qa), batch_size=cfg.batch_size)
