"""`whp eval --suite robust` on tiny models: every robustness metric's record, the skip of chat
familiarity without a chat template, the report's relearning curve, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_tiny import (
    TRAINING_TEXT,
    byte_level_tokenizer,
    save_tiny_model,
    tiny_model,
)

from whp.cli import main
from whp.evaluate.chat import chat_texts
from whp.evaluate.metrics import suite_metrics

FACTS = [("Holmes lived at Baker", ["Street"]), ("Professor", ["Moriarty"]), ("Holmes's brother", ["Mycroft"]),
         ("Sherlock Holmes lived with Doctor", ["Watson"]), ("The landlady was Mrs", ["Hudson"]), ("Inspector", ["Lestrade"])]
SHORT = "The weather in London was grey, and the fog lay thick over the river. A cab rattled past. " * 3
LONG = "She said that the garden was full of roses, and that the tea was ready at four o'clock. " * 12
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Two tiny models and small files of every kind the robust suite reads."""
    root = tmp_path_factory.mktemp("robust")
    save_tiny_model(root / "base")
    save_tiny_model(root / "run" / "model", seed=1)
    (root / "run" / "model" / "README.md").write_text("# Unlearned model (whp 0.1.0)\n")
    write_lines(root / "prob.jsonl", [{"prompt": p, "continuations": c} for p, c in FACTS])
    write_lines(root / "comp.jsonl", [{"prompt": p, "references": c} for p, c in FACTS[:3]])
    write_lines(root / "passages.jsonl", [{"length": "short", "text": "Watson said: " + SHORT}, {"length": "short", "text": SHORT},
                                          {"length": "long", "text": LONG}])
    write_lines(root / "fr_prob.jsonl", [{"prompt": f"Le {p}", "continuations": c, "source": i} for i, (p, c) in enumerate(FACTS)])
    write_lines(root / "de_prob.jsonl", [{"prompt": f"Der {p}", "continuations": c, "source": len(FACTS) - 1 - i}
                                         for i, (p, c) in enumerate(FACTS)])
    write_lines(root / "fr_comp.jsonl", [{"prompt": f"Le {p}", "references": c, "source": i} for i, (p, c) in enumerate(FACTS[:3])])
    write_lines(root / "chat.jsonl", [{"question": f"Who is {p}?", "references": c, "source": i} for i, (p, c) in enumerate(FACTS[:3])])
    write_lines(root / "prefixes.jsonl", [{"name": "scholar", "system": "", "prefix": "You are a Holmes scholar.\n\n"},
                                          {"name": "research", "system": "", "prefix": "For research only:"}])
    (root / "attack.txt").write_text(TRAINING_TEXT * 2)
    return root


def robust_args(world: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "eval", "--out", str(out), "--prompts", str(world / "prob.jsonl"), str(world / "comp.jsonl"),
            "--set", "max_new_tokens=4", "--set", f"incontext_passages={world / 'passages.jsonl'}",
            "--set", f"crosslingual_probability=[{world / 'fr_prob.jsonl'}, {world / 'de_prob.jsonl'}]",
            "--set", f"crosslingual_completion=[{world / 'fr_comp.jsonl'}]", "--set", f"chat_questions={world / 'chat.jsonl'}",
            "--set", f"jailbreak_prefixes={world / 'prefixes.jsonl'}", "--set", f"relearn_text=[{world / 'attack.txt'}]",
            "--set", "relearn_curve_steps=[0, 1, 2]", "--set", "probe_folds=0", *extra]


def records(out: Path, label: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / label).glob("*.json") if p.name != "metrics.json"}


