"""lm-eval adapter: local benchmark tasks on a tiny random Llama over hand-written items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_tiny import tiny_model_and_tokenizer

from whp.errors import WhpError
from whp.lm_eval_adapter import (
    DATA_ENV,
    local_task_names,
    run_benchmarks,
    scored_pairs,
    write_task_dir,
)

ARC_EASY = [
    {"query": "Question: What do plants need to make food?", "choices": ["sunlight", "sand", "plastic", "noise"], "gold": 0},
    {"query": "Question: Which is a liquid at room temperature?", "choices": ["iron", "water", "salt", "wood"], "gold": 1},
    {"query": "Question: What pulls objects toward the Earth?", "choices": ["light", "sound", "gravity", "heat"], "gold": 2},
    {"query": "Question: Which animal lays eggs?", "choices": ["dog", "cat", "cow", "hen"], "gold": 3},
]  # fmt: skip

ITEMS = {
    "arc_easy.jsonl": ARC_EASY,
    "arc_challenge.jsonl": ARC_EASY[:3],
    "openbook_qa.jsonl": [{**item, "query": item["query"].removeprefix("Question: ")} for item in ARC_EASY],
    "boolq.jsonl": [
        {"query": "Passage: The sea is salty.\nQuestion: is the sea salty?", "choices": ["no", "yes"], "gold": 1},
        {"query": "Passage: Fish live in water.\nQuestion: do fish live in trees?", "choices": ["no", "yes"], "gold": 0},
    ],
    "piqa.jsonl": [
        {"query": "Question: How do I boil water?\n", "choices": ["Heat it in a pot.", "Put it in the freezer."], "gold": 0},
        {"query": "Question: How do I dry my hands?\n", "choices": ["Use a wet sponge.", "Use a towel."], "gold": 1},
    ],
    "winogrande.jsonl": [
        {"context_options": ["The cup fell off the table because the cup", "The cup fell off the table because the table"], "continuation": "was tilted.", "gold": 1},
        {"context_options": ["Anna gave Beth a gift because Anna", "Anna gave Beth a gift because Beth"], "continuation": "had a birthday.", "gold": 1},
    ],
    "hellaswag_1000.jsonl": [
        {"activity_label": "Cooking", "ctx_a": "A man cuts onions.", "ctx_b": "he", "label": 1,
         "endings": ["flies away.", "puts them in a pan.", "sings [title] loudly.", "swims."]},
        {"activity_label": "Running", "ctx_a": "A woman ties her shoes.", "ctx_b": "she", "label": 0,
         "endings": ["starts to run.", "eats a shoe.", "reads a book.", "falls asleep."]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A benchmark data folder in the formats of the real one, with a handful of items each."""
    folder = tmp_path_factory.mktemp("eval")
    for name, items in ITEMS.items():
        (folder / name).write_text("".join(json.dumps(item) + "\n" for item in items))
    return folder


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer(seed=0)


