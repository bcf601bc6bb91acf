"""Run configuration: YAML file, `--set` overrides, explicit inputs, validation, round trips."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from whp.cli import main
from whp.config import (
    RunConfig,
    apply_override,
    commented_yaml,
    from_dict,
    load_config,
    to_dict,
)
from whp.errors import WhpError
from whp.files import write_yaml


def write_config(folder, data_or_text) -> str:
    path = folder / "run.yaml"
    path.write_text(data_or_text if isinstance(data_or_text, str) else yaml.safe_dump(data_or_text))
    return str(path)


def test_defaults_follow_the_paper():
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert cfg.corpus.block_size == 512 and cfg.labels.alpha == 5.0
    finetune, reinforce = cfg.train_for("finetune"), cfg.train_for("reinforce")
    assert (finetune.lr, finetune.beta1, finetune.beta2) == (1e-6, 0.9, 0.98)
    assert (finetune.batch_size, finetune.grad_accum, finetune.max_steps) == (8, 16, 150)
    assert reinforce.lora and not finetune.lora
    assert not cfg.trust_remote_code


def test_yaml_file_is_read(tmp_path):
    path = write_config(tmp_path, {
        "model": "base", "target": ["a.txt", "b.txt"], "anchors": "d.yaml",
        "corpus": {"block_size": 128, "keep_tail": True},
        "labels": {"alpha": 2, "top_k": 8},
        "finetune": {"loss": "soft", "train": {"max_steps": 20}},
    })
    cfg = load_config(path)
    assert (cfg.model, cfg.target, cfg.anchors) == ("base", ["a.txt", "b.txt"], "d.yaml")
    assert cfg.corpus.block_size == 128 and cfg.corpus.keep_tail
    assert cfg.labels.alpha == 2.0 and isinstance(cfg.labels.alpha, float) and cfg.labels.top_k == 8
    assert cfg.finetune.loss == "soft" and cfg.train_for("finetune").max_steps == 20


def test_a_single_target_string_becomes_a_list(tmp_path):
    assert load_config(write_config(tmp_path, "target: book.txt\n")).target == ["book.txt"]
    assert load_config(None, ["target=book.txt"]).target == ["book.txt"]


def test_precedence_inputs_over_set_over_file(tmp_path):
    path = write_config(tmp_path, {"model": "from-file", "anchors": "file.yaml", "corpus": {"block_size": 128, "keep_tail": True}})
    cfg = load_config(path, ["model=from-set", "corpus.block_size=64", "anchors=set.yaml"], model="from-input", anchors=None)
    assert cfg.model == "from-input"  # explicit input wins
    assert cfg.anchors == "set.yaml"  # an input that was not given (None) does not erase --set
    assert cfg.corpus.block_size == 64  # --set wins over the file
    assert cfg.corpus.keep_tail  # the file's other settings in that section stay


def test_later_set_wins_over_earlier_set():
    assert load_config(None, ["labels.alpha=1", "labels.alpha=3"]).labels.alpha == 3.0


def test_inputs_that_were_not_given_are_ignored(tmp_path):
    path = write_config(tmp_path, {"target": ["t.txt"], "trust_remote_code": True})
    cfg = load_config(path, [], model=None, target=None, anchors=None, reinforced=None, trust_remote_code=None)
    assert cfg.target == ["t.txt"] and cfg.trust_remote_code


def test_setting_one_nested_field_keeps_the_sections_defaults(tmp_path):
    cfg = load_config(None, ["finetune.train.lr=1e-4"])
    finetune = cfg.train_for("finetune")
    assert finetune.lr == 1e-4
    assert finetune.beta2 == 0.98 and finetune.grad_accum == 16 and finetune.max_steps == 150
    assert finetune.lora is False and cfg.finetune.loss == "hard"
    assert cfg.reinforce.train == RunConfig().reinforce.train  # another stage's section is untouched

    cfg = load_config(write_config(tmp_path, {"reinforce": {"train": {"lora_config": {"r": 4}}}}))
    reinforce = cfg.train_for("reinforce")
    assert reinforce.lora_config.r == 4 and reinforce.lora_config.alpha == 32
    assert reinforce.lr == 1e-4 and reinforce.epochs == 3 and reinforce.lora


def test_file_and_set_combine_within_one_section(tmp_path):
    path = write_config(tmp_path, {"finetune": {"train": {"lr": 1e-5, "max_steps": 10}}})
    cfg = load_config(path, ["finetune.train.max_steps=20"])
    finetune = cfg.train_for("finetune")
    assert (finetune.lr, finetune.max_steps, finetune.beta2) == (1e-5, 20, 0.98)


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads "1e-5" (no dot) as a string
    cfg = load_config(write_config(tmp_path, "finetune:\n  train:\n    lr: 1e-5\n"), ["reinforce.train.lr=3e-6", "labels.alpha=5"])
    assert cfg.finetune.train["lr"] == 1e-5 and isinstance(cfg.finetune.train["lr"], float)
    assert cfg.train_for("reinforce").lr == 3e-6 and isinstance(cfg.train_for("reinforce").lr, float)
    assert isinstance(cfg.labels.alpha, float)


@pytest.mark.parametrize("where", ["set", "file"])
@pytest.mark.parametrize("dotted", ["finetune.train.lrr", "labels.alfa", "modle", "reinforce.train.lora_config.rank"])
def test_unknown_key_names_the_dotted_key(tmp_path, where, dotted):
    if where == "set":
        args = (None, [f"{dotted}=1"])
    else:
        *parents, leaf = dotted.split(".")
        data: dict = {leaf: 1}
        for key in reversed(parents):
            data = {key: data}
        args = (write_config(tmp_path, data), [])
    with pytest.raises(WhpError, match="unknown setting") as info:
        load_config(*args)
    assert repr(dotted) in str(info.value)


BAD_VALUES = {
    "corpus.block_size=abc": "corpus.block_size",
    "corpus.block_size=3.5": "corpus.block_size",
    "corpus.block_size=true": "corpus.block_size",
    "corpus.block_size=": "corpus.block_size",
    "corpus.block_size=1": "block_size must be at least 2",
    "corpus=5": "'corpus' must be a mapping",
    "finetune.train.lr=fast": "finetune.train.lr",
    "finetune.train.lr=true": "finetune.train.lr",
    "finetune.train.lr=0": "lr must be positive",
    "finetune.train.lr=-1e-5": "lr must be positive",
    "finetune.train.checkpoint_every=2.5": "finetune.train.checkpoint_every",
    "finetune.train.schedule=exponential": "schedule must be",
    "finetune.train.batch_size=0": "batch_size and grad_accum",
    "finetune.loss=medium": "loss must be hard or soft",
    "finetune.retain_weight=-1": "retain_weight must be >= 0",
    "labels.alpha=-1": "alpha must be >= 0",
    "dtype=float16": "dtype must be one of auto, bfloat16, float32",
    "labels.top_k=-1": "top_k",
    "model=[a, b]": "'model'",
    "trust_remote_code=maybe": "trust_remote_code",
}


@pytest.mark.parametrize("assignment", BAD_VALUES)
def test_bad_value_is_an_error_naming_the_setting(assignment):
    with pytest.raises(WhpError) as info:
        load_config(None, [assignment])
    assert BAD_VALUES[assignment] in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_value_in_a_section_names_the_section():
    with pytest.raises(WhpError, match=r"bad setting in finetune\.train: lr must be positive"):
        load_config(None, ["finetune.train.lr=0"])


@pytest.mark.parametrize("assignment", ["no-equals-sign", "corpus.block_size=64"])
def test_set_syntax(assignment):
    data: dict = {}
    if "=" not in assignment:
        with pytest.raises(WhpError, match="key=value"):
            apply_override(data, assignment)
    else:
        apply_override(data, assignment)
        assert data == {"corpus": {"block_size": 64}}


def test_set_through_a_value_is_an_error():
    with pytest.raises(WhpError, match="is not a section"):
        load_config(None, ["corpus.block_size=64", "corpus.block_size.x=1"])


def test_set_value_may_contain_an_equals_sign():
    assert load_config(None, ["model=a=b"]).model == "a=b"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("- a\n- b\n", "must be a mapping"), ("model: [unclosed\n", "cannot parse"), ("42\n", "must be a mapping")],
)
def test_bad_config_file_names_the_file(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    with pytest.raises(WhpError, match=problem) as info:
        load_config(path)
    assert info.value.path == path


def test_missing_config_file_names_the_file(tmp_path):
    with pytest.raises(WhpError, match="does not exist") as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.path == str(tmp_path / "nope.yaml")


def test_empty_config_file_means_defaults(tmp_path):
    assert load_config(write_config(tmp_path, "")) == RunConfig()


# ---- RunConfig.check -----------------------------------------------------------------------------


def test_check_needs_a_model_and_a_target():
    with pytest.raises(WhpError, match="no model"):
        load_config(None, [], target=["t.txt"]).check()
    with pytest.raises(WhpError, match="no target"):
        load_config(None, [], model="base").check()
    load_config(None, [], model="base", target=["t.txt"]).check()


def test_check_soft_loss_needs_top_k():
    with pytest.raises(WhpError, match="labels.top_k"):
        load_config(None, ["finetune.loss=soft"], model="m", target=["t"]).check()
    load_config(None, ["finetune.loss=soft", "labels.top_k=16"], model="m", target=["t"]).check()


# ---- round trips ---------------------------------------------------------------------------------


def test_to_dict_round_trips_through_from_dict_and_yaml(tmp_path):
    cfg = load_config(None, [
        "finetune.train.lr=1e-5", "finetune.loss=soft", "labels.top_k=4", "corpus.keep_tail=true",
        "reinforce.train.lora_config.target_modules=q_proj,v_proj", "anchors=d.yaml",
    ], model="m", target=["a.txt", "b.txt"])
    data = to_dict(cfg)
    assert data["finetune"]["train"]["lr"] == 1e-5 and data["reinforce"]["train"]["lora_config"] == {"target_modules": "q_proj,v_proj"}
    assert data["train"]["lora_config"]["r"] == 16
    assert from_dict(RunConfig, data) == cfg
    write_yaml(tmp_path / "config.yaml", data)  # what a run folder keeps
    assert load_config(tmp_path / "config.yaml") == cfg


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-9, 1.0),
    alpha=st.floats(0, 20),
    block_size=st.integers(2, 4096),
    steps=st.integers(0, 1000),
    loss=st.sampled_from(["hard", "soft"]),
    model=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20),
)
def test_round_trip_property(tmp_path_factory, lr, alpha, block_size, steps, loss, model):
    data = {
        "model": model, "target": ["t.txt"],
        "corpus": {"block_size": block_size},
        "labels": {"alpha": alpha, "top_k": 4 if loss == "soft" else 0},
        "finetune": {"loss": loss, "train": {"lr": lr, "max_steps": steps, "epochs": 1.0}},
    }
    cfg = from_dict(RunConfig, data)
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    write_yaml(path, to_dict(cfg))
    assert load_config(path) == cfg


def test_extraction_settings_enter_the_labels_fingerprint_only_when_extraction_runs():
    from whp.stages import stage_settings

    extracting = RunConfig(model="m", target=["t.txt"])
    given = RunConfig(model="m", target=["t.txt"], anchors="a.yaml")
    assert "extract" in stage_settings(extracting, "labels")
    assert "extract" not in stage_settings(given, "labels")
    assert "extract" not in stage_settings(extracting, "reinforce")


def test_benchmarks_asked_for_run_even_when_metrics_are_listed(tmp_path):
    from whp.cli import _eval_config, make_parser

    base = ["eval", "--model", "m", "--out", str(tmp_path), "--metrics", "retain_perplexity"]
    listed = _eval_config(make_parser().parse_args([*base, "--benchmarks", "whp_arc_easy"]))
    assert listed.metrics == ["retain_perplexity", "benchmarks"] and listed.benchmarks == ["whp_arc_easy"]
    assert _eval_config(make_parser().parse_args(base)).metrics == ["retain_perplexity"]


@pytest.mark.parametrize("overrides", [[], ["labels.top_k=32", "labels.pin_k=8", "finetune.train.lr=5e-4", "target=[a.txt, b.txt]",
                                            "anchors=my dict.yaml"]])
def test_commented_settings_load_back_to_the_same_config(tmp_path, overrides):
    cfg = load_config(None, overrides, model="org/name: x # not a comment")
    text = commented_yaml(cfg)
    assert load_config(write_config(tmp_path, text)) == cfg


def test_every_commented_setting_carries_its_help():
    text = commented_yaml(RunConfig())
    assert "  pin_k: 0  # soft labels: also store" in text
    assert "lora_config:  # LoRA settings" in text
    assert "corpus:  # " in text, "a section without help gets its class's docstring"
    leaves = [line for line in text.splitlines() if not line.rstrip().endswith(":") and "#" not in line]
    assert leaves == [], f"settings without help: {leaves}"


def test_settings_command_prints_chosen_sections_resolved(capsys):
    assert main(["settings", "--set", "labels.alpha=2", "labels"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("labels:") and "  alpha: 2.0  #" in out and "finetune:" not in out
    assert main(["settings", "nonsense"]) == 2
    assert "unknown section 'nonsense'" in capsys.readouterr().err