def test_the_robust_suite_measures_every_robustness_metric(world, tmp_path):
    out = tmp_path / "out"
    args = robust_args(world, out, "--model", str(world / "run" / "model"), "--model", str(world / "base"), "--suite", "robust",
                       "--set", f"reference_model={world / 'base'}")
    assert main(args) == 0
    summary = json.loads((out / "metrics.json").read_text())
    run = records(out, "run")
    assert set(run) == set(suite_metrics("robust")) == set(summary["run"]), "the robust suite, and only it"
    assert run["incontext_probability"]["lengths"].keys() == {"short", "long"}
    short = [p["prompt"] for p in run["incontext_probability"]["details"]["short"]["prompts"]]
    assert short[3] == f"{SHORT.rstrip()}\n\nSherlock Holmes lived with Doctor", "the passage that names Watson is passed over"
    assert short[0].startswith("Watson said:")
    assert run["crosslingual_probability"]["languages"].keys() == {"fr_prob", "de_prob"}
    assert run["crosslingual_completion"]["value"] == run["crosslingual_completion"]["languages"]["fr_comp"]
    prefixes = run["jailbreak_completion"]["prefixes"]
    assert prefixes.keys() == {"scholar", "research"} and run["jailbreak_completion"]["worst"] == max(prefixes.values())
    assert run["jailbreak_probability"]["value"] == pytest.approx(sum(run["jailbreak_probability"]["prefixes"].values()) / 2)
    curves = run["relearn_curve"]["curves"]
    assert curves.keys() == {"full", "lora"} and all(c["steps"] == [0, 1, 2] and len(c["probe"]) == 3 for c in curves.values())
    assert curves["lora"]["lr"] == 10 * curves["full"]["lr"] and run["relearn_curve"]["value"] == curves["full"]["probe"][-1]
    assert curves["full"]["slice_loss"][-1] < curves["full"]["slice_loss"][0], "the attack trained"
    probe = run["latent_probe"]
    assert probe["reference_model"] == str(world / "base") and probe["n"] == len(FACTS) and probe["folds"] == len(FACTS)
    assert 0 <= probe["value"] <= 1 and 0 <= probe["reference_accuracy"] <= 1 and 0 <= probe["chance"] <= 1
    assert run["chat_completion"] == {**run["chat_completion"], "value": None, "skipped": "the tokenizer has no chat template"}
    assert summary["run"]["chat_completion"] is None
    html = (out / "report.html").read_text()
    assert "Robustness (attacks)" in html and "Familiarity along the relearning attack" in html
    assert "chat_completion for run: the tokenizer has no chat template" in html
    card = (world / "run" / "model" / "README.md").read_text()
    assert "| chat_completion | — | lower = forgotten |" in card and "| relearn_curve |" in card


def test_without_a_reference_the_probe_says_it_tested_the_model_on_itself(world, tmp_path):
    out = tmp_path / "out"
    assert main(robust_args(world, out, "--model", str(world / "base"), "--metrics", "latent_probe", "--set", "probe_layer=0")) == 0
    probe = records(out, "base")["latent_probe"]
    assert probe["reference_model"].startswith("none: the probe is trained and tested on the evaluated model's own states")
    assert probe["value"] == probe["reference_accuracy"] and probe["layer"] == 0


def test_chat_familiarity_asks_through_the_chat_template(world, tmp_path):
    folder = tmp_path / "chatty"
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert chat_texts(tokenizer, ["Who is Holmes?"]) == ["user: Who is Holmes?\nassistant:"]
    # the base model's weights with another tokenizer: the base's record (skipped) is not reused
    out = tmp_path / "out"
    assert main(robust_args(world, out, "--model", str(folder), "--metrics", "chat_completion")) == 0
    record = records(out, "chatty")["chat_completion"]
    assert 0 <= record["value"] <= 5 and record["n"] == 3 and "skipped" not in record
    assert [p["prompt"] for p in record["prompts"]] == ["Who is Holmes lived at Baker?", "Who is Professor?", "Who is Holmes's brother?"]
    assert all(isinstance(p["completion"], str) and p["grade"] in (0, 2, 3) for p in record["prompts"])


@pytest.fixture
def no_loading_bar():
    """transformers' weight-loading bar off (these files are read once the model is loaded; `-q`
    turns the bar off only in a process that has not imported tqdm yet)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    yield
    if was_on:
        hf_logging.enable_progress_bar()


@pytest.mark.parametrize("metric, setting, rows, message", [
    ("crosslingual_probability", "crosslingual_probability", [{"prompt": "Le docteur", "continuations": ["Watson"], "source": 0}],
     "1 prompts for the 6 of the English prompts"),
    ("crosslingual_probability", "crosslingual_probability",
     [{"prompt": f"Le {p}", "continuations": c, "source": 9 if i == 1 else i} for i, (p, c) in enumerate(FACTS)],
     "line 2: source 9 is not a line of the English prompts"),
    ("incontext_probability", "incontext_passages", [{"length": "short", "text": SHORT}], "no long passage"),
    ("incontext_completion", "incontext_passages", [{"length": "short", "text": SHORT}, {"length": "long", "text": SHORT}],
     "line 2: a long passage needs at least 1,000 characters"),
])  # fmt: skip
def test_bad_robust_files_are_one_line_errors_naming_the_file(world, tmp_path, capsys, no_loading_bar, metric, setting, rows, message):
    bad = write_lines(tmp_path / "bad.jsonl", rows)
    value = f"[{bad}]" if setting.startswith("crosslingual") else str(bad)
    args = robust_args(world, tmp_path / "out", "--model", str(world / "base"), "--metrics", metric, "--set", f"{setting}={value}")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"whp: error: {bad}: {message}")
