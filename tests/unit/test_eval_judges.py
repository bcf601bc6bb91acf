import json

import pytest
from helpers_http import closed_port_url, server_factory  # noqa: F401 (fixture)

from whp.errors import WhpError
from whp.evaluate.judges import (
    EXAMPLES,
    GradeItem,
    JudgeError,
    LLMJudge,
    ReferenceJudge,
    mentions,
    judge_from,
    parse_grade,
)
from whp.evaluate.suite import EvalConfig
from whp.llm_client import RETRY_TEMPERATURE

# ---- offline judge --------------------------------------------------------------------------


def test_mentions_whole_words_case_insensitive():
    assert mentions("Holmes's pipe", "holmes")
    assert not mentions("Holmesian", "Holmes")
    assert mentions("at baker\n street", "Baker Street")
    assert not mentions("anything", " ")


def test_reference_judge_rule():
    judge = ReferenceJudge(themes=["violin", "deduce"])
    refs = ["Watson", "Baker Street"]
    assert judge.grade("He turned to", "his friend Watson", refs)[0] == 3
    assert judge.grade("Watson turned to", "his friend Watson", refs)[0] == 0  # already in the prompt
    assert judge.grade("He turned to", "play the violin", refs)[0] == 2
    assert judge.grade("He turned to", "deduce it", refs, themes=["pipe"])[0] == 2
    assert judge.grade("He turned to", "smoke a pipe", refs, themes=["pipe"])[0] == 2
    assert judge.grade("He played the violin", "the violin again", refs)[0] == 0
    assert judge.grade("He turned to", "the weather", refs) == (0, "no reference or theme term")
    items = [("p", "Watson", refs), GradeItem("p", "violin", refs), ("p", "x", refs, ["x"])]
    assert [g for g, _ in judge.grade_many(items)] == [3, 2, 2]


def test_parse_grade():
    assert parse_grade("GRADE: 3\nIt names Watson.") == (3, "It names Watson.")
    assert parse_grade("It names Watson.\nGRADE: 3") == (3, "It names Watson.")  # reasoning first still reads
    assert parse_grade("**Grade: 2**\nfine") == (2, "fine")
    assert parse_grade("GRADE: 1\nThe completion is cut sh") == (1, "The completion is cut sh")  # max_tokens reached
    assert parse_grade("GRADE: 0\nnot GRADE: 3 after all\nGRADE: 3") == (0, "not GRADE: 3 after all GRADE: 3")
    assert parse_grade("I would give it a 3.") is None
    assert parse_grade("GRADE: 7") is None
    assert parse_grade("") is None


# ---- LLM judge against a fake OpenAI-compatible server -------------------------------------


def judge_for(url, **kw):
    return LLMJudge(url, "judge-model", api_key_env="WHP_TEST_JUDGE_KEY", retry_wait=0, timeout=kw.pop("timeout", 5), **kw)


def item_of(request) -> str:
    """The prompt of the item a judge request grades (its last turn)."""
    return request["body"]["messages"][-1]["content"].split()[1]


