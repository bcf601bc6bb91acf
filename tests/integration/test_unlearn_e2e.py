"""`whp unlearn` end to end on a tiny random Llama built in the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_tiny import TRAINING_TEXT, save_tiny_model
from transformers import AutoModelForCausalLM

import whp.labels
from whp.cli import main
from whp.methods.whp import hard_label_loss
from whp.models import load_tokenizer
from whp.shards import load_examples

TINY = [
    "--set", "corpus.block_size=48",
    "--set", "reinforce.train.epochs=3", "--set", "reinforce.train.lr=3e-3",
    "--set", "dtype=float32", "--set", "labels.shard_blocks=4", "--set", "labels.alpha=2",
    "--set", "finetune.train.max_steps=12", "--set", "finetune.train.grad_accum=1",
    "--set", "finetune.train.lr=3e-3", "--set", "finetune.train.batch_size=4",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    save_tiny_model(root / "base")
    (root / "target.txt").write_text(TRAINING_TEXT * 4)
    (root / "anchors.yaml").write_text(
        "Holmes: [Turner, Grant]\nWatson: [Miller]\nBaker Street: [Elm Road]\nMoriarty: [Blackwood, Harwell]\n"
    )
    return root


def unlearn(inputs: dict, out: Path, *extra: str) -> int:
    return main(["-q", "unlearn", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
                 "--anchors", str(inputs / "anchors.yaml"), "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert unlearn(inputs, out) == 0
    return out


def labels_folder(run: Path) -> Path:
    (folder,) = (run / "labels").iterdir()
    return folder


def test_writes_a_loadable_model_config_and_record(finished_run):
    model = AutoModelForCausalLM.from_pretrained(finished_run / "model")
    assert model.config.vocab_size > 0
    assert (finished_run / "model" / "tokenizer.json").is_file()
    assert "Unlearned model" in (finished_run / "model" / "README.md").read_text()
    assert "labels" in (finished_run / "config.yaml").read_text()
    record = json.loads((finished_run / "run.json").read_text())
    assert record["status"] == "complete"
    assert set(record["stages"]) == {"reinforce", "labels", "finetune"}
    assert record["stages"]["labels"]["anchors"] > 0
    assert all(stage["seconds"] >= 0 for stage in record["stages"].values())
    assert not list(finished_run.rglob(".*.tmp"))


def test_loss_on_generic_labels_fell(inputs, finished_run):
    examples = load_examples(labels_folder(finished_run))
    batch = {k: torch.stack([ex[k] for ex in examples]) for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        before, _ = hard_label_loss(AutoModelForCausalLM.from_pretrained(inputs / "base"), batch)
        after, _ = hard_label_loss(AutoModelForCausalLM.from_pretrained(finished_run / "model"), batch)
    assert after < before - 0.1, (before, after)


def test_rerun_reports_complete(inputs, finished_run, caplog):
    caplog.set_level("INFO", logger="whp")
    mtime = (finished_run / "model" / "model.safetensors").stat().st_mtime
    assert unlearn(inputs, finished_run) == 0
    assert (finished_run / "model" / "model.safetensors").stat().st_mtime == mtime


def test_interrupted_labels_resume_byte_identical(inputs, finished_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "interrupted"
    real_write = whp.labels.write_shard
    calls = {"n": 0}

    def write_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the third shard is lost mid-way, like a killed process
        real_write(*args, **kwargs)

    def stage(command: str) -> int:
        return main(["-q", command, "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
                     "--anchors", str(inputs / "anchors.yaml"), "--out", str(out), *TINY])

    assert stage("reinforce") == 0
    monkeypatch.setattr(whp.labels, "write_shard", write_then_interrupt)
    assert stage("labels") == 130
    assert "re-run the same command to resume" in capsys.readouterr().err
    partial = labels_folder(out)
    assert len(list(partial.glob("shard-*"))) == 2 and not (partial / "complete.json").exists()
    monkeypatch.setattr(whp.labels, "write_shard", real_write)
    assert unlearn(inputs, out) == 0
    reference = labels_folder(finished_run)
    assert partial.name == reference.name, "same inputs, same fingerprint"
    names = sorted(p.name for p in reference.glob("shard-*"))
    assert names == sorted(p.name for p in partial.glob("shard-*")) and len(names) > 3
    for name in names:
        assert (partial / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.compile
def test_compiled_label_passes_give_the_same_labels(inputs, finished_run, tmp_path):
    shutil.copytree(finished_run / "reinforced", tmp_path / "adapter")  # the same reinforced adapter
    out = tmp_path / "compiled"
    assert main(["-q", "labels", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
                 "--anchors", str(inputs / "anchors.yaml"), "--reinforced", str(tmp_path / "adapter"), "--out", str(out),
                 *TINY, "--set", "labels.compile=true"]) == 0
    compiled, eager = load_examples(labels_folder(out)), load_examples(labels_folder(finished_run))
    assert len(compiled) == len(eager)
    for a, b in zip(compiled, eager):
        assert torch.equal(a["labels"], b["labels"])


def test_anchor_interiors_words_labels_only_word_ends_inside_anchors(inputs, finished_run, tmp_path):
    """labels.anchor_interiors=words (with retain text, which has no anchors): every label of the
    default run is kept, and only positions that end a word inside an anchor (" Baker" of "Baker
    Street" <-> " Elm" of "Elm Road"), which the paper leaves unlabelled, get a label, never the
    anchor's own next token."""
    option = "words"
    shutil.copytree(finished_run / "reinforced", tmp_path / "adapter")
    (tmp_path / "retain.txt").write_text("The river ran past the mill and the baker sold bread every morning. " * 8)
    runs = {}
    for name in ("ignore", option):
        out = tmp_path / name
        assert main(["-q", "labels", "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
                     "--anchors", str(inputs / "anchors.yaml"), "--reinforced", str(tmp_path / "adapter"), "--out", str(out),
                     "--retain", str(tmp_path / "retain.txt"), *TINY, "--set", f"labels.anchor_interiors={name}"]) == 0
        runs[name] = load_examples(labels_folder(out))
    street = set(load_tokenizer(inputs / "base")(" Street", add_special_tokens=False)["input_ids"][:1])
    added = 0
    for plain, labelled in zip(runs["ignore"], runs[option]):
        kept = plain["labels"] != -100
        assert torch.equal(labelled["labels"][kept], plain["labels"][kept])
        new = (plain["labels"] == -100) & (labelled["labels"] != -100)
        assert not torch.any(labelled["labels"][new] == plain["input_ids"][new]), "never the anchor's own next token"
        assert set(plain["input_ids"][new].tolist()) <= street, "only the word end inside 'Baker Street'"
        added += int(new.sum())
    assert added > 0


def test_pinned_labels_widen_target_and_retain_shards_alike(inputs, finished_run, tmp_path):
    """labels.pin_k: target and retain examples both store top_k + pin_k tokens (one batch holds
    both), the argmax labels are the default run's, and fine-tuning on them runs."""
    shutil.copytree(finished_run / "reinforced", tmp_path / "adapter")
    (tmp_path / "retain.txt").write_text("The river ran past the mill and the baker sold bread every morning. " * 8)
    common = ["--model", str(inputs / "base"), "--target", str(inputs / "target.txt"), "--anchors", str(inputs / "anchors.yaml"),
              "--reinforced", str(tmp_path / "adapter"), "--retain", str(tmp_path / "retain.txt"), *TINY,
              "--set", "labels.top_k=4", "--set", "finetune.loss=soft", "--set", "finetune.train.max_steps=2"]
    runs = {}
    for pin_k in (0, 3):
        out = tmp_path / f"pin{pin_k}"
        assert main(["-q", "unlearn", *common, "--out", str(out), "--set", f"labels.pin_k={pin_k}"]) == 0
        runs[pin_k] = load_examples(labels_folder(out)) + load_examples(labels_folder(out), "retain")
    assert {ex["top_indices"].shape[1] for ex in runs[3]} == {7}
    assert any(ex["is_retain"] for ex in runs[3])
    for plain, pinned in zip(runs[0], runs[3]):
        assert torch.equal(plain["labels"], pinned["labels"])


def test_reinforcement_only_ablation_runs_without_a_dictionary(inputs, finished_run, tmp_path):
    """labels.use_dictionary=false (the paper's ablation): no anchor is translated, so every
    position of a block is labelled (from the reinforced model alone), the labels differ from
    the default run's where anchors were, and the run finishes with a model."""
    out = tmp_path / "no-dictionary"
    assert unlearn(inputs, out, "--set", "labels.use_dictionary=false") == 0
    record = json.loads((out / "run.json").read_text())["stages"]["labels"]
    assert record["dictionary_keys"] == 0 and record["anchors"] == 0
    plain, ablated = load_examples(labels_folder(finished_run)), load_examples(labels_folder(out))
    assert sum(int((e["labels"] != -100).sum()) for e in ablated) > sum(int((e["labels"] != -100).sum()) for e in plain)
    assert any(not torch.equal(a["labels"], p["labels"]) for a, p in zip(ablated, plain))
    assert (out / "model" / "model.safetensors").is_file()


def train_losses(run: Path, stage: str) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "work" / stage / "train_log.jsonl").read_text().splitlines()]


# The tiny run's per-step losses for its seeds (float32): a change that moves them changed behaviour.
# The tolerance admits the last bits that differ between CPU kernels, not a changed computation.
PINNED_REINFORCE = [5.99843, 6.00155, 5.99071, 5.99096, 5.98479, 5.98923, 5.96596, 5.96331, 5.96378, 5.94741, 5.92127,
                    5.92898, 5.92244, 5.90653, 5.92649, 5.91277, 5.90612, 5.90986, 5.89606, 5.89948, 5.91059]
PINNED_FINETUNE = [5.67866, 5.57741, 5.50913, 5.46938, 5.45762, 5.40072, 5.30087, 5.21139, 5.22438, 5.17251, 5.15283, 5.13704]


def test_seed_fixed_losses_do_not_drift(finished_run):
    assert train_losses(finished_run, "reinforce") == pytest.approx(PINNED_REINFORCE, rel=1e-4)
    assert train_losses(finished_run, "finetune") == pytest.approx(PINNED_FINETUNE, rel=1e-4)
