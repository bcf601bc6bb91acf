"""Judges grade a completion 0-3 for familiarity with the target (Eldan & Russinovich, 2023):

    3  names or details unique to the target
    2  themes typical of the target, with no hint of them in the prompt
    1  a lucky guess: something target-specific that may be chance
    0  no familiarity

`ReferenceJudge` grades offline against reference terms; `LLMJudge` asks a chat model behind an
OpenAI-compatible endpoint. Both have `grade(prompt, completion, references, themes=())` and
`grade_many(items)`. A judge that fails part-way raises `JudgeError`, whose `graded` list keeps
every grade obtained so far (None where an item was not graded), so no work is lost.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union

from whp.errors import WhpError
from whp.llm_client import ChatClient, LLMError

log = logging.getLogger("whp")

Grade = tuple[int, str]  # (grade 0-3, short reason)


@dataclass
class GradeItem:
    prompt: str
    completion: str
    references: Sequence[str]
    themes: Sequence[str] = field(default_factory=tuple)


ItemLike = Union[GradeItem, tuple]


class JudgeError(WhpError):
    """The judge stopped part-way; `graded[i]` is item i's grade, or None if it was not graded."""

    def __init__(self, problem: str, path: str | None = None, graded: list[Grade | None] | None = None):
        super().__init__(problem, path)
        self.graded = graded or []
        self.partial: dict | None = None  # a metric's partial result, set by the metric that caught it


class Judge(Protocol):
    def grade(self, prompt: str, completion: str, references: Sequence[str], themes: Sequence[str] = ()) -> Grade: ...

    def grade_many(self, items: Sequence[ItemLike]) -> list[Grade]: ...


def _item(item: ItemLike) -> GradeItem:
    return item if isinstance(item, GradeItem) else GradeItem(*item)


def mentions(text: str, term: str) -> bool:
    """Whether `term` occurs in `text` as whole words, case-insensitive, any whitespace between words."""
    words = term.split()
    if not words:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


@dataclass
class ReferenceJudge:
    """Offline judge. The rule, for a completion of a prompt:

    - grade 3 if the completion mentions a reference term (names/details unique to the target)
      that the prompt does not already contain;
    - else grade 2 if it mentions a theme term (the item's own `themes`, or this judge's
      `themes`) that the prompt does not already contain;
    - else grade 0.

    "Mentions" means whole words, case-insensitive (`mentions`). Grade 1, a lucky guess, needs
    judgement and is never given offline. A completion that repeats a name from the prompt
    earns nothing for it. The rule misses paraphrases ("the great detective" for Holmes) and
    counts a reference even when it is used in an unrelated sense, so treat its score as a
    cheap proxy for the LLM judge, best compared between models graded the same way.
    """

    themes: Sequence[str] = ()

    def grade(self, prompt: str, completion: str, references: Sequence[str], themes: Sequence[str] = ()) -> Grade:
        found = [r for r in references if mentions(completion, r) and not mentions(prompt, r)]
        if found:
            return 3, "names " + ", ".join(found)
        themes = list(themes) + [t for t in self.themes if t not in themes]
        found = [t for t in themes if mentions(completion, t) and not mentions(prompt, t)]
        if found:
            return 2, "theme " + ", ".join(found)
        return 0, "no reference or theme term"

    def grade_many(self, items: Sequence[ItemLike]) -> list[Grade]:
        return [self.grade(i.prompt, i.completion, i.references, i.themes) for i in map(_item, items)]


SYSTEM_PROMPT = """\
You grade how familiar a language model is with {subject}. The model was given the start of a \
passage (the prompt) and wrote a continuation (the completion). Grade the completion only for \
knowledge of {subject} that it shows beyond what the prompt already says:

3 - the completion names characters, places, objects or other details unique to {subject}.
2 - the completion follows themes typical of {subject} that the prompt gives no hint of, but \
names nothing unique to it.
1 - the completion contains something that fits {subject}, but it may well be a lucky guess.
0 - no familiarity: the completion is generic, or whatever fits {subject} is already in the prompt.

Reply with the line "GRADE: n" first, n one of 0, 1, 2, 3, then one sentence saying why."""

USER_PROMPT = """\
Prompt:
{prompt}

Completion:
{completion}
{hints}"""

HINTS = "\nFor reference (not a checklist), terms typical of {subject}: {terms}\n"

# Two graded examples sent before each item, as earlier turns of the conversation: they show the
# reply's form (a grade line first), which small local models follow from examples far better
# than from the instruction alone. Their terms are made up, so that they hint at no real target.
EXAMPLES = (
    ("The old captain unfolded the map and pointed to", "Skerry Island, where Long Tom had buried the silver.",
     ("Long Tom", "Skerry Island"), "GRADE: 3\nIt names Skerry Island and Long Tom, details unique to {subject}."),
    ("She poured the tea and said that the garden", "was full of roses this year.",
     ("Long Tom", "Skerry Island"), "GRADE: 0\nNothing in the completion is specific to {subject}."),
)

_GRADE_LINE = re.compile(r"^\W*GRADE\W*([0-3])\W*$", re.IGNORECASE)


