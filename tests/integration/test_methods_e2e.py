"""`whp unlearn --method ga|gd|npo|whp-inference` and `whp compare` end to end on tiny random Llamas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers_tiny import TRAINING_TEXT, save_tiny_model
from transformers import AutoModelForCausalLM

from whp import load_model, peft_adapter
from whp.cli import main
from whp.inference import InferenceWHP
from whp.models import load_tokenizer

TINY = ["--set", "corpus.block_size=48"]
STEPS = {m: ["--set", f"{m}.train.max_steps=4", "--set", f"{m}.train.batch_size=2", "--set", f"{m}.train.lr=1e-3"]
         for m in ("ga", "gd", "npo")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    save_tiny_model(root / "base")
    save_tiny_model(root / "other", seed=1)
    (root / "target.txt").write_text(TRAINING_TEXT * 3)
    (root / "retain.txt").write_text("The garden was full of roses and the tea was ready at four. " * 40)
    (root / "prob.jsonl").write_text('{"prompt": "Holmes lived at Baker", "continuations": ["Street"]}\n'
                                     '{"prompt": "Professor", "continuations": ["Moriarty"]}\n')
    (root / "comp.jsonl").write_text('{"prompt": "The detective took his", "references": ["violin", "Watson"]}\n')
    return root


def unlearn(inputs: Path, out: Path, method: str, *extra: str, retain: bool = True) -> int:
    retain_args = ["--retain", str(inputs / "retain.txt")] if retain else []
    return main(["-q", "unlearn", "--method", method, "--model", str(inputs / "base"), "--target",
                 str(inputs / "target.txt"), *retain_args, "--out", str(out), *TINY, *STEPS.get(method, []), *extra])


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    done = {}
    for method, extra in [("ga", []), ("gd", []), ("npo", ["--set", "npo.retain_loss=kl"]),
                          ("whp-inference", ["--set", "reinforce.train.max_steps=3", "--set", "reinforce.train.lr=1e-2"])]:
        assert unlearn(inputs, root / method, method, *extra, retain=method != "ga") == 0
        done[method] = root / method
    return done


@pytest.mark.parametrize("method", ["ga", "gd", "npo"])
def test_loss_methods_write_a_loadable_model_that_moved(inputs, runs, method):
    run = runs[method]
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    base = AutoModelForCausalLM.from_pretrained(inputs / "base")
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), base.parameters()))
    assert moved > 1e-4
    card = (run / "model" / "README.md").read_text()
    assert f"--method {method}" in card and "Unlearned model" in card
    record = json.loads((run / "run.json").read_text())
    assert record["method"] == method and record["status"] == "complete"
    assert set(record["stages"]) == {method} and record["stages"][method]["steps"] == 4
    assert (record["stages"][method]["retain_blocks"] > 0) == (method != "ga")
    assert "method: " + method in (run / "config.yaml").read_text()


def test_ga_ascends_the_target_loss(runs):
    losses = [json.loads(line)["loss"] for line in (runs["ga"] / "work" / "ga" / "train_log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] < 0  # the negated NLL falls: the target's NLL rises


def test_npo_starts_at_its_reference(inputs, tmp_path):
    """The references are the baseline's own log-probabilities: π/π_ref = 1 at step 0, so the first
    loss (no retain term) is 2·log 2 / β."""
    out = tmp_path / "npo"
    assert unlearn(inputs, out, "npo", "--set", "npo.train.max_steps=1", "--set", "npo.beta=0.5", retain=False) == 0
    first = json.loads((out / "run.json").read_text())["stages"]["npo"]["first_loss"]
    assert first == pytest.approx(2 * math.log(2) / 0.5, rel=1e-3)


def test_gd_needs_retain_text(inputs, tmp_path, capsys):
    assert unlearn(inputs, tmp_path / "gd", "gd", retain=False) == 2
    assert "method gd needs retain text (--retain)" in capsys.readouterr().err


def test_rerun_is_complete_and_another_method_is_refused(inputs, runs, capsys):
    mtime = (runs["gd"] / "model" / "model.safetensors").stat().st_mtime_ns
    assert unlearn(inputs, runs["gd"], "gd") == 0
    assert (runs["gd"] / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    assert unlearn(inputs, runs["gd"], "npo") == 2
    assert "holds a run of method 'gd', not 'npo'" in capsys.readouterr().err


def test_changed_settings_are_refused_then_redone_with_overwrite(inputs, tmp_path, capsys):
    out = tmp_path / "ga"
    assert unlearn(inputs, out, "ga", retain=False) == 0
    assert unlearn(inputs, out, "ga", "--set", "ga.train.lr=2e-3", retain=False) == 2
    assert "ga.train.lr" in capsys.readouterr().err
    assert unlearn(inputs, out, "ga", "--set", "ga.train.lr=2e-3", "--overwrite", retain=False) == 0
    assert "lr 0.002" in (out / "model" / "README.md").read_text()


# ---- inference-time WHP ---------------------------------------------------------------------------


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


def test_inference_folder_logits_are_the_formula(inputs, runs):
    folder = runs["whp-inference"] / "model"
    spec = json.loads((folder / "whp_inference.json").read_text())
    assert spec["alpha"] == 5.0 and spec["reinforced"] == "reinforced"
    wrapped = load_model(folder)
    assert isinstance(wrapped, InferenceWHP)
    ids = load_tokenizer(folder)(["Holmes lived at Baker Street with Doctor Watson."], return_tensors="pt")["input_ids"]
    v_b = _logits(AutoModelForCausalLM.from_pretrained(inputs / "base"), ids)
    v_r = _logits(peft_adapter.load_adapter(AutoModelForCausalLM.from_pretrained(inputs / "base"), folder / "reinforced"), ids)
    assert (v_r - v_b).abs().max() > 1e-3, "the reinforced adapter changed something"
    torch.testing.assert_close(_logits(wrapped, ids), v_b - 5.0 * torch.relu(v_r - v_b), rtol=1e-5, atol=1e-5)


def test_inference_with_a_full_reinforced_model_and_cached_generation(inputs, tmp_path):
    out = tmp_path / "wrap"
    assert unlearn(inputs, out, "whp-inference", "--reinforced", str(inputs / "other"), "--set", "inference.alpha=2") == 0
    assert not (out / "reinforced").exists(), "a given reinforced model is used, not trained"
    wrapped = load_model(out / "model")
    tok = load_tokenizer(out / "model")
    ids = tok(["The fog lay thick over", "Holmes"], return_tensors="pt", padding=True, padding_side="left")
    v_b = _logits(AutoModelForCausalLM.from_pretrained(inputs / "base"), ids["input_ids"][1:])
    v_r = _logits(AutoModelForCausalLM.from_pretrained(inputs / "other"), ids["input_ids"][1:])
    torch.testing.assert_close(_logits(wrapped, ids["input_ids"][1:]), v_b - 2.0 * torch.relu(v_r - v_b), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        generated = wrapped.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        sequence, mask = ids["input_ids"], ids["attention_mask"]
        for _ in range(6):  # greedy without any cache: the whole sequence through both models each step
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = wrapped(input_ids=sequence, attention_mask=mask, position_ids=positions, use_cache=False).logits
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert torch.equal(generated, sequence)


# ---- whp compare ----------------------------------------------------------------------------------


def test_compare_writes_one_report_over_every_method(inputs, runs, tmp_path, capsys):
    out = tmp_path / "compare"
    args = ["-q", "compare", *(str(runs[m]) for m in ("ga", "gd", "npo", "whp-inference")), "--out", str(out),
            "--prompts", str(inputs / "prob.jsonl"), str(inputs / "comp.jsonl"),
            "--metrics", "familiarity_probability", "familiarity_completion", "retain_perplexity",
            "--set", "max_new_tokens=4", "--set", f"retain_text={inputs / 'retain.txt'}"]
    assert main(args) == 0
    table = json.loads((out / "compare.json").read_text())
    assert list(table) == ["base", "ga", "gd", "npo", "whp-inference"]
    assert table["base"]["method"] == "baseline" and table["npo"]["method"] == "npo"
    assert table["gd"]["steps"] == 4 and table["gd"]["trained_tokens"] > 0
    assert table["whp-inference"]["steps"] == 3, "the reinforcement stage is its training"
    for row in table.values():
        assert set(row["metrics"]) == {"familiarity_probability", "familiarity_completion", "retain_perplexity"}
    html = (out / "report.html").read_text()
    assert "Methods side by side" in html and "Familiarity against general ability" in html
    assert html.count("data:image/png;base64,") >= 2
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.parent != out and p.name != "metrics.json"}
    assert main(args) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items()), "finished metrics are reused"
    assert "familiarity_probability" in capsys.readouterr().out


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["-q", "compare", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not a finished whp run" in capsys.readouterr().err


def test_eval_of_the_wrapper_skips_only_the_metrics_that_need_weights_or_states_of_its_own(inputs, runs, tmp_path):
    out = tmp_path / "eval"
    skipped = ["relearn_familiarity", "relearn_curve", "latent_probe"]
    assert main(["-q", "eval", "--model", str(runs["whp-inference"] / "model"), "--out", str(out),
                 "--prompts", str(inputs / "prob.jsonl"), "--metrics", "familiarity_probability", "membership", *skipped,
                 "--set", f"target_text={inputs / 'target.txt'}", "--set", f"relearn_text={inputs / 'target.txt'}",
                 "--set", f"retain_text={inputs / 'retain.txt'}"]) == 0
    values = json.loads((out / "metrics.json").read_text())["whp-inference"]
    assert 0 <= values["familiarity_probability"] <= 1 and 0 <= values["min_k_auc"] <= 1
    for metric in skipped:
        assert values[metric] is None
        assert "wrapper" in json.loads((out / "whp-inference" / f"{metric}.json").read_text())["skipped"]


ARC = [
    {"query": "Question: What do plants need to make food?", "choices": ["sunlight", "sand", "plastic"], "gold": 0},
    {"query": "Question: Which is a liquid at room temperature?", "choices": ["iron", "water", "salt"], "gold": 1},
    {"query": "Question: Which animal lays eggs?", "choices": ["dog", "cat", "hen"], "gold": 2},
]


def test_lm_eval_benchmarks_score_the_wrapper_by_its_own_logits(runs, tmp_path):
    from whp.lm_eval_adapter import run_benchmarks

    (tmp_path / "arc_easy.jsonl").write_text("".join(json.dumps(item) + "\n" for item in ARC))
    folder = runs["whp-inference"] / "model"
    wrapped, tok = load_model(folder), load_tokenizer(folder)
    scores = run_benchmarks(wrapped, tok, ["whp_arc_easy"], tmp_path)["whp_arc_easy"]
    hits = 0
    for item in ARC:  # lm-eval's ARC: context "{query}\nAnswer:", continuation " {choice}", summed log-probability
        context = tok.encode(item["query"] + "\nAnswer:")
        lls = []
        for choice in item["choices"]:
            whole = tok.encode(item["query"] + "\nAnswer: " + choice)
            logprobs = _logits(wrapped, torch.tensor([whole]))[0].log_softmax(-1)  # (T, V)
            lls.append(sum(logprobs[t - 1, whole[t]].item() for t in range(len(context), len(whole))))
        hits += max(range(len(lls)), key=lls.__getitem__) == item["gold"]
    assert scores["n"] == 3 and scores["acc"] == pytest.approx(hits / 3)
