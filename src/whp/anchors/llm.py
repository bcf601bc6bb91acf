"""LLM mode of `whp anchors`: a chat model drafts anchors and generic alternatives from passages.

As the authors did with GPT-4: the target is cut into passages; for each, the model is asked
for the idiosyncratic expressions of the text (names, places, objects, invented words,
catch-phrases) and a generic but coherent replacement for each, as a JSON object; the answers
of all passages are merged (duplicate keys keep every alternative). Passages go out
`workers` at a time (fewer, with a longer wait, after a time-out: whp.llm_client). A key that
does not occur in its passage (invented by the model) or an alternative equal to its key is
dropped. A passage whose answers stay unusable after the client's retries is reported and
skipped: the others are kept. When the endpoint itself fails (refused, time-out after backing
off), the passages not yet sent are skipped too. Answers received are kept on this machine and
reused by a re-run with the same settings.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from whp.errors import warn
from whp.llm_client import ChatClient

log = logging.getLogger("whp")

SYSTEM_PROMPT = """\
You help make a language model forget a body of text. In the passage you are given, find the \
idiosyncratic expressions that are unique to this text: names of people, places, \
organisations, objects, invented words and catch-phrases (not ordinary words). For each, give \
a generic alternative that a reader would not connect to this text but that fits the same \
sentence just as well: a person's name by another ordinary name of the same gender, a place by \
an ordinary place name, an object by an ordinary object. Reply with a JSON object only, mapping \
each expression exactly as written in the passage to a list of one or two alternatives, e.g. \
{"Hogwarts": ["Mystic Academy"], "Harry": ["Jon"], "Quidditch": ["Skyball"]}."""


@dataclass
class LLMConfig:
    """Settings of the optional LLM mode (`--llm-url`, `--llm-model`)."""

    url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"})
    model: str | None = field(default=None, metadata={"help": "model name at that endpoint"})
    key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the API key (never stored)"})
    passages: int = field(default=40, metadata={"help": "passages sent, evenly spread over the target"})
    passage_words: int = field(default=400, metadata={"help": "words per passage"})
    workers: int = field(default=4, metadata={"help": "requests in flight at once (halved after a time-out); 1 suits a local server on a CPU"})
    timeout: float = field(default=60.0, metadata={"help": "seconds to wait for one reply (for its next words: replies are streamed); after a time-out the wait doubles and fewer requests go at once, before a passage is given up"})
    max_retries: int = field(default=2, metadata={"help": "retries of a failed or unusable reply"})
    max_tokens: int = field(default=800, metadata={"help": "reply length limit (a passage's expressions as JSON)"})

    def __post_init__(self) -> None:
        if bool(self.url) != bool(self.model):
            raise ValueError("give both llm url and llm model, or neither")
        if self.passages < 1 or self.passage_words < 20 or self.workers < 1 or self.max_tokens < 1 or self.timeout <= 0:
            raise ValueError("passages, workers, max_tokens must be >= 1, passage_words >= 20 and timeout > 0")


def passages(text: str, n: int, words_per_passage: int) -> list[str]:
    """Up to `n` passages of about `words_per_passage` words, evenly spread over `text`."""
    words = text.split()
    starts = list(range(0, len(words), words_per_passage))
    if len(starts) > n:
        step = len(starts) / n
        starts = [starts[int(k * step)] for k in range(n)]
    return [" ".join(words[s : s + words_per_passage]) for s in starts]


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_reply(reply: str) -> dict[str, list[str]] | None:
    """The JSON object of `reply` (code fences and text around it allowed) as key → alternatives;
    None when there is no object of strings or lists of strings."""
    match = _OBJECT.search(reply)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    parsed: dict[str, list[str]] = {}
    for key, value in data.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
        parsed[key.strip()] = [v.strip() for v in values if v.strip()]
    return parsed


def keep_grounded(drafted: dict[str, list[str]], passage: str) -> list[tuple[str, list[str]]]:
    """Entries whose key occurs in the passage as whole words, alternatives other than the key."""
    kept = []
    for key, alternatives in drafted.items():
        if not key or not re.search(r"(?<!\w)" + re.escape(key) + r"(?!\w)", passage):
            continue
        alternatives = [a for a in alternatives if a != key]
        if alternatives:
            kept.append((key, alternatives))
    return kept


@dataclass
class Drafts:
    entries: list[tuple[str, list[str]]]  # merged later by the dictionary cleaner
    answered: int
    failed: list[str]  # one problem per failed passage


def draft(text: str, cfg: LLMConfig) -> Drafts:
    """Ask the endpoint about each passage; keep every usable answer, report the failures."""
    client = ChatClient(cfg.url, cfg.model, cfg.key_env, cfg.timeout, cfg.max_retries, max_tokens=cfg.max_tokens,
                        role="anchor LLM", workers=cfg.workers, setting_prefix="llm.", keep_replies=True)
    chosen = passages(text, cfg.passages, cfg.passage_words)
    conversations = [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p}] for p in chosen]
    answers = client.ask_all(conversations, parse_reply, "JSON object of expressions and alternatives")
    entries, failed = [], []
    for index, (passage, drafted) in enumerate(zip(chosen, answers.values)):
        if drafted is None:
            failed.append(f"passage {index + 1}: {answers.problem(index)}")
        else:
            entries.extend(keep_grounded(drafted, passage))
    if failed:
        warn(f"anchor LLM: {len(failed)} of {len(chosen)} passages failed and were skipped; first: {failed[0]}")
    answered = len(chosen) - len(failed)
    log.info("anchor LLM: %d passages answered, %d entries drafted", answered, len(entries))
    return Drafts(entries, answered, failed)