def parse_grade(reply: str) -> Grade | None:
    """(grade, reason) from a reply with a line `GRADE: n` (the first such line; the reply's
    other lines are the reason, so a reply cut short after its grade line still counts); None
    if it has none."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    for index, line in enumerate(lines):
        match = _GRADE_LINE.search(line)
        if match:
            reason = " ".join(lines[:index] + lines[index + 1 :])
            return int(match.group(1)), reason[:300]
    return None


GRADE_EXPECTED = "line 'GRADE: n'"  # what a usable reply has, for messages


class LLMJudge:
    """A chat model behind an OpenAI-compatible `POST {base_url}/chat/completions` grades each
    completion with the paper's 0-3 rubric (`SYSTEM_PROMPT`), replying with a line `GRADE: n`
    first and one sentence of reason; two graded `EXAMPLES` go before each item.

    Requests go through `whp.llm_client.ChatClient`: `workers` at a time, fewer and with a longer
    wait than `timeout` after a time-out; `max_tokens` limits each reply (a grade line and a
    sentence need a few dozen). The API key is read from the environment variable `api_key_env`
    at each request and never stored, logged or written. Every grade received is kept on this
    machine and reused for the same request (`keep_replies`), so a judge that failed part-way
    asks only for the rest when run again. `setting_prefix` names the caller's settings in advice.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 2,
        subject: str = "the target text",
        workers: int = 4,
        retry_wait: float = 1.0,
        max_tokens: int = 64,
        setting_prefix: str = "llm_",
        keep_replies: bool = False,
    ):
        self.client = ChatClient(base_url, model, api_key_env, timeout, max_retries, retry_wait, max_tokens, role="judge",
                                 workers=workers, setting_prefix=setting_prefix, keep_replies=keep_replies)
        self.base_url, self.model, self.api_key_env = self.client.base_url, model, api_key_env
        self.subject, self.workers = subject, workers

    def __repr__(self) -> str:
        return f"LLMJudge(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _user_turn(self, prompt: str, completion: str, terms: Sequence[str]) -> dict:
        hints = HINTS.format(subject=self.subject, terms=", ".join(terms)) if terms else ""
        return {"role": "user", "content": USER_PROMPT.format(prompt=prompt, completion=completion, hints=hints)}

    def messages(self, prompt: str, completion: str, references: Sequence[str], themes: Sequence[str]) -> list[dict]:
        turns = [{"role": "system", "content": SYSTEM_PROMPT.format(subject=self.subject)}]
        for example_prompt, example_completion, terms, reply in EXAMPLES:
            turns += [self._user_turn(example_prompt, example_completion, terms),
                      {"role": "assistant", "content": reply.format(subject=self.subject)}]
        return [*turns, self._user_turn(prompt, completion, [*references, *themes])]

    def grade(self, prompt: str, completion: str, references: Sequence[str], themes: Sequence[str] = ()) -> Grade:
        try:
            return self.client.ask(self.messages(prompt, completion, references, themes), parse_grade, GRADE_EXPECTED)
        except LLMError as exc:
            raise JudgeError(exc.problem, exc.path) from exc

    def grade_many(self, items: Sequence[ItemLike]) -> list[Grade]:
        """Grades in item order. A reply without a grade leaves its item ungraded and the others
        go on; a failure of the endpoint (refused, time-out after backing off, ...) stops the items
        not yet sent. Either way a JudgeError follows, carrying every grade received."""
        items = [_item(i) for i in items]
        answers = self.client.ask_all([self.messages(i.prompt, i.completion, i.references, i.themes) for i in items],
                                      parse_grade, GRADE_EXPECTED)
        graded: list[Grade | None] = answers.values
        missing = [index for index, grade in enumerate(graded) if grade is None]
        if missing:
            kept = len(items) - len(missing)
            first = (answers.stopped.problem if answers.stopped else answers.problem(missing[0])).rstrip(".")
            kept_note = f"; the {kept} grades received are kept, and a re-run asks only for the rest" if kept else ""
            raise JudgeError(f"{len(missing)} of {len(items)} completions got no grade; first: {first}{kept_note}",
                             self.base_url, graded)
        return graded  # type: ignore[return-value]


def judge_from(cfg) -> Judge:
    """The judge an EvalConfig names: the offline reference judge, or the LLM judge at its endpoint."""
    if cfg.judge == "reference":
        return ReferenceJudge()
    if cfg.judge == "llm":
        if not cfg.llm_url or not cfg.llm_model:
            raise WhpError("the llm judge needs --llm-url and --llm-model")
        if cfg.llm_timeout <= 0 or cfg.llm_workers < 1 or cfg.llm_max_tokens < 1:
            raise WhpError("llm_timeout must be > 0, llm_workers and llm_max_tokens >= 1")
        return LLMJudge(cfg.llm_url, cfg.llm_model, api_key_env=cfg.llm_key_env, timeout=cfg.llm_timeout,
                        workers=cfg.llm_workers, max_tokens=cfg.llm_max_tokens, setting_prefix="llm_", keep_replies=True)
    raise WhpError(f"unknown judge {cfg.judge!r} (reference or llm)")