def test_request_body_header_and_parsing(server_factory, monkeypatch):
    monkeypatch.setenv("WHP_TEST_JUDGE_KEY", "sk-secret")
    server = server_factory([(200, "GRADE: 3\nIt names Baker Street, unique to the stories.")])
    judge = judge_for(server.url, subject="the Sherlock Holmes stories")
    assert judge.grade("He lived at", "221B Baker Street", ["Baker Street"]) == (
        3,
        "It names Baker Street, unique to the stories.",
    )
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-secret"
    body = request["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 64
    system, *examples, user = body["messages"]
    assert system["role"] == "system" and "GRADE: n" in system["content"]
    assert "the Sherlock Holmes stories" in system["content"] and "lucky guess" in system["content"]
    assert [m["role"] for m in examples] == ["user", "assistant"] * len(EXAMPLES)
    assert all(m["content"].startswith("GRADE: ") for m in examples[1::2])
    assert user["role"] == "user" and "He lived at" in user["content"] and "221B Baker Street" in user["content"]
    assert "sk-secret" not in repr(judge) and "sk-secret" not in json.dumps(
        {**vars(judge), "client": {k: v for k, v in vars(judge.client).items() if isinstance(v, (str, int, float))}})


def test_no_key_no_header(server_factory, monkeypatch):
    monkeypatch.delenv("WHP_TEST_JUDGE_KEY", raising=False)
    server = server_factory([(200, "GRADE: 1")])
    assert judge_for(server.url).grade("p", "c", [])[0] == 1
    assert "Authorization" not in server.requests[0]["headers"]


def test_retries_bad_replies_then_succeeds(server_factory):
    server = server_factory([(200, "I think it is a 3."), (500, "RAW:oops"), (200, "RAW:not json"), (200, "GRADE: 2\nok")])
    assert judge_for(server.url, max_retries=3).grade("p", "c", ["x"]) == (2, "ok")
    assert len(server.requests) == 4
    # a deterministic server repeats a reply: after one without a grade, the request is sampled
    assert [r["body"]["temperature"] for r in server.requests] == [0, RETRY_TEMPERATURE, RETRY_TEMPERATURE, RETRY_TEMPERATURE]


def test_gives_up_after_retries(server_factory):
    server = server_factory([(200, "no grade")] * 3)
    with pytest.raises(JudgeError, match="no line 'GRADE: n'.*after 3 tries"):
        judge_for(server.url, max_retries=2).grade("p", "c", ["x"])
    assert len(server.requests) == 3


def test_client_error_is_not_retried_and_key_is_scrubbed(server_factory, monkeypatch):
    monkeypatch.setenv("WHP_TEST_JUDGE_KEY", "sk-secret")
    server = server_factory([(401, 'RAW:{"error": "bad key sk-secret"}')])
    with pytest.raises(JudgeError) as info:
        judge_for(server.url).grade("p", "c", ["x"])
    assert "HTTP 401: bad key ***" in str(info.value) and "sk-secret" not in str(info.value)
    assert len(server.requests) == 1


def test_http_errors_carry_the_servers_message(server_factory):
    openai_style = '{"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error"}}'
    fastapi_style = '{"detail": "Server is pinned to \'/models/smol\'; requested \'smol\'."}'
    server = server_factory([(404, "RAW:" + openai_style), (400, "RAW:" + fastapi_style), (400, "RAW:<h1>Bad</h1>")])
    messages = []
    for _ in range(3):
        with pytest.raises(JudgeError) as info:
            judge_for(server.url).grade("p", "c", [])
        messages.append(info.value.problem)
    assert messages == ["judge endpoint answered HTTP 404: The model `gpt-9` does not exist",
                        "judge endpoint answered HTTP 400: Server is pinned to '/models/smol'; requested 'smol'.",
                        "judge endpoint answered HTTP 400: <h1>Bad</h1>"]


def test_grade_many_keeps_order(server_factory):
    server = server_factory([])  # every reply "GRADE: 0"
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(6)]
    assert [g for g, _ in judge_for(server.url, workers=3).grade_many(items)] == [0] * 6
    assert sorted(item_of(r) for r in server.requests) == [f"p{i}" for i in range(6)]


def test_refused_connection():
    url = closed_port_url()
    with pytest.raises(WhpError) as info:
        judge_for(url, max_retries=1).grade("p", "c", ["x"])
    assert info.value.problem == "judge endpoint refused the connection: is a server listening there? (after 2 tries)"
    assert info.value.path == url
    with pytest.raises(JudgeError) as info:
        judge_for(url, max_retries=0).grade_many([GradeItem("p", "c", ["x"])] * 3)
    assert info.value.problem == ("3 of 3 completions got no grade; first: judge endpoint refused the connection: "
                                  "is a server listening there? (after 1 try)")


def test_partial_results_survive_a_failure(server_factory):
    server = server_factory([(200, "GRADE: 3"), (200, "GRADE: 2")] + [(400, "RAW:{}")] * 10)
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(5)]
    with pytest.raises(JudgeError) as info:
        judge_for(server.url, workers=1).grade_many(items)
    assert info.value.graded[:2] == [(3, ""), (2, "")]
    assert info.value.graded[2:] == [None, None, None]
    assert info.value.problem.startswith("3 of 5 completions got no grade; first: judge endpoint answered HTTP 400")
    assert "the 2 grades received are kept" in info.value.problem


def test_an_endpoint_failure_stops_the_items_not_yet_sent(server_factory):
    server = server_factory([(200, "GRADE: 3"), (403, 'RAW:{"error": {"message": "quota exceeded"}}')])
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(5)]
    with pytest.raises(JudgeError) as info:
        judge_for(server.url, workers=1).grade_many(items)
    assert info.value.graded == [(3, ""), None, None, None, None]
    assert len(server.requests) == 2, "nothing is sent after the endpoint refused the key"
    assert "first: judge endpoint answered HTTP 403: quota exceeded" in info.value.problem
    # the same judge again later: a new batch is sent, not stopped by the last one's failure
    judge = judge_for(server.url, workers=1)
    server.replies[:] = [(403, "RAW:{}")]
    with pytest.raises(JudgeError):
        judge.grade_many(items[:2])
    server.replies[:] = [(200, "GRADE: 2")] * 2
    assert judge.grade_many(items[:2]) == [(2, ""), (2, "")]


