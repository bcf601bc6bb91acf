"""Stages, methods and metrics are declared once: what reads the registries agrees with them."""

from __future__ import annotations

import dataclasses

import pytest

from whp.cli import make_parser
from whp.config import PRESETS, RunConfig, load_config, preset_path
from whp.evaluate.metrics import (
    METRICS,
    ROBUST,
    STANDARD,
    SUITES,
    demo_names,
    headline_names,
    reported_by,
)
from whp.evaluate.suite import EvalConfig
from whp.methods import LOSS_METHODS
from whp.stages import METHODS, STAGES


def test_every_method_section_is_a_setting_of_the_run_and_every_loss_method_a_method():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for method in METHODS.values():
        assert set(method.sections) <= fields, method.name
    for name, loss in LOSS_METHODS.items():
        assert [s.name for s in METHODS[name].stages] == [name] and METHODS[name].sections == {name: loss.config}


def test_every_stage_writes_somewhere_and_trains_with_a_section_it_reads():
    for stage in STAGES.values():
        assert stage.outputs, stage.name
        if stage.trains:
            assert stage.trains in stage.settings, stage.name
            assert "train" in {f.name for f in dataclasses.fields(RunConfig().__getattribute__(stage.trains))}


def test_method_choices_on_the_command_line_are_the_registry():
    parser = make_parser()
    unlearn = next(a for a in parser._subparsers._group_actions[0].choices["unlearn"]._actions if a.dest == "method")
    assert list(unlearn.choices) == list(METHODS)


def test_suite_choices_on_the_command_line_are_the_registry():
    parser = make_parser()
    for command in ("eval", "compare"):
        suite = next(a for a in parser._subparsers._group_actions[0].choices[command]._actions if a.dest == "suite")
        assert tuple(suite.choices) == SUITES


def test_each_training_stage_gets_the_shared_block_with_its_own_overrides():
    cfg = load_config(None, ["train.weight_decay=0.1", "finetune.train.lr=2e-5", "train.lora_config.r=8"])
    for section in ("reinforce", "finetune", *LOSS_METHODS):
        assert cfg.train_for(section).weight_decay == 0.1, "the shared block reaches every stage"
        assert cfg.train_for(section).lora_config.r == 8
    assert cfg.train_for("finetune").lr == 2e-5 and cfg.train_for("reinforce").lr == 1e-4


def test_presets_load_and_the_paper_preset_is_the_defaults():
    assert load_config(None, preset="paper") == dataclasses.replace(RunConfig(), preset="paper")
    small = load_config(None, preset="small")
    assert small.preset == "small" and small.finetune.loss == "soft" and small.train_for("finetune").lora
    assert load_config(None, ["finetune.train.max_steps=7"], preset="small").train_for("finetune").max_steps == 7, \
        "--set goes over the preset"
    for name in PRESETS:
        assert preset_path(name).is_file()


def test_metrics_read_only_settings_that_exist_and_report_distinct_names():
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    names = [n for m in METRICS.values() for n in (m.reports or (m.name,))]
    assert len(names) == len(set(names))
    for metric in METRICS.values():
        assert set(metric.settings) <= fields, metric.name
        assert set(metric.models) <= set(metric.settings) and metric.suite in (STANDARD, ROBUST), metric.name
    assert set(demo_names()) | set(headline_names()) <= set(names)
    assert all(METRICS[reported_by(n).name].suite == STANDARD for n in [*demo_names(), *headline_names()])
    assert all(reported_by(n) is not None for n in names)


@pytest.mark.parametrize("name", ["familiarity_probability", "min_k_auc", "retain_perplexity"])
def test_each_summary_value_has_a_direction(name):
    assert reported_by(name).direction
