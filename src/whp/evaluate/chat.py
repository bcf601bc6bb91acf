"""Chat familiarity: questions on the target asked through the tokenizer's chat template, as a user
of an instruction-tuned model would ask them, answered greedily and graded by the evaluation's
judge; value = the paper's (5·#3 + #2)/N, as completion familiarity computes it. A tokenizer
without a chat template skips the metric."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from whp import batches
from whp.evaluate.familiarity import completion_familiarity
from whp.evaluate.judges import judge_from
from whp.evaluate.prompts import load_chat_questions
from whp.evaluate.robust import skipped


def chat_texts(tokenizer: PreTrainedTokenizerBase, questions: list[str]) -> list[str]:
    """Each question as one user turn through the chat template, ready for the assistant's answer."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions]


def measure(model, tokenizer, cfg, path: str) -> dict:
    """Greedy answers of `cfg.max_new_tokens` tokens to `cfg.chat_questions`, graded by cfg's judge."""
    if tokenizer.chat_template is None:
        return skipped(path, "chat_completion", "the tokenizer has no chat template")
    questions = load_chat_questions(cfg.chat_questions)
    rows = batches.encode(tokenizer, chat_texts(tokenizer, [q.prompt for q in questions]), add_special_tokens=False)
    answers, stats = batches.generate_ids(model, tokenizer, rows, cfg.max_new_tokens, cfg.batch_size)
    result = completion_familiarity(model, tokenizer, questions, judge_from(cfg),
                                    completions=[batches.decode(tokenizer, ids) for ids in answers])
    return {**result, "new_tokens": stats.new_tokens, "generation_seconds": stats.seconds,
            "tokens_per_second": stats.tokens_per_second}
