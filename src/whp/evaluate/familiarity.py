"""Familiarity with the target, the paper's two measures (Eldan & Russinovich 2023, §2.6 of DESIGN.md).

- `probability_familiarity`: for prompts whose next word gives the target away, the model's
  next-token probability of that word. Higher = more familiar; paper, Llama-2-7b-chat: 0.244
  before unlearning, 0.006 after.
- `completion_familiarity`: a judge grades the model's completions 0-3; score
  (5·#grade-3 + #grade-2) / #prompts, in [0, 5]. Higher = more familiar; paper: 0.290 → 0.007.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp import batches, distributed
from whp.errors import WhpError
from whp.evaluate.judges import GradeItem, Judge, JudgeError
from whp.evaluate.prompts import (
    CompletionPrompt,
    ProbabilityPrompt,
    load_completion_prompts,
    load_probability_prompts,
)


def target_token_ids(tokenizer: PreTrainedTokenizerBase, continuation: str) -> list[int]:
    """First token of the continuation with and without a leading space, as the tokenizer
    produces them (deduplicated). A special token, or one that decodes to whitespace only
    (SentencePiece's lone "▁"), says nothing about the target: the first token with visible
    text is taken instead. Empty when the continuation has no such token."""
    ids = []
    for variant in (continuation.lstrip(), " " + continuation.lstrip()):
        token = first_visible_token(tokenizer, variant)
        if token is not None and token not in ids:
            ids.append(token)
    return ids


def first_visible_token(tokenizer: PreTrainedTokenizerBase, text: str) -> int | None:
    """The first token of `text` that decodes to visible text (None when there is none)."""
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        if tokenizer.decode([token], skip_special_tokens=True).strip():
            return token
    return None


def probability_familiarity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[ProbabilityPrompt],
    batch_size: int = 16,
) -> dict:
    """Mean over prompts of the summed next-token probability of the continuations' first
    tokens (in [0, 1]; higher = more familiar). Per prompt: the probability, the model's top-1
    token, and the best 1-based rank of any target token (1 = the model's first choice)."""
    if not prompts:
        raise WhpError("no probability prompts")
    targets = []
    for p in prompts:
        ids = sorted({t for c in p.continuations for t in target_token_ids(tokenizer, c)})
        if not ids:
            raise WhpError(f"prompt {p.prompt!r}: its continuations tokenize to nothing")
        targets.append(ids)
    rows = batches.encode(tokenizer, [p.prompt for p in prompts])
    device, pad = batches.model_device(model), batches.pad_id(tokenizer)
    mine: dict[int, dict] = {}
    with torch.inference_mode():
        for batch in batches.my_batches(len(rows), batch_size):
            input_ids, mask = batches.left_pad([rows[i] for i in batch], pad, device)  # (B, T)
            logits = batches.forward_logits(model, input_ids, mask)[:, -1]  # (B, V): left padding puts every last token at -1
            probs = logits.softmax(-1)  # (B, V)
            for row, i in enumerate(batch):
                ids = torch.tensor(targets[i], device=device)  # (K,)
                best = logits[row, ids].max()
                mine[i] = {
                    "prompt": prompts[i].prompt,
                    "probability": probs[row, ids].sum().item(),
                    "top1": tokenizer.decode([int(logits[row].argmax())]),
                    "rank": int((logits[row] > best).sum().item()) + 1,
                    "targets": [tokenizer.decode([t]) for t in targets[i]],
                }
    every = distributed.merged(mine)
    details = [every[i] for i in range(len(prompts))]
    value = sum(d["probability"] for d in details) / len(details)
    return {"value": value, "n": len(details), "prompts": details}


class Completions(list):
    """Completions (a list of str) that also carry generation speed for the caller to log."""

    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> Completions:
    """The model's continuation of each prompt, in order (special tokens dropped, cut at EOS).
    Greedy by default; `sample` draws at `temperature`, seeded. The result is a list of str
    with `.new_tokens`, `.seconds` and `.tokens_per_second`."""
    rows = batches.encode(tokenizer, prompts)
    new, stats = batches.generate_ids(model, tokenizer, rows, max_new_tokens, batch_size, sample, temperature, seed)
    out = Completions(batches.decode(tokenizer, ids) for ids in new)
    out.new_tokens, out.seconds = stats.new_tokens, stats.seconds
    return out


def familiarity_score(grades: Sequence[int]) -> float:
    """The paper's completion score: (5·#grade-3 + #grade-2) / #graded, in [0, 5]."""
    if not grades:
        return 0.0
    return (5 * sum(g == 3 for g in grades) + sum(g == 2 for g in grades)) / len(grades)


def _result(prompts: Sequence[CompletionPrompt], completions: Sequence[str], graded: list, speed: dict) -> dict:
    grades = [g[0] for g in graded if g is not None]
    per_prompt = [
        {
            "prompt": p.prompt,
            "completion": c,
            "grade": None if g is None else g[0],
            "reason": None if g is None else g[1],
        }
        for p, c, g in zip(prompts, completions, graded)
    ]
    return {
        "value": familiarity_score(grades),
        "n": len(grades),
        "counts": {str(k): sum(g == k for g in grades) for k in range(4)},
        "prompts": per_prompt,
        **speed,
    }


def completion_familiarity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[CompletionPrompt],
    judge: Judge,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    sample: bool = False,
    seed: int = 0,
    completions: Sequence[str] | None = None,
) -> dict:
    """Generate a completion per prompt and have `judge` grade it 0-3; value = (5·#3 + #2)/N in
    [0, 5], higher = more familiar. Pass `completions` to grade earlier ones again (no
    generation). If the judge fails part-way, the `JudgeError` raised has `.partial`: this
    same result over the prompts graded so far (all completions kept, grade None elsewhere)."""
    if not prompts:
        raise WhpError("no completion prompts")
    speed: dict = {}
    if completions is None:
        completions = generate_completions(
            model, tokenizer, [p.prompt for p in prompts], max_new_tokens, batch_size, sample, seed=seed
        )
        speed = {"new_tokens": completions.new_tokens, "generation_seconds": completions.seconds,
                 "tokens_per_second": completions.tokens_per_second}
    elif len(completions) != len(prompts):
        raise ValueError(f"{len(completions)} completions for {len(prompts)} prompts")
    items = [GradeItem(p.prompt, c, p.references, p.themes) for p, c in zip(prompts, completions)]
    try:
        graded = distributed.on_main(lambda: judge.grade_many(items))  # an LLM judge is asked once, not once per process
    except JudgeError as exc:
        exc.partial = _result(prompts, completions, exc.graded or [None] * len(prompts), speed)
        raise
    return _result(prompts, completions, list(graded), speed)


# ---- as metrics of whp eval (whp.evaluate.metrics) -----------------------------------------------


def probability_under(model, tokenizer, cfg, prompts: Sequence[ProbabilityPrompt]) -> dict:
    """Probability familiarity of `prompts` with the settings of `cfg` (an EvalConfig)."""
    return probability_familiarity(model, tokenizer, prompts, batch_size=cfg.batch_size)


def completion_under(model, tokenizer, cfg, prompts: Sequence[CompletionPrompt]) -> dict:
    """Completion familiarity of `prompts` with the settings of `cfg`, graded by its judge."""
    from whp.evaluate.judges import judge_from

    return completion_familiarity(model, tokenizer, prompts, judge_from(cfg), max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.batch_size, seed=cfg.seed)


def measure_probability(model, tokenizer, cfg, path: str, files: str) -> dict:
    """Probability familiarity over the prompt files of setting `files` of `cfg` (an EvalConfig)."""
    return probability_under(model, tokenizer, cfg, [p for f in getattr(cfg, files) for p in load_probability_prompts(f)])


def measure_completion(model, tokenizer, cfg, path: str, files: str) -> dict:
    """Completion familiarity over the prompt files of setting `files`, graded by cfg's judge."""
    return completion_under(model, tokenizer, cfg, [p for f in getattr(cfg, files) for p in load_completion_prompts(f)])