def test_a_slow_serial_server_gets_fewer_requests_and_a_longer_wait(server_factory):
    # like a local server on a CPU: one request at a time, 0.3 s each; 4 sent at once, so the
    # later ones wait in its queue past the 0.7 s limit. The client halves the requests in
    # flight and doubles the wait, and every item is graded in the end.
    server = server_factory([], default="GRADE: 1", serial_delay=0.3)
    judge = judge_for(server.url, workers=4, timeout=0.7, max_retries=4)
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(6)]
    assert [g for g, _ in judge.grade_many(items)] == [1] * 6
    assert judge.client.gate.limit < 4 and judge.client.wait >= 1.4
    assert len(server.requests) > 6, "some requests timed out and were sent again"


def test_a_timeout_says_how_long_it_waited_and_what_to_raise(server_factory):
    server = server_factory([("sleep", "2")] * 10)
    judge = judge_for(server.url, workers=1, timeout=0.2, max_retries=1, max_tokens=50)
    with pytest.raises(JudgeError) as info:
        judge.grade_many([GradeItem(f"p{i}", "c", ["x"]) for i in range(3)])
    assert info.value.graded == [None, None, None]
    assert len(server.requests) == 2, "the first item's two tries; the others are not sent"
    problem = info.value.problem
    assert problem.startswith("3 of 3 completions got no grade; first: judge endpoint timed out: no reply within 0.4 s "
                              "(2 tries, waiting 0.2, 0.4 s, 1 request(s) at a time at the end)")
    assert "raise llm_timeout (now 0.2), or lower llm_max_tokens (now 50) or llm_workers (now 1)" in problem


def test_grades_received_are_kept_and_reused(server_factory, private_reply_cache):
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(3)]
    first = server_factory([(200, "GRADE: 3"), (200, "no idea"), (200, "no idea"), (200, "GRADE: 1")])
    with pytest.raises(JudgeError) as info:
        judge_for(first.url, workers=1, max_retries=1, keep_replies=True).grade_many(items)
    assert info.value.graded == [(3, ""), None, (1, "")]
    other = server_factory([], default="GRADE: 2")
    other_judge = judge_for(other.url, workers=1, keep_replies=True)
    assert [g for g, _ in other_judge.grade_many(items)] == [2, 2, 2], "another endpoint: nothing reused"
    first.replies[:] = [(200, "GRADE: 0")]
    rerun = judge_for(first.url, workers=1, keep_replies=True)
    assert [g for g, _ in rerun.grade_many(items)] == [3, 0, 1]
    assert [item_of(r) for r in first.requests[4:]] == ["p1"], "only the ungraded item is asked again"
    assert rerun.client.reused == 2 and any(private_reply_cache.rglob("*.json"))


def test_judge_from_eval_config():
    cfg = EvalConfig(judge="llm", llm_url="http://127.0.0.1:1/v1", llm_model="m", llm_timeout=5, llm_workers=1,
                     llm_max_tokens=20)
    judge = judge_from(cfg)
    assert (judge.client.timeout, judge.client.workers, judge.client.max_tokens) == (5, 1, 20)
    assert judge.client.keep_replies and judge.client.setting_prefix == "llm_"
    with pytest.raises(WhpError, match="llm_workers"):
        judge_from(EvalConfig(judge="llm", llm_url="http://x/v1", llm_model="m", llm_workers=0))


# ---- streamed replies (server-sent events) -------------------------------------------------------


def test_replies_are_asked_for_as_a_stream(server_factory):
    server = server_factory([(200, "SSE:GRADE: 2\nA theme of the stories.")])
    assert judge_for(server.url).grade("p", "c", []) == (2, "A theme of the stories.")
    assert server.requests[0]["body"]["stream"] is True


def test_a_slow_steady_stream_is_not_cut_off(server_factory):
    # 12 words 0.1 s apart: longer than the 0.5 s limit in all, but never silent for that long
    server = server_factory([(200, "SSE:GRADE: 1\nit is slow but it keeps writing a word at a time")])
    server.stream_delay = 0.1
    assert judge_for(server.url, timeout=0.5, max_retries=0).grade("p", "c", [])[0] == 1


def test_a_silent_stream_times_out(server_factory):
    server = server_factory([(200, "SSE:GRADE: 1\nlate")] * 2)
    server.stream_delay = 1.5
    with pytest.raises(JudgeError, match="timed out: no reply within 0.6 s"):
        judge_for(server.url, timeout=0.3, max_retries=1).grade("p", "c", [])


def test_an_error_event_in_the_stream(server_factory):
    server = server_factory([(200, "SSE:ERROR:CUDA out of memory")] * 2)
    with pytest.raises(JudgeError) as info:
        judge_for(server.url, max_retries=1).grade("p", "c", [])
    assert info.value.problem == "judge endpoint stopped with an error: CUDA out of memory (after 2 tries)"