def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Summed log-probability of `continuation` after `context`, split as lm-eval splits it."""
    whole = tokenizer.encode(context + continuation)
    n_context = len(tokenizer.encode(context))
    with torch.no_grad():
        logprobs = model(torch.tensor([whole])).logits[0].log_softmax(-1)  # (T, V)
    return sum(logprobs[t - 1, whole[t]].item() for t in range(n_context, len(whole)))


def _reference_arc(model, tokenizer, items) -> tuple[float, float]:
    """ARC acc and acc_norm computed by hand: prompt "{query}\\nAnswer:", continuation " {choice}"."""
    hits, hits_norm = 0, 0
    for item in items:
        lls = torch.tensor([_loglikelihood(model, tokenizer, item["query"] + "\nAnswer:", " " + c) for c in item["choices"]])
        lengths = torch.tensor([float(len(c)) for c in item["choices"]])
        hits += int(lls.argmax()) == item["gold"]
        hits_norm += int((lls / lengths).argmax()) == item["gold"]
    return hits / len(items), hits_norm / len(items)


def test_every_local_task_runs_on_tiny_model(tiny, data_dir):
    model, tokenizer = tiny
    model.train()
    scores = run_benchmarks(model, tokenizer, local_task_names(), data_dir, batch_size=4)
    assert set(scores) == {f"whp_{name}" for name in
                           ("arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "winogrande")}
    sizes = {"whp_arc_challenge": 3, "whp_boolq": 2, "whp_piqa": 2, "whp_winogrande": 2, "whp_hellaswag": 2}
    for task, row in scores.items():
        assert row["n"] == sizes.get(task, 4)
        assert 0.0 <= row["acc"] <= 1.0
        assert (row["acc_norm"] is None) == (task in ("whp_boolq", "whp_winogrande"))
    assert model.training, "the caller's train mode must be restored"
    model.eval()


def test_arc_matches_hand_computed_scores_and_limit(tiny, data_dir):
    model, tokenizer = tiny
    scores = run_benchmarks(model, tokenizer, ["whp_arc_easy"], data_dir, limit=3)["whp_arc_easy"]
    acc, acc_norm = _reference_arc(model, tokenizer, ARC_EASY[:3])
    assert scores["n"] == 3
    assert scores["acc"] == pytest.approx(acc)
    assert scores["acc_norm"] == pytest.approx(acc_norm)


EXPECTED_FIRST_PAIRS = {
    # lm-eval's standard prompts: arc/piqa "Question: ...\nAnswer:", boolq "{passage}\nQuestion: ...?\nAnswer:",
    # openbookqa the bare stem, hellaswag "{activity}: {ctx_a} {Ctx_b}", winogrande one context per option.
    "whp_arc_easy": [("Question: What do plants need to make food?\nAnswer:", " sunlight")],
    "whp_arc_challenge": [("Question: What do plants need to make food?\nAnswer:", " sunlight")],
    "whp_boolq": [("The sea is salty.\nQuestion: is the sea salty?\nAnswer:", " no")],
    "whp_openbookqa": [("What do plants need to make food?", " sunlight")],
    "whp_piqa": [("Question: How do I boil water?\nAnswer:", " Heat it in a pot.")],
    "whp_hellaswag": [("Cooking: A man cuts onions. He", " flies away."),
                      ("Cooking: A man cuts onions. He", " puts them in a pan."),
                      ("Cooking: A man cuts onions. He", " sings. loudly.")],
    "whp_winogrande": [("The cup fell off the table because the cup", " was tilted."),
                       ("The cup fell off the table because the table", " was tilted.")],
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(EXPECTED_FIRST_PAIRS))
def test_prompts_follow_standard_task_format(task, data_dir):
    pairs = scored_pairs(task, data_dir, limit=1)
    expected = EXPECTED_FIRST_PAIRS[task]
    assert pairs[: len(expected)] == expected


def test_task_dir_holds_resolved_yaml_and_helpers(data_dir, tmp_path):
    out = write_task_dir(["whp_hellaswag"], data_dir, tmp_path / "tasks")
    text = (out / "whp_hellaswag.yaml").read_text()
    assert str(data_dir / "hellaswag_1000.jsonl") in text
    assert "!function" in text and (out / "hellaswag_utils.py").is_file()


def test_missing_data_dir_says_where_to_point(tiny, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(WhpError, match=DATA_ENV):
        run_benchmarks(*tiny, ["whp_arc_easy"])


def test_data_dir_from_environment(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    out = write_task_dir(["whp_piqa"], None, tmp_path)
    assert str(data_dir / "piqa.jsonl") in (out / "whp_piqa.yaml").read_text()


def test_missing_data_file_is_named(tiny, tmp_path):
    with pytest.raises(WhpError, match="arc_easy.jsonl") as info:
        run_benchmarks(*tiny, ["whp_arc_easy"], data_dir=tmp_path)
    assert info.value.path == str(tmp_path / "arc_easy.jsonl")


def test_unknown_local_task_names_its_task_file(tiny, data_dir):
    with pytest.raises(WhpError, match="whp_nonesuch") as info:
        run_benchmarks(*tiny, ["whp_nonesuch"], data_dir)
    assert info.value.path.endswith("whp_nonesuch.yaml")


def test_missing_data_folder_is_named(tiny, tmp_path):
    with pytest.raises(WhpError, match="does not exist") as info:
        run_benchmarks(*tiny, ["whp_boolq"], data_dir=tmp_path / "absent")
    assert info.value.path == str(tmp_path / "absent")


def test_no_tasks_is_an_error(tiny):
    with pytest.raises(WhpError, match="no benchmark tasks"):
        run_benchmarks(*tiny, [])
