"""Two CPU processes (torchrun, gloo) against one, on a tiny random Llama: byte-identical label
shards, the same fine-tuning loss curve, the same evaluation numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_tiny import TRAINING_TEXT, save_tiny_model
from safetensors.torch import load_file

from whp.cli import main

pytestmark = pytest.mark.subprocess
WORKER = Path(__file__).with_name("distributed_worker.py")
SETTINGS = [
    "--set", "corpus.block_size=48",
    "--set", "reinforce.train.epochs=2", "--set", "reinforce.train.lr=3e-3",
    "--set", "dtype=float32", "--set", "labels.shard_blocks=3", "--set", "labels.alpha=2",
    "--set", "labels.batch_size=2",
    "--set", "finetune.train.max_steps=8", "--set", "finetune.train.batch_size=2",
    "--set", "finetune.train.grad_accum=2", "--set", "finetune.train.lr=3e-3",
]  # fmt: skip
EVAL_METRICS = ["familiarity_probability", "familiarity_completion", "retain_perplexity", "verbatim_rouge_l"]
LOSS_TOLERANCE = 1e-4  # relative, per step: the same examples and mean gradient, summed in another order


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    save_tiny_model(root / "base")
    (root / "target.txt").write_text(TRAINING_TEXT * 4)
    (root / "anchors.yaml").write_text("Holmes: [Turner, Grant]\nWatson: [Miller]\nBaker Street: [Elm Road]\n")
    prompts = ["Holmes lived at Baker", "Professor", "The detective took his", "Mrs Hudson kept the"]
    (root / "prob.jsonl").write_text("".join(json.dumps({"prompt": p, "continuations": ["Street"]}) + "\n" for p in prompts))
    (root / "comp.jsonl").write_text("".join(json.dumps({"prompt": p, "references": ["violin"]}) + "\n" for p in prompts))
    (root / "retain.txt").write_text("The garden was full of roses and the tea was ready. " * 60)
    return root


def stage(inputs: Path, command: str, out: Path, *extra: str) -> list[str]:
    return ["-q", command, "--model", str(inputs / "base"), "--target", str(inputs / "target.txt"),
            "--anchors", str(inputs / "anchors.yaml"), "--out", str(out), *SETTINGS, *extra]


def gradient_difference(inputs: Path, out: Path) -> list[str]:
    """Another method over the same loop: gd with retain text, a LoRA adapter merged at the end."""
    return stage(inputs, "unlearn", out, "--method", "gd", "--retain", str(inputs / "retain.txt"),
                 "--set", "gd.train.max_steps=4", "--set", "gd.train.batch_size=2", "--set", "gd.train.grad_accum=2",
                 "--set", "gd.train.lr=1e-3", "--set", "gd.train.lora=true")


def evaluation(inputs: Path, model: Path, out: Path) -> list[str]:
    return ["-q", "eval", "--model", str(model), "--out", str(out), "--metrics", *EVAL_METRICS,
            "--prompts", str(inputs / "prob.jsonl"), str(inputs / "comp.jsonl"),
            "--set", "batch_size=1", "--set", "max_new_tokens=5", "--set", f"retain_text={inputs / 'retain.txt'}",
            "--set", f"target_text={inputs / 'target.txt'}", "--set", "dtype=float32"]


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(stage(inputs, "unlearn", out)) == 0
    assert main(evaluation(inputs, out / "model", out / "eval")) == 0
    assert main(gradient_difference(inputs, out.parent / "gd")) == 0
    return out


@pytest.fixture(scope="module")
def two_processes(inputs, one_process, tmp_path_factory) -> Path:
    """The same labels (from the one-process run's reinforced adapter), fine-tuning and evaluation
    in one torchrun group of two CPU processes."""
    out = tmp_path_factory.mktemp("two") / "run"
    commands = [
        stage(inputs, "labels", out, "--reinforced", str(one_process / "reinforced")),
        stage(inputs, "finetune", out, "--reinforced", str(one_process / "reinforced")),
        evaluation(inputs, one_process / "model", out / "eval"),
        gradient_difference(inputs, out.parent / "gd"),
    ]
    spec = out.parent / "commands.json"
    spec.write_text(json.dumps(commands))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(spec)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WHP_CACHE": str(out.parent / "whp-cache")})  # measured, not reused
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def labels_folder(run: Path) -> Path:
    (folder,) = (run / "labels").iterdir()
    return folder


def test_two_processes_write_byte_identical_label_shards(one_process, two_processes):
    one, two = labels_folder(one_process), labels_folder(two_processes)
    assert one.name == two.name, "same inputs, same fingerprint"
    names = sorted(p.name for p in one.glob("*.safetensors"))
    assert len(names) >= 3 and names == sorted(p.name for p in two.glob("*.safetensors"))
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (two / "complete.json").read_text() == (one / "complete.json").read_text()
    record = json.loads((two_processes / "run.json").read_text())["stages"]["labels"]
    assert record["processes"] == 2
    assert record["blocks"] == json.loads((one_process / "run.json").read_text())["stages"]["labels"]["blocks"]


def test_two_processes_fine_tune_along_the_same_loss_curve(one_process, two_processes):
    def curve(run: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (run / "work" / "finetune" / "train_log.jsonl").read_text().splitlines()]

    one, two = curve(one_process), curve(two_processes)
    assert len(one) == len(two) == 8
    assert two == pytest.approx(one, rel=LOSS_TOLERANCE)
    assert one[-1] < one[0] - 0.1, "it did train"
    tokens = [json.loads((run / "run.json").read_text())["stages"]["finetune"]["tokens"] for run in (one_process, two_processes)]
    assert tokens[0] == tokens[1] > 0
    weights_one, weights_two = (load_file(str(run / "model" / "model.safetensors")) for run in (one_process, two_processes))
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, rtol=1e-3, atol=1e-5, msg=name)


def test_another_method_trains_alike_and_saves_once_from_two_processes(one_process, two_processes):
    def curve(run: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (run / "work" / "gd" / "train_log.jsonl").read_text().splitlines()]

    one, two = one_process.parent / "gd", two_processes.parent / "gd"
    assert len(curve(one)) == 4
    assert curve(two) == pytest.approx(curve(one), rel=LOSS_TOLERANCE)
    assert json.loads((two / "run.json").read_text())["status"] == "complete"
    weights_one, weights_two = (load_file(str(run / "model" / "model.safetensors")) for run in (one, two))
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, rtol=1e-3, atol=1e-5, msg=name)


def test_two_processes_evaluate_like_one(one_process, two_processes):
    for metric in EVAL_METRICS:
        one, two = (json.loads((run / "eval" / "run" / f"{metric}.json").read_text()) for run in (one_process, two_processes))
        assert two["value"] == pytest.approx(one["value"], rel=1e-6), metric
    completions = [[p["completion"] for p in json.loads((run / "eval" / "run" / "familiarity_completion.json").read_text())["prompts"]]
                   for run in (one_process, two_processes)]
    assert completions[0] == completions[1]
