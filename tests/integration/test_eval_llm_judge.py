"""`whp eval --judge llm` against a fake OpenAI-compatible server: settings reach the requests,
a judge that fails part-way keeps its grades, and a re-run asks only for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_http import server_factory  # noqa: F401 (fixture)
from helpers_tiny import save_tiny_model

from whp.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("judged") / "base"
    save_tiny_model(folder)
    return folder


def test_llm_judge_keeps_grades_and_a_rerun_asks_only_for_the_rest(model, tmp_path, server_factory, capsys):
    prompts = tmp_path / "completion.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "references": ["Watson"]}) + "\n"
                               for p in ("The detective took his", "Holmes turned to", "The fog lay")))
    server = server_factory([(200, "GRADE: 3\nIt names Watson."), (200, "nope"), (200, "nope"), (200, "nope"),
                             (200, "GRADE: 0\nNothing specific.")])
    out = tmp_path / "out"
    args = ["-q", "eval", "--model", str(model), "--out", str(out), "--prompts", str(prompts),
            "--metrics", "familiarity_completion", "--judge", "llm", "--llm-url", server.url, "--llm-model", "judge",
            "--set", "max_new_tokens=4", "--set", "llm_workers=1", "--set", "llm_max_tokens=20", "--set", "llm_timeout=10"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (f"{server.url}: 1 of 3 completions got no grade; first: judge reply has no line 'GRADE: n': 'nope' "
            "(after 3 tries); the 2 grades received are kept, and a re-run asks only for the rest") in err
    partial = json.loads((out / "base" / "familiarity_completion.partial.json").read_text())
    assert [p["grade"] for p in partial["prompts"]] == [3, None, 0]
    assert not (out / "base" / "familiarity_completion.json").exists()

    server.replies[:] = [(200, "GRADE: 2\nA theme of the stories.")]
    assert main(args) == 0
    record = json.loads((out / "base" / "familiarity_completion.json").read_text())
    assert [p["grade"] for p in record["prompts"]] == [3, 2, 0]
    assert record["value"] == pytest.approx((5 + 1) / 3)
    assert len(server.requests) == 6, "the re-run sent one request: the item without a grade"
    assert server.requests[-1]["body"]["messages"][-1]["content"].startswith("Prompt:\nHolmes turned to")
    assert {r["body"]["max_tokens"] for r in server.requests} == {20}
