"""A small client for OpenAI-compatible chat endpoints (`POST {base_url}/chat/completions`), on urllib.

Used by the LLM judge (whp.evaluate.judges) and the LLM mode of `whp anchors`. The API key is
read from the environment variable `api_key_env` at each request (no Authorization header when
it is unset, as local servers need none); it is never stored, logged or written anywhere, and
is scrubbed from error messages. Network errors, time-outs, HTTP 429/5xx and replies that the
caller's parser rejects are retried `max_retries` times; then, or at once for other HTTP
errors, an `LLMError` naming the endpoint is raised.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Callable, TypeVar

from whp.errors import WhpError

log = logging.getLogger("whp")

T = TypeVar("T")


class LLMError(WhpError):
    """The endpoint failed for good (after retries where a retry could help)."""


class _Retry(Exception):
    """A failure worth another try (network, time-out, 5xx, 429, unusable reply)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


class ChatClient:
    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30,
                 max_retries: int = 2, retry_wait: float = 1.0, max_tokens: int = 300, role: str = "LLM"):
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key_env, self.timeout = model, api_key_env, timeout
        self.max_retries, self.retry_wait, self.max_tokens = max_retries, retry_wait, max_tokens
        self.role = role  # how messages name the endpoint: "judge", "anchor LLM"

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _post(self, body: dict) -> str:
        """The reply's text, or _Retry / LLMError."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            if key:
                detail = detail.replace(key, "***")
            problem = f"{self.role} endpoint answered HTTP {exc.code}: {' '.join(detail.split())}"
            if exc.code == 429 or exc.code >= 500:
                raise _Retry(problem) from exc
            raise LLMError(problem, self.base_url) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, time-out
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"{self.role} endpoint unreachable: {reason}") from exc
        try:
            return json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retry(f"{self.role} reply is not a chat completion: {raw[:100]!r}") from exc

    def ask(self, messages: list[dict], parse: Callable[[str], T | None], expected: str) -> T:
        """`parse(reply)` of the first reply it accepts (not None); `expected` names what a good
        reply has, for the error message."""
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_wait * attempt)
            try:
                reply = self._post(body)
            except _Retry as exc:
                problem = exc.problem
                log.debug("%s try %d failed: %s", self.role, attempt + 1, problem)
                continue
            parsed = parse(reply)
            if parsed is not None:
                return parsed
            problem = f"{self.role} reply has no {expected}: {' '.join(reply.split())[-80:]!r}"
        raise LLMError(f"{problem} (after {self.max_retries + 1} tries)", self.base_url)
