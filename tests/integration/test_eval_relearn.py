import pytest
from helpers_tiny import TRAINING_TEXT, save_tiny_model
from transformers import AutoTokenizer

from whp.evaluate.familiarity import probability_familiarity
from whp.evaluate.prompts import ProbabilityPrompt
from whp.evaluate.relearn import (
    mean_loss,
    relearning_attack,
    relearning_curve,
    slice_examples,
)
from whp.models import load_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    save_tiny_model(path, seed=3)
    return path


def test_relearning_changes_the_model_on_the_slice(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = [ProbabilityPrompt("Holmes's arch-enemy was Professor", ["Moriarty"])]
    calls = []

    def probe(model):
        calls.append(model.training)
        return probability_familiarity(model, tok, prompts)["value"]

    text = TRAINING_TEXT * 3
    result = relearning_attack(folder, tok, text, probe, steps=6, lr=3e-3, block_size=32, batch_size=2, n_blocks=4)
    assert calls == [False, False]
    assert result["slice_loss_after"] < result["slice_loss_before"] - 0.1
    assert result["value"] == result["probe_after"] and result["change"] == result["probe_after"] - result["probe_before"]
    assert len(result["train_losses"]) == 6 and result["blocks"] == 4 and result["block_size"] == 32
    # the model on disk is untouched: the attack trained a fresh copy
    examples = slice_examples(tok, text, 32, 4, seed=0)
    assert mean_loss(load_model(folder), examples, 2) == pytest.approx(result["slice_loss_before"], rel=1e-5)


def test_short_text_uses_one_short_block(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    (example,) = slice_examples(tok, "Holmes and Watson", block_size=64, n_blocks=4, seed=0)
    assert example["input_ids"].shape == example["labels"].shape and example["input_ids"].numel() < 64


@pytest.mark.parametrize("lora", [False, True])
def test_a_curve_measures_along_one_run_what_a_separate_attack_measures(folder, lora):
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = [ProbabilityPrompt("Holmes's arch-enemy was Professor", ["Moriarty"])]

    def probe(model):
        return probability_familiarity(model, tok, prompts)["value"]

    text, sizes = TRAINING_TEXT * 3, {"block_size": 32, "batch_size": 2, "n_blocks": 4}
    curve = relearning_curve(folder, tok, text, probe, [0, 2, 3], lr=3e-3, lora=lora, **sizes)
    shorter = relearning_curve(folder, tok, text, probe, [0, 2], lr=3e-3, lora=lora, **sizes)
    assert curve["steps"] == [0, 2, 3] and len(curve["probe"]) == len(curve["slice_loss"]) == 3
    assert curve["probe"][:2] == shorter["probe"] and curve["slice_loss"][:2] == shorter["slice_loss"]
    assert curve["train_losses"][:2] == shorter["train_losses"] and len(curve["train_losses"]) == 3
    assert curve["slice_loss"][2] < curve["slice_loss"][0] and curve["lora"] is lora
