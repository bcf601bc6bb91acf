"""`whp anchors` and extraction inside `whp unlearn`, on a tiny random Llama built in the test;
the LLM mode against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers_http import closed_port_url, server_factory  # noqa: F401 (fixture)
from helpers_tiny import TRAINING_TEXT, save_tiny_model

from whp.anchors.dictionary import load_dictionary
from whp.anchors.extract import ExtractConfig, extract
from whp.anchors.llm import LLMConfig, draft
from whp.cli import main

REFERENCE = "The weather in London was grey, and the fog lay thick over the river. " * 30
FAST = ["--set", "reinforce_tokens=256", "--set", "reinforce.lr=3e-3", "--dtype", "float32",
        "--set", "window=24", "--set", "min_count=3"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("anchors")
    save_tiny_model(root / "base")
    (root / "target.txt").write_text(TRAINING_TEXT * 4)
    (root / "reference.txt").write_text(REFERENCE)
    return root


def anchors(inputs: Path, out: Path, *extra: str) -> int:
    return main(["-q", "anchors", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
                 "--out", str(out), *FAST, *extra])


def review(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_writes_a_ranked_review_file_that_loads(inputs, tmp_path, capsys):
    out = tmp_path / "anchors.yaml"
    assert anchors(inputs, out, "--reference", str(inputs / "reference.txt")) == 0
    assert re.search(r"\d+ entries \(\d+ extracted\) from \d+ candidates", capsys.readouterr().out)
    entries = review(out)
    assert "Holmes" in entries and "the" not in entries and "London" not in list(entries)[:3]
    holmes = entries["Holmes"]
    assert holmes["provenance"] == "extracted" and holmes["kind"].startswith("person")
    assert set(holmes["signals"]) >= {"count", "salience", "reinforced", "capitalised", "frequency", "cohesion"}
    scores = [e["score"] for e in entries.values()]
    assert scores == sorted(scores, reverse=True)
    dictionary = load_dictionary(out)
    alternatives = [a for alts in dictionary.values() for a in alts]
    assert len(alternatives) == len(set(alternatives)) and not set(alternatives) & set(dictionary)


def test_without_reference_salience_comes_from_the_model(inputs, tmp_path):
    out = tmp_path / "anchors.yaml"
    assert anchors(inputs, out, "--set", "reinforce_tokens=0") == 0
    entries = review(out)
    assert "salience" in entries["Holmes"]["signals"] and "reinforced" not in entries["Holmes"]["signals"]


def test_user_dictionary_is_merged_and_wins(inputs, tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("Holmes: [Turner]\nWatson: [Turner]\nGandalf: [Grey]\n")
    out = tmp_path / "anchors.yaml"
    assert anchors(inputs, out, "--merge", str(user)) == 0
    entries = review(out)
    assert entries["Holmes"] == {"alternatives": ["Turner"], "provenance": "user"}
    assert list(entries)[:3] == ["Holmes", "Watson", "Gandalf"]
    extracted = [a for e in entries.values() if e["provenance"] == "extracted" for a in e["alternatives"]]
    assert "Turner" not in extracted and "Grey" not in extracted


def test_conflicting_user_dictionary_warns(inputs, tmp_path, caplog):
    caplog.set_level("WARNING", logger="whp")
    user = tmp_path / "mine.yaml"
    user.write_text("Holmes: [Turner]\nWatson: [Turner]\n")
    assert anchors(inputs, tmp_path / "a.yaml", "--merge", str(user), "--set", "reinforce_tokens=0") == 0
    assert any("'Turner' serves both 'Holmes' and 'Watson'" in r.message for r in caplog.records)


def test_no_candidate_above_the_floor_is_an_error(inputs, tmp_path, capsys):
    target = tmp_path / "short.txt"
    target.write_text("A plain sentence with nothing repeated at all.")
    code = main(["-q", "anchors", "--model", str(inputs / "base"), "--target", str(target), "--out", str(tmp_path / "a.yaml")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"whp: error: {target}: no candidate expression occurs at least 3 times" in err
    assert not (tmp_path / "a.yaml").exists()


def test_llm_flags_come_in_pairs(inputs, tmp_path, capsys):
    assert anchors(inputs, tmp_path / "a.yaml", "--llm-url", "http://127.0.0.1:1/v1") == 2
    assert "give both --llm-url and --llm-model" in capsys.readouterr().err


# ---- LLM mode against a fake server -------------------------------------------------------------


def answer_from_passage(body: dict) -> str:
    passage = body["messages"][1]["content"]
    reply = {}
    if "Moriarty" in passage:
        reply["Moriarty"] = ["Blackwood"]
    if "Holmes" in passage:
        reply["Holmes"] = ["Grantley"]
    reply["Gandalf"] = ["Tom"]  # not in the passage: dropped
    return "```json\n" + json.dumps(reply) + "\n```"


def test_llm_entries_merge_with_extracted_ones(inputs, tmp_path, server_factory, monkeypatch):
    monkeypatch.setenv("WHP_TEST_ANCHORS_KEY", "sk-anchors")
    server = server_factory([], default=answer_from_passage)
    out = tmp_path / "anchors.yaml"
    code = anchors(inputs, out, "--llm-url", server.url, "--llm-model", "m", "--set", "llm.key_env=WHP_TEST_ANCHORS_KEY",
                   "--set", "llm.passages=3", "--set", "llm.passage_words=60", "--set", "reinforce_tokens=0")
    assert code == 0
    assert len(server.requests) == 3
    request = server.requests[0]
    assert request["headers"]["Authorization"] == "Bearer sk-anchors"
    system = request["body"]["messages"][0]["content"]
    assert "idiosyncratic expressions" in system and "generic alternative" in system
    entries = review(out)
    assert entries["Holmes"]["provenance"] == "extracted+llm" and entries["Holmes"]["alternatives"] == ["Grantley"]
    assert entries["Moriarty"]["alternatives"] == ["Blackwood"]
    assert "Gandalf" not in entries
    assert "sk-anchors" not in out.read_text()


def test_llm_nonsense_and_timeouts_lose_nothing(inputs, server_factory, caplog):
    caplog.set_level("WARNING", logger="whp")
    good = '{"Holmes": ["Grantley"]}'
    server = server_factory([(200, good), (200, "I am sorry, I cannot."), (200, "nope"), ("sleep", "1.5"), ("sleep", "1.5")])
    cfg = LLMConfig(url=server.url, model="m", passages=3, passage_words=60, workers=1, timeout=0.5, max_retries=1)
    drafts = draft(TRAINING_TEXT * 4, cfg)
    assert drafts.entries == [("Holmes", ["Grantley"])] and drafts.answered == 1
    assert len(drafts.failed) == 2
    assert "no JSON object of expressions and alternatives" in drafts.failed[0]
    assert "anchor LLM endpoint timed out: no reply within 1 s (2 tries, waiting 0.5, 1 s" in drafts.failed[1]
    assert "raise llm.timeout (now 0.5)" in drafts.failed[1]
    assert any("2 of 3 passages failed and were skipped" in r.message for r in caplog.records)


def test_llm_endpoint_failure_skips_the_passages_not_yet_sent(inputs, server_factory, caplog):
    caplog.set_level("WARNING", logger="whp")
    server = server_factory([(200, '{"Holmes": ["Grantley"]}'), (401, 'RAW:{"error": {"message": "invalid key"}}')])
    cfg = LLMConfig(url=server.url, model="m", passages=4, passage_words=40, workers=1)
    drafts = draft(TRAINING_TEXT * 4, cfg)
    assert drafts.entries == [("Holmes", ["Grantley"])] and drafts.answered == 1 and len(server.requests) == 2
    assert drafts.failed == ["passage 2: anchor LLM endpoint answered HTTP 401: invalid key"] + [
        f"passage {n}: not sent: anchor LLM endpoint answered HTTP 401: invalid key" for n in (3, 4)]


def test_llm_answers_are_kept_and_reused(inputs, server_factory):
    cfg = LLMConfig(url=None, model=None, passages=3, passage_words=60, workers=1, max_retries=0)
    server = server_factory([(200, '{"Holmes": ["Grantley"]}'), (200, "nope"), (200, '{"Watson": ["Hale"]}')])
    first = draft(TRAINING_TEXT * 4, LLMConfig(**{**vars(cfg), "url": server.url, "model": "m"}))
    assert first.answered == 2 and len(first.failed) == 1
    server.replies[:] = [(200, lambda body: json.dumps({body["messages"][1]["content"].split()[0]: ["Zed"]}))]
    again = draft(TRAINING_TEXT * 4, LLMConfig(**{**vars(cfg), "url": server.url, "model": "m"}))
    assert again.answered == 3 and len(server.requests) == 4, "only the failed passage is asked again"
    assert again.entries[0] == first.entries[0] and again.entries[2] == first.entries[1] and again.entries[1][1] == ["Zed"]


def test_llm_giving_nothing_falls_back_to_extraction(inputs, caplog):
    caplog.set_level("WARNING", logger="whp")
    cfg = ExtractConfig(reinforce_tokens=0,
                        llm=LLMConfig(url=closed_port_url(), model="m", passages=2, max_retries=0))
    entries, facts = extract(str(inputs / "base"), TRAINING_TEXT * 4, cfg, dtype="float32")
    assert entries and all(e.provenance == "extracted" for e in entries)
    assert facts["llm_passages_failed"] == 2
    assert any("gave nothing usable; the dictionary comes from extraction alone" in r.message for r in caplog.records)


# ---- whp unlearn without --anchors ----------------------------------------------------------------

TINY_RUN = [
    "--set", "corpus.block_size=48", "--set", "reinforce.train.epochs=1", "--set", "reinforce.train.lr=3e-3",
    "--set", "dtype=float32", "--set", "finetune.train.max_steps=2", "--set", "finetune.train.batch_size=4",
    "--set", "extract.window=24",
]


def test_unlearn_without_anchors_extracts_into_the_run(inputs, tmp_path, caplog):
    caplog.set_level("INFO", logger="whp")
    out = tmp_path / "run"
    command = ["unlearn", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"), "--out", str(out), *TINY_RUN]
    assert main(command) == 0
    assert any("no --anchors given: extracting an anchored dictionary" in r.message for r in caplog.records)
    dictionary = load_dictionary(out / "anchors.yaml")
    assert "Holmes" in dictionary
    record = json.loads((out / "run.json").read_text())
    assert record["anchors"]["entries"] == len(dictionary)
    assert record["stages"]["labels"]["dictionary_keys"] == len(dictionary)
    assert "extracted from the target" in (out / "model" / "README.md").read_text()
    labels = next((out / "labels").iterdir())
    # other extraction settings: a new dictionary, and so new labels (the fingerprint covers it)
    caplog.clear()
    assert main([*command, "--set", "extract.max_entries=3", "--overwrite"]) == 0
    assert any("no --anchors given" in r.message for r in caplog.records)
    assert len(load_dictionary(out / "anchors.yaml")) <= 3
    assert [p.name for p in (out / "labels").iterdir()] != [labels.name]


def test_unlearn_with_no_candidate_above_the_floor_warns_and_uses_the_reinforced_model(inputs, tmp_path, caplog):
    caplog.set_level("WARNING", logger="whp")
    out = tmp_path / "run"
    command = ["unlearn", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"), "--out", str(out),
               *TINY_RUN, "--set", "extract.min_count=100000"]
    assert main(command) == 0
    assert any("no candidate expression occurs at least 100000 times" in r.message and "reinforced model alone" in r.message
               for r in caplog.records)
    assert json.loads((out / "run.json").read_text())["stages"]["labels"]["dictionary_keys"] == 0
