"""Bad input through the command line: one clear line on stderr, exit code 2, nothing lost.

Tiny random Llama models and small settings keep each run to a few seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers_tiny import (
    TRAINING_TEXT,
    byte_level_tokenizer,
    save_tiny_model,
    tiny_model,
)

from whp.cli import main

SMALL = [
    "--set", "corpus.block_size=32",
    "--set", "reinforce.train.max_steps=2",
    "--set", "finetune.train.max_steps=2",
    "--set", "finetune.train.grad_accum=1",
    "--set", "dtype=float32",
]
ANCHORS = "Holmes: [Turner, Grant]\nBaker Street: Elm Road\nWatson: Smith\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    save_tiny_model(folder / "base")
    (folder / "target.txt").write_text(TRAINING_TEXT)
    (folder / "anchors.yaml").write_text(ANCHORS)
    return {"root": folder, "model": folder / "base", "target": folder / "target.txt", "anchors": folder / "anchors.yaml"}


def command(inputs, out, *extra, stage="unlearn", model=None, target=None, anchors=None) -> list[str]:
    return [
        "-q", stage,
        "--model", str(model or inputs["model"]),
        "--target", str(target or inputs["target"]),
        "--anchors", str(anchors or inputs["anchors"]),
        "--out", str(out),
        *SMALL,
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(capsys, code: int, *fragments: str) -> str:
    """The run failed with exit code 2 and printed one line naming `fragments`, without a traceback."""
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("whp: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(command(inputs, out)) == 0
    assert (out / "model" / "model.safetensors").is_file() and (out / "reinforced").is_dir()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    return out


# ---- the target --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_target(inputs, tmp_path, capsys, text):
    target = tmp_path / "empty.txt"
    target.write_text(text)
    code = main(command(inputs, tmp_path / "run", target=target))
    error_line(capsys, code, str(target), "text file is empty")
    assert not (tmp_path / "run" / "reinforced").exists()


def test_target_too_short_for_one_block(inputs, tmp_path, capsys):
    target = tmp_path / "short.txt"
    target.write_text("Holmes smoked a pipe.")
    code = main(command(inputs, tmp_path / "run", target=target))
    error_line(capsys, code, str(target), "fewer than one block of 32", "corpus.block_size")


def test_missing_target(inputs, tmp_path, capsys):
    target = tmp_path / "nope.txt"
    code = main(command(inputs, tmp_path / "run", target=target))
    error_line(capsys, code, str(target), "text file does not exist")


def test_second_target_missing(inputs, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    code = main(["unlearn", "--model", str(inputs["model"]), "--target", str(inputs["target"]), str(missing),
                 "--out", str(tmp_path / "run"), *SMALL])
    error_line(capsys, code, str(missing), "does not exist")


# ---- the dictionary ------------------------------------------------------------------------------

BAD_DICTIONARIES = {
    "empty key": ('{"": ["Turner"], "Watson": "Smith"}', "empty or non-string key"),
    "non-string value": ('{"Holmes": ["Turner", 7]}', "non-string or empty alternative 7"),
    "key equal to value": ('{"Holmes": "Holmes"}', "an alternative equals its key"),
}


@pytest.mark.parametrize("case", BAD_DICTIONARIES)
def test_bad_dictionary(inputs, tmp_path, capsys, case):
    text, problem = BAD_DICTIONARIES[case]
    anchors = tmp_path / "anchors.json"
    anchors.write_text(text)
    out = tmp_path / "run"
    code = main(command(inputs, out, anchors=anchors))
    error_line(capsys, code, str(anchors), problem)
    # found before an hour of reinforcement is spent, not after
    assert not (out / "reinforced").exists() and not (out / "work").exists()


def test_dictionary_with_no_key_in_the_text_warns(inputs, tmp_path, capsys, caplog):
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("Gandalf: Grey\nFrodo Baggins: [Sam Cotton]\n")
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="whp"):
        code = main(command(inputs, out, "--set", "labels.alpha=0", stage="labels", anchors=anchors))
    assert code == 0, capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "whp"]
    assert any(str(anchors) in m and "no dictionary key occurs in the target" in m for m in warnings), warnings
    assert "error" not in capsys.readouterr().err
    assert any((out / "labels").glob("*/complete.json"))


# ---- the models ----------------------------------------------------------------------------------


def test_model_folder_that_does_not_exist(inputs, tmp_path, capsys):
    model = tmp_path / "no-such-model"
    code = main(command(inputs, tmp_path / "run", model=model))
    error_line(capsys, code, str(model), "model folder does not exist")


def test_model_path_that_is_a_file(inputs, tmp_path, capsys):
    code = main(command(inputs, tmp_path / "run", model=inputs["target"]))
    error_line(capsys, code, str(inputs["target"]), "expected a model folder")


def test_reinforced_model_with_another_vocabulary(inputs, tmp_path, capsys):
    tokenizer = byte_level_tokenizer(vocab_size=300)
    reinforced = tmp_path / "reinforced-elsewhere"
    tiny_model(len(tokenizer)).save_pretrained(reinforced)
    tokenizer.save_pretrained(reinforced)
    capsys.readouterr()
    code = main(command(inputs, tmp_path / "run", "--reinforced", str(reinforced)))
    line = error_line(capsys, code, str(reinforced), "vocabulary differs", str(inputs["model"]))
    assert line.startswith(f"whp: error: {reinforced}: ")


# ---- the output folder ---------------------------------------------------------------------------


def test_rerunning_a_finished_run_changes_nothing(inputs, finished_run, capsys):
    before = snapshot(finished_run / "model")
    capsys.readouterr()
    assert main(command(inputs, finished_run)) == 0
    assert snapshot(finished_run / "model") == before


def test_output_folder_holding_a_different_run_is_refused(inputs, finished_run, capsys):
    before = snapshot(finished_run)
    capsys.readouterr()
    code = main(command(inputs, finished_run, "--set", "finetune.train.lr=3e-4"))
    error_line(capsys, code, str(finished_run), "holds a different run", "finetune.train.lr", "--overwrite")
    assert snapshot(finished_run) == before  # nothing touched


def test_overwrite_redoes_only_the_changed_stage(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(command(inputs, out)) == 0
    reinforced_mtime = (out / "reinforced").stat().st_mtime_ns
    reinforced_files = snapshot(out / "reinforced")
    labels_files = snapshot(out / "labels")
    model_files = snapshot(out / "model")
    record = json.loads((out / "run.json").read_text())

    changed = command(inputs, out, "--set", "finetune.train.lr=3e-4")
    assert main(changed) == 2
    capsys.readouterr()
    assert main([*changed, "--overwrite"]) == 0

    assert (out / "reinforced").stat().st_mtime_ns == reinforced_mtime
    assert snapshot(out / "reinforced") == reinforced_files
    assert snapshot(out / "labels") == labels_files
    assert snapshot(out / "model") != model_files
    new_record = json.loads((out / "run.json").read_text())
    for stage in ("reinforce", "labels"):
        assert new_record["stages"][stage] == record["stages"][stage]
    assert new_record["stages"]["finetune"]["settings"] != record["stages"]["finetune"]["settings"]
    assert new_record["status"] == "complete"
    # the new settings are now the run's: the same command is accepted without --overwrite
    assert main(changed) == 0


@pytest.mark.parametrize("where", ["equal", "inside"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_output_folder_equal_to_or_inside_the_model_folder(inputs, capsys, where, overwrite):
    model = inputs["model"]
    before = snapshot(model)
    out = model if where == "equal" else model / "run"
    code = main(command(inputs, out, *(["--overwrite"] if overwrite else [])))
    error_line(capsys, code, str(out), "input folder", str(model))
    assert snapshot(model) == before
    assert not (model / "run").exists()


def test_output_folder_equal_to_the_reinforced_folder(inputs, finished_run, capsys):
    reinforced = finished_run / "reinforced"
    before = snapshot(reinforced)
    capsys.readouterr()
    code = main(command(inputs, reinforced, "--reinforced", str(reinforced), "--overwrite"))
    error_line(capsys, code, str(reinforced), "input folder")
    assert snapshot(reinforced) == before


def test_output_folder_holding_the_model_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "project"
    save_tiny_model(out / "base")
    (out / "target.txt").write_text(TRAINING_TEXT)
    before = snapshot(out)
    capsys.readouterr()
    code = main(["unlearn", "--model", str(out / "base"), "--target", str(out / "target.txt"), "--out", str(out), "--overwrite", *SMALL])
    error_line(capsys, code, str(out), "lies inside the output folder")
    assert snapshot(out) == before


def test_non_empty_output_folder_without_a_run(inputs, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep-me.txt").write_text("my notes")
    args = command(inputs, out, "--set", "labels.alpha=0", stage="labels")
    code = main(args)
    error_line(capsys, code, str(out), "not empty", "--overwrite")
    assert (out / "keep-me.txt").read_text() == "my notes" and not (out / "run.json").exists()

    assert main([*args, "--overwrite"]) == 0
    assert not (out / "keep-me.txt").exists()
    assert (out / "run.json").is_file() and any((out / "labels").glob("*/complete.json"))


def test_empty_output_folder_is_fine(inputs, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(command(inputs, out, "--set", "labels.alpha=0", stage="labels")) == 0


# ---- settings and commands -----------------------------------------------------------------------


def test_unknown_setting(inputs, tmp_path, capsys):
    code = main(command(inputs, tmp_path / "run", "--set", "finetune.train.lrr=1e-5"))
    error_line(capsys, code, "finetune.train.lrr", "unknown setting")
    assert not (tmp_path / "run").exists()


def test_missing_config_file(inputs, tmp_path, capsys):
    config = tmp_path / "nope.yaml"
    code = main(command(inputs, tmp_path / "run", "--config", str(config)))
    error_line(capsys, code, str(config), "config file does not exist")

