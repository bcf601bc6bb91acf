"""`whp demo` end to end on a tiny random model standing in for SmolLM2: the built-in corpus,
dictionary and prompts, two training steps per stage."""

from __future__ import annotations

import json

import pytest
from helpers_tiny import save_tiny_model
from transformers import AutoModelForCausalLM

from whp.cli import main

SHORT = ["--set", "reinforce.train.max_steps=2", "--set", "finetune.train.max_steps=2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    save_tiny_model(root / "base")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("whp.demo.demo_model_path", lambda: root / "base")
        assert main(["-q", "demo", "--out", str(root / "run"), *SHORT]) == 0
        first_card = (root / "run" / "model" / "README.md").read_text()
        assert main(["-q", "demo", "--out", str(root / "run"), *SHORT]) == 0  # the finished run is reused
    return root / "run", first_card


def test_demo_writes_summary_with_before_after_and_seconds(demo_run):
    run, _ = demo_run
    summary = json.loads((run / "summary.json").read_text())
    for key in ("familiarity_probability", "familiarity_completion", "retain_perplexity", "side_effect_probability"):
        assert set(summary[key]) == {"before", "after", "change_percent"}, key
        before, after = summary[key]["before"], summary[key]["after"]
        if before:
            assert summary[key]["change_percent"] == pytest.approx(100 * (after - before) / before)
    assert summary["prompts"] == "heldout"
    assert {"evaluate_base", "unlearn", "evaluate_unlearned", "total"} <= set(summary["seconds"])


def test_demo_model_loads_and_its_card_holds_the_table_once(demo_run):
    run, first_card = demo_run
    AutoModelForCausalLM.from_pretrained(run / "model")
    card = (run / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")  # the Hub reads this front matter
    assert card == first_card, "a second demo replaces the card's table instead of adding one"
    assert card.count("## Evaluation (") == 1
    assert "## Evaluation (whp demo, held-out prompts)" in card
    assert "| metric | base model | this model | change | direction |" in card
    assert "| familiarity_completion |" in card and "| retain_perplexity |" in card
    assert (run / "report.html").read_text().count("data:image/png;base64,") >= 1
