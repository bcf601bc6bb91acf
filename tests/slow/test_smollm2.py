"""Slow tests on the real demo model, SmolLM2-135M-Instruct (`make test-slow`)."""

from __future__ import annotations

import pytest
import torch

from whp.evaluate.suite import demo_corpus_files, demo_file
from whp.models import demo_model_path, load_model, load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    path = demo_model_path()
    return load_model(path), load_tokenizer(path), path


def test_demo_model_knows_moriarty(smollm2):
    model, tokenizer, _ = smollm2
    ids = tokenizer("Sherlock Holmes had an arch-enemy named Professor", return_tensors="pt").input_ids
    with torch.no_grad():
        top = model(ids).logits[0, -1].argmax()
    assert tokenizer.decode(top).strip() in ("Mor", "Moriarty")


def test_label_stage_on_a_slice_of_the_demo_corpus(smollm2, tmp_path):
    from whp.config import load_config
    from whp.shards import load_examples
    from whp.stages import run_unlearn

    text = open(demo_corpus_files()[0]).read()[:6000]
    (tmp_path / "target.txt").write_text(text)
    cfg = load_config(None, ["labels.alpha=0", "corpus.block_size=256"], model=str(smollm2[2]),
                      target=[str(tmp_path / "target.txt")], anchors=demo_file("anchors.yaml"))
    out = tmp_path / "run"
    folder = run_unlearn(cfg, out, stages=("labels",))
    examples = load_examples(folder)
    assert examples and all(ex["labels"].shape == ex["input_ids"].shape for ex in examples)
    changed = sum(int(((ex["labels"][1:] != ex["input_ids"][1:]) & (ex["labels"][1:] != -100)).sum()) for ex in examples)
    assert changed > 0, "generic labels differ from the text somewhere (anchors were translated)"
