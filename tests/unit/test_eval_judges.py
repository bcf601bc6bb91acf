import json

import pytest
from helpers_http import closed_port_url, server_factory  # noqa: F401 (fixture)

from whp.errors import WhpError
from whp.evaluate.judges import (
    GradeItem,
    JudgeError,
    LLMJudge,
    ReferenceJudge,
    mentions,
    parse_grade,
)

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
    assert parse_grade("It names Watson.\nGRADE: 3") == (3, "It names Watson.")
    assert parse_grade("fine\n**Grade: 2**\n") == (2, "fine")
    assert parse_grade("GRADE: 3\nbut then more text") is None
    assert parse_grade("GRADE: 7") is None
    assert parse_grade("") is None


# ---- LLM judge against a fake OpenAI-compatible server -------------------------------------


def judge_for(url, **kw):
    return LLMJudge(url, "judge-model", api_key_env="WHP_TEST_JUDGE_KEY", retry_wait=0, timeout=5, **kw)


def test_request_body_header_and_parsing(server_factory, monkeypatch):
    monkeypatch.setenv("WHP_TEST_JUDGE_KEY", "sk-secret")
    server = server_factory([(200, "It names Baker Street, unique to the stories.\nGRADE: 3")])
    judge = judge_for(server.url, subject="the Sherlock Holmes stories")
    assert judge.grade("He lived at", "221B Baker Street", ["Baker Street"]) == (
        3,
        "It names Baker Street, unique to the stories.",
    )
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-secret"
    body = request["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system" and "GRADE: n" in system["content"]
    assert "the Sherlock Holmes stories" in system["content"] and "lucky guess" in system["content"]
    assert "He lived at" in user["content"] and "221B Baker Street" in user["content"]
    assert "sk-secret" not in repr(judge) and "sk-secret" not in json.dumps(
        {**vars(judge), "client": {k: v for k, v in vars(judge.client).items() if isinstance(v, (str, int, float))}})


def test_no_key_no_header(server_factory, monkeypatch):
    monkeypatch.delenv("WHP_TEST_JUDGE_KEY", raising=False)
    server = server_factory([(200, "GRADE: 1")])
    assert judge_for(server.url).grade("p", "c", [])[0] == 1
    assert "Authorization" not in server.requests[0]["headers"]


def test_retries_bad_replies_then_succeeds(server_factory):
    server = server_factory([(200, "I think it is a 3."), (500, "RAW:oops"), (200, "RAW:not json"), (200, "ok\nGRADE: 2")])
    assert judge_for(server.url, max_retries=3).grade("p", "c", ["x"]) == (2, "ok")
    assert len(server.requests) == 4


def test_gives_up_after_retries(server_factory):
    server = server_factory([(200, "no grade")] * 3)
    with pytest.raises(JudgeError, match="no last line 'GRADE: n'.*after 3 tries"):
        judge_for(server.url, max_retries=2).grade("p", "c", ["x"])
    assert len(server.requests) == 3


def test_client_error_is_not_retried_and_key_is_scrubbed(server_factory, monkeypatch):
    monkeypatch.setenv("WHP_TEST_JUDGE_KEY", "sk-secret")
    server = server_factory([(401, 'RAW:{"error": "bad key sk-secret"}')])
    with pytest.raises(JudgeError) as info:
        judge_for(server.url).grade("p", "c", ["x"])
    assert "HTTP 401" in str(info.value) and "sk-secret" not in str(info.value)
    assert len(server.requests) == 1


def test_grade_many_keeps_order(server_factory):
    server = server_factory([])  # every reply "GRADE: 0"
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(6)]
    assert [g for g, _ in judge_for(server.url, workers=3).grade_many(items)] == [0] * 6
    assert sorted(r["body"]["messages"][1]["content"].split()[1] for r in server.requests) == [f"p{i}" for i in range(6)]


def test_unreachable_endpoint():
    url = closed_port_url()
    with pytest.raises(WhpError) as info:
        judge_for(url, max_retries=1).grade("p", "c", ["x"])
    assert info.value.problem == "judge endpoint refused the connection: is a server listening there? (after 2 tries)"
    assert info.value.path == url


def test_partial_results_survive_a_failure(server_factory):
    server = server_factory([(200, "GRADE: 3"), (200, "GRADE: 2")] + [(400, "RAW:{}")] * 10)
    items = [GradeItem(f"p{i}", "c", ["x"]) for i in range(5)]
    with pytest.raises(JudgeError) as info:
        judge_for(server.url, workers=1).grade_many(items)
    assert info.value.graded[:2] == [(3, ""), (2, "")]
    assert info.value.graded[2:] == [None, None, None]
