"""`whp eval` on tiny models: one JSON per metric, summary, report, no recomputation, model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_tiny import TRAINING_TEXT, save_tiny_model

from whp.cli import main

METRICS = ["familiarity_probability", "familiarity_completion", "retain_perplexity", "membership", "qa_rouge_l",
           "verbatim_rouge_l", "relearn_familiarity"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    save_tiny_model(root / "base")
    save_tiny_model(root / "run" / "model", seed=1)
    (root / "run" / "model" / "README.md").write_text("# Unlearned model (whp 0.1.0)\n")
    (root / "prob.jsonl").write_text('{"prompt": "Holmes lived at Baker", "continuations": ["Street"]}\n'
                                     '{"prompt": "Professor", "continuations": ["Moriarty"]}\n')
    (root / "comp.jsonl").write_text('{"prompt": "The detective took his", "references": ["violin", "Watson"]}\n')
    (root / "qa.jsonl").write_text('{"question": "Who was the landlady?", "answer": "Mrs Hudson"}\n')
    (root / "target.txt").write_text(TRAINING_TEXT * 3)
    (root / "retain.txt").write_text("The garden was full of roses and the tea was ready. " * 80)
    return root


def run_eval(root: Path, out: Path) -> int:
    return main(["-q", "eval", "--model", str(root / "run" / "model"), "--model", str(root / "base"), "--out", str(out),
                 "--prompts", str(root / "prob.jsonl"), str(root / "comp.jsonl"), "--metrics", *METRICS,
                 "--set", "max_new_tokens=6", "--set", "relearn_steps=1", "--set", f"qa={root / 'qa.jsonl'}",
                 "--set", f"target_text={root / 'target.txt'}", "--set", f"retain_text={root / 'retain.txt'}",
                 "--set", f"side_effect_probability={root / 'prob.jsonl'}"])


def test_eval_writes_metrics_report_and_card_and_does_not_recompute(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_eval(setup, out) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary) == {"run", "base"}
    for label in summary:
        for metric in METRICS:
            record = json.loads((out / label / f"{metric}.json").read_text())
            assert record["metric"] == metric and record["model"] == label and "seconds" in record
        assert 0 <= summary[label]["familiarity_probability"] <= 1
        assert summary[label]["retain_perplexity"] > 1
        assert 0 <= summary[label]["min_k_auc"] <= 1
    html = (out / "report.html").read_text()
    assert "familiarity_probability" in html and "data:image/png;base64," in html
    card = (setup / "run" / "model" / "README.md").read_text()
    assert "Evaluation (whp eval)" in card and "retain_perplexity" in card
    assert "familiarity_probability" in capsys.readouterr().out
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "metrics.json"}
    assert run_eval(setup, out) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items()), "finished metrics are not recomputed"
    assert card == (setup / "run" / "model" / "README.md").read_text(), "the card's table is replaced, not repeated"


def test_bad_prompt_file_is_one_line_error(setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    assert main(["eval", "--model", str(setup / "base"), "--out", str(tmp_path / "o"), "--prompts", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("whp: error:") and "bad.jsonl" in err[0]


def test_changed_prompt_file_or_model_recomputes(setup, tmp_path):
    out = tmp_path / "out"
    prompts = tmp_path / "prob.jsonl"
    prompts.write_text((setup / "prob.jsonl").read_text())
    args = ["-q", "eval", "--model", str(setup / "base"), "--out", str(out), "--prompts", str(prompts),
            "--metrics", "familiarity_probability"]
    assert main(args) == 0
    record = out / "base" / "familiarity_probability.json"
    first = json.loads(record.read_text())
    assert main(args) == 0
    assert json.loads(record.read_text())["seconds"] == first["seconds"], "same inputs: reused"
    prompts.write_text('{"prompt": "Professor", "continuations": ["Moriarty"]}\n')
    assert main(args) == 0
    again = json.loads(record.read_text())
    assert again["inputs"] != first["inputs"] and len(again["prompts"]) == 1, "a changed prompt file is measured anew"


def test_prompts_command_drafts_loadable_prompts(tmp_path, capsys):
    from whp.evaluate.prompts import load_completion_prompts

    (tmp_path / "target.txt").write_text(TRAINING_TEXT * 3)
    (tmp_path / "anchors.yaml").write_text("Holmes: [Turner]\nMoriarty: [Blackwood]\nWatson: [Miller]\n")
    out = tmp_path / "drafted.jsonl"
    assert main(["prompts", "--target", str(tmp_path / "target.txt"), "--anchors", str(tmp_path / "anchors.yaml"),
                 "--n", "5", "--context-words", "8", "--out", str(out)]) == 0
    drafted = load_completion_prompts(out)
    assert 0 < len(drafted) <= 5
    assert all(ref in ("Holmes", "Moriarty", "Watson") and ref not in p.prompt for p in drafted for ref in p.references)


def test_a_model_measured_before_is_not_measured_again_in_another_folder(setup, tmp_path, caplog):
    """The machine's metric cache: the same model, files and settings in a new output folder reuse
    the record (the base model of every demo or comparison); a changed setting of one metric
    recomputes that metric only."""
    caplog.set_level("INFO", logger="whp")
    args = ["eval", "--model", str(setup / "base"), "--prompts", str(setup / "prob.jsonl"), str(setup / "comp.jsonl"),
            "--metrics", "familiarity_probability", "familiarity_completion", "--set", "max_new_tokens=4"]
    assert main(["-q", *args, "--out", str(tmp_path / "first")]) == 0
    first = {m: json.loads((tmp_path / "first" / "base" / f"{m}.json").read_text()) for m in ("familiarity_probability", "familiarity_completion")}
    caplog.clear()
    assert main([*args, "--out", str(tmp_path / "second")]) == 0
    second = {m: json.loads((tmp_path / "second" / "base" / f"{m}.json").read_text()) for m in first}
    assert second == first
    assert sum("reused from this machine's metric cache" in r.message for r in caplog.records) == 2
    caplog.clear()
    assert main(["-q", *args, "--set", "max_new_tokens=5", "--out", str(tmp_path / "third")]) == 0
    third = {m: json.loads((tmp_path / "third" / "base" / f"{m}.json").read_text()) for m in first}
    assert third["familiarity_probability"] == first["familiarity_probability"], "not a setting of this metric"
    assert third["familiarity_completion"]["inputs"] != first["familiarity_completion"]["inputs"]
