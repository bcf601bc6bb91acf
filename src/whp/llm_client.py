"""A small client for OpenAI-compatible chat endpoints (`POST {base_url}/chat/completions`), on urllib.

Used by the LLM judge (whp.evaluate.judges) and the LLM mode of `whp anchors`, against a cloud
API or a local server (vLLM, llama.cpp, Ollama, `transformers serve`). The API key is read from
the environment variable `api_key_env` at each request (no Authorization header when it is
unset, as local servers need none); it is never stored, logged or written anywhere, and is
scrubbed from error messages.

`ask_all` sends many requests, `workers` at a time. A local server on a CPU often answers one
request after another, so the later ones wait in its queue: when a request gets no reply within
the time limit, the client backs off before it gives up: from then on it sends half as many
requests at once and waits twice as long, and asks again. Replies are asked for as a stream
(`"stream": true`, server-sent events; a server that answers with one JSON reply instead is read
as such): the time limit is then on silence, so a server that is writing its reply slowly is
not cut off, and a request given up is dropped by servers that stop generating when the client
goes (`transformers serve` does) instead of working on it behind the retry. Network errors, HTTP 429/5xx and
replies that the caller's parser rejects are retried too (a rejected reply is asked again at
temperature `RETRY_TEMPERATURE` from then on, since a deterministic server would repeat it). After
`max_retries` retries, or at once for other HTTP errors, the request fails with an `LLMError`
that says what happened: refused connection, time-out (with the time waited and the setting to
raise), the HTTP status with the server's own message, or the reply that did not parse. A failure
of the endpoint itself (refused, unreachable, time-out, 401/403/404/429, a reply that is no chat
completion) stops the requests not yet sent; a failure of one request (a reply that does not
parse, another HTTP error) leaves the others going.

With `keep_replies`, every accepted reply is kept in this machine's cache (`reply_cache_dir()`),
keyed by the endpoint and the request, and reused when the same request is made again: work
received before a failure is not asked for twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Sequence, TypeVar

from whp.errors import WhpError

log = logging.getLogger("whp")

T = TypeVar("T")

RETRY_TEMPERATURE = 0.7  # a reply the parser rejected is asked again at this temperature
ENDPOINT_WIDE_HTTP = {401, 403, 404, 429}  # statuses that every request would get alike


class LLMError(WhpError):
    """The endpoint failed for good (after retries where a retry could help). `endpoint_wide`:
    the endpoint itself failed (every request would), not this one request."""

    def __init__(self, problem: str, path: str | None = None, endpoint_wide: bool = False):
        super().__init__(problem, path)
        self.endpoint_wide = endpoint_wide


class _NotSent(LLMError):
    """The endpoint failed for good before this request was sent."""


class _Retry(Exception):
    """A failure worth another try (network, 5xx, 429, a reply that is no chat completion)."""

    def __init__(self, problem: str, endpoint_wide: bool = True):
        super().__init__(problem)
        self.problem, self.endpoint_wide = problem, endpoint_wide


class _TimedOut(Exception):
    """No reply within the time limit."""


@dataclass
class _Failure:
    """Why one try got no reply, or none worth keeping."""

    problem: str
    endpoint_wide: bool = False  # every request would fail alike
    waited: float = 0.0  # > 0: no reply within this many seconds


def reply_cache_dir() -> Path:
    """Where accepted replies are kept on this machine (WHP_CACHE/llm_replies)."""
    from whp.models import cache_dir

    return cache_dir() / "llm_replies"


def server_message(raw: bytes) -> str:
    """The message of an error reply: OpenAI's `error.message`, FastAPI's `detail`, or the text."""
    text = raw[:4000].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = next((data[k] for k in ("error", "detail", "message") if data.get(k)), None)
        if isinstance(message, dict):
            message = message.get("message") or json.dumps(message)
        if message is not None:
            text = message if isinstance(message, str) else json.dumps(message)
    return " ".join(text.split())[:300] or "(no message)"


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def _timeout_reason(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or isinstance(getattr(exc, "reason", None), ConnectionRefusedError)


class _Gate:
    """At most `limit` requests in flight; the limit can only shrink."""

    def __init__(self, limit: int):
        self.limit, self.busy, self.cond = max(1, limit), 0, threading.Condition()

    def __enter__(self) -> int:
        with self.cond:
            self.cond.wait_for(lambda: self.busy < self.limit)
            self.busy += 1
            return self.limit

    def __exit__(self, *exc) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def narrow(self, limit: int) -> None:
        with self.cond:
            self.limit = max(1, min(self.limit, limit))


@dataclass
class Answers(Generic[T]):
    """The outcome of `ask_all`, in request order."""

    values: list  # parsed replies; None where a request failed or was not sent
    problems: dict[int, str]  # request index -> why it failed (requests that were sent)
    stopped: LLMError | None  # the endpoint failure that stopped the requests not yet sent
    reused: int  # replies taken from the cache

    def problem(self, index: int) -> str:
        """Why request `index` got no value."""
        if index in self.problems:
            return self.problems[index]
        return f"not sent: {self.stopped.problem}" if self.stopped else "not sent"


class ChatClient:
    """One endpoint and model; `timeout` (seconds for a reply, doubled after each time-out),
    `workers` (requests at once, halved after each time-out), `max_tokens` (reply length limit).
    `role` names the endpoint in messages ("judge", "anchor LLM"); `setting_prefix` is how the
    caller's settings are named ("llm_" gives llm_timeout, llm_workers), for the advice in them."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60,
                 max_retries: int = 2, retry_wait: float = 1.0, max_tokens: int = 300, role: str = "LLM",
                 workers: int = 1, setting_prefix: str = "llm.", keep_replies: bool = False):
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key_env, self.timeout = model, api_key_env, timeout
        self.max_retries, self.retry_wait, self.max_tokens = max_retries, retry_wait, max_tokens
        self.role, self.workers, self.setting_prefix, self.keep_replies = role, max(1, workers), setting_prefix, keep_replies
        self.wait = timeout  # the time limit now: grows after time-outs
        self.gate = _Gate(self.workers)
        self.stopped: LLMError | None = None
        self.lock = threading.Lock()
        self.reused = 0  # replies taken from the cache

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # ---- one request ---------------------------------------------------------------------------

    def _post(self, body: dict, wait: float) -> str:
        """The reply's text, or _Retry / _TimedOut / LLMError."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps({**body, "stream": True}).encode(),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=wait) as response:
                if response.headers.get_content_type() == "text/event-stream":
                    return self._read_stream(response)
                raw = response.read()
        except urllib.error.HTTPError as exc:
            message = server_message(exc.read())
            if key:
                message = message.replace(key, "***")
            problem = f"{self.role} endpoint answered HTTP {exc.code}: {message}"
            if exc.code == 429 or exc.code >= 500:
                raise _Retry(problem, endpoint_wide=exc.code == 429) from exc
            raise LLMError(problem, self.base_url, endpoint_wide=exc.code in ENDPOINT_WIDE_HTTP) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, time-out, connection reset
            if _timeout_reason(exc):
                raise _TimedOut() from exc
            if _refused(exc):
                raise _Retry(f"{self.role} endpoint refused the connection: is a server listening there?") from exc
            raise _Retry(f"{self.role} endpoint unreachable: {getattr(exc, 'reason', exc)}") from exc
        try:
            return json.loads(raw)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retry(f"{self.role} reply is not a chat completion: {raw[:100]!r}") from exc

    def _read_stream(self, response) -> str:
        """The text of a streamed chat completion: the `choices[0].delta.content` of each
        `data: {...}` event up to `data: [DONE]` or the end."""
        pieces = []
        for line in response:
            data = line.decode("utf-8", "replace").strip().removeprefix("data:").strip()
            if not line.startswith(b"data:") or not data:
                continue
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError as exc:
                raise _Retry(f"{self.role} stream is not a chat completion: {data[:100]!r}") from exc
            if isinstance(event, dict) and event.get("error"):
                raise _Retry(f"{self.role} endpoint stopped with an error: {server_message(data.encode())}", False)
            pieces.append(self._delta_text(event, data))
        return "".join(pieces)

    def _delta_text(self, event, data: str) -> str:
        """The text a streamed event adds (none for an event without choices, like a last usage event)."""
        choices = event.get("choices") if isinstance(event, dict) else None
        if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
            raise _Retry(f"{self.role} stream is not a chat completion: {data[:100]!r}")
        delta = (choices[0].get("delta") or {}) if choices else {}
        return (delta.get("content") or "") if isinstance(delta, dict) else ""

    def _back_off(self, wait: float, limit: int) -> None:
        """After a time-out of a request sent with (wait, limit): half the requests, twice the wait."""
        with self.lock:
            self.wait = max(self.wait, 2 * wait)
            self.gate.narrow(limit // 2)
            log.info("%s endpoint: no reply within %g s; now %d request(s) at a time, waiting up to %g s",
                     self.role, wait, self.gate.limit, self.wait)

    def _check_stopped(self, attempt: int) -> None:
        """Raise the endpoint's failure if there was one: _NotSent before a request's first try."""
        stopped = self.stopped
        if stopped is not None:
            raise _NotSent(stopped.problem, stopped.path, True) if attempt == 0 else stopped

    def _stop(self, error: LLMError) -> LLMError:
        with self.lock:
            if self.stopped is None:
                self.stopped = error
        return error

    def _timeout_problem(self, waits: list[float]) -> str:
        tries = ", ".join(f"{w:g}" for w in waits)
        return (f"{self.role} endpoint timed out: no reply within {waits[-1]:g} s ({_tries(len(waits))}, waiting {tries} s, "
                f"{self.gate.limit} request(s) at a time at the end); a slow server (a local one on a CPU) needs a longer "
                f"wait: raise {self.setting_prefix}timeout (now {self.timeout:g}), or lower {self.setting_prefix}max_tokens "
                f"(now {self.max_tokens}) or {self.setting_prefix}workers (now {self.workers})")

    def _send(self, body: dict, attempt: int) -> str | _Failure:
        """One try, within the limit of requests in flight: the reply's text, or why there is none."""
        with self.gate as limit:
            self._check_stopped(attempt)
            wait = self.wait
            try:
                return self._post(body, wait)
            except _Retry as exc:
                log.debug("%s try %d failed: %s", self.role, attempt + 1, exc.problem)
                return _Failure(exc.problem, exc.endpoint_wide)
            except _TimedOut:
                pass
            except LLMError as exc:
                raise self._stop(exc) if exc.endpoint_wide else exc
        self._back_off(wait, limit)  # outside the gate: the narrower limit lets no one else in meanwhile
        return _Failure("", endpoint_wide=True, waited=wait)

    def _give_up(self, failure: _Failure, waits: list[float]) -> LLMError:
        """The error after the last try; an endpoint-wide one also stops the requests not yet sent."""
        if failure.waited:
            error = LLMError(self._timeout_problem(waits), self.base_url, endpoint_wide=True)
        else:
            error = LLMError(f"{failure.problem} (after {_tries(self.max_retries + 1)})", self.base_url, failure.endpoint_wide)
        return self._stop(error) if error.endpoint_wide else error

    def ask(self, messages: list[dict], parse: Callable[[str], T | None], expected: str) -> T:
        """`parse(reply)` of the first reply it accepts (not None); `expected` names what a good
        reply has, for the error message. A request on its own: an earlier failure of the
        endpoint does not stop it (the wait and the requests at once learnt so far still hold)."""
        self.stopped = None
        return self._ask(messages, parse, expected)

    def _ask(self, messages: list[dict], parse: Callable[[str], T | None], expected: str) -> T:
        """`ask` within a batch: stops when the endpoint has failed for good."""
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        kept = self._kept_reply(body, parse)
        if kept is not None:
            return kept
        failure, waits, rejected = _Failure("no try"), [], False
        for attempt in range(self.max_retries + 1):
            self._check_stopped(attempt)
            if attempt:
                time.sleep(self.retry_wait * attempt)
            outcome = self._send({**body, "temperature": RETRY_TEMPERATURE} if rejected else body, attempt)
            if isinstance(outcome, _Failure):
                failure = outcome
                waits += [outcome.waited] if outcome.waited else []
                continue
            parsed = parse(outcome)
            if parsed is not None:
                self._keep_reply(body, outcome)
                return parsed
            rejected = True
            failure = _Failure(f"{self.role} reply has no {expected}: {' '.join(outcome.split())[-80:]!r}")
        raise self._give_up(failure, waits)

    # ---- many requests -------------------------------------------------------------------------

    def ask_all(self, conversations: Sequence[list[dict]], parse: Callable[[str], T | None], expected: str) -> Answers[T]:
        """`ask` for each conversation, `workers` at a time (fewer after time-outs), in order.
        Never raises LLMError: failures are in the answers."""
        self.stopped = None  # a new batch: an earlier one's endpoint failure is not this one's
        values: list = [None] * len(conversations)
        problems: dict[int, str] = {}
        reused_before = self.reused
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self._ask, c, parse, expected) for c in conversations]
            for index, future in enumerate(futures):
                try:
                    values[index] = future.result()
                except _NotSent:
                    pass
                except LLMError as exc:
                    problems[index] = exc.problem
        answered = sum(v is not None for v in values)
        reused = self.reused - reused_before
        log.info("%s: %d of %d replies usable (%d kept from an earlier run) in %.0f s", self.role, answered,
                 len(conversations), reused, time.perf_counter() - started)
        return Answers(values, problems, self.stopped, reused)

    # ---- replies kept on this machine ----------------------------------------------------------

    def _reply_path(self, body: dict) -> Path:
        key = hashlib.sha256(json.dumps({"url": self.base_url, "body": body}, sort_keys=True).encode()).hexdigest()
        return reply_cache_dir() / key[:2] / f"{key}.json"

    def _kept_reply(self, body: dict, parse: Callable[[str], T | None]) -> T | None:
        if not self.keep_replies:
            return None
        path = self._reply_path(body)
        if not path.is_file():
            return None
        try:
            parsed = parse(json.loads(path.read_text())["reply"])
        except (ValueError, KeyError, TypeError, OSError):
            return None
        if parsed is not None:
            with self.lock:
                self.reused += 1
        return parsed

    def _keep_reply(self, body: dict, reply: str) -> None:
        if self.keep_replies:
            from whp.files import write_json

            write_json(self._reply_path(body), {"model": self.model, "reply": reply})
