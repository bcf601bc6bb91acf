"""The one precision policy (whp.precision): each branch forced, its choice, warning and fingerprints."""

from __future__ import annotations

import logging

import pytest
import torch

from whp import precision
from whp.config import RunConfig, load_config
from whp.errors import WhpError
from whp.evaluate.suite import EvalConfig, metric_inputs
from whp.labels import labels_folder
from whp.runs import resolved_dict
from whp.stages import stage_settings


@pytest.fixture
def native(monkeypatch):
    """Force the device's answer: native(True) or native(False)."""

    def force(present: bool) -> None:
        monkeypatch.setattr(precision, "_native", lambda device_type: (present, f"forced {present}"))
        precision.resolve.cache_clear()

    yield force
    precision.resolve.cache_clear()  # the next test resolves under the suite's own policy again


@pytest.mark.parametrize("present, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_native_bf16(native, caplog, present, expected):
    native(present)
    caplog.set_level(logging.INFO, logger="whp")
    assert precision.resolve("auto", "cpu") is expected
    assert precision.resolve("auto", "cpu") is expected
    lines = [r.message for r in caplog.records if r.message.startswith("precision:")]
    assert lines == [f"precision: auto -> {precision.dtype_name(expected)} (forced {present})"]  # logged once


@pytest.mark.parametrize("present", [True, False])
def test_explicit_float32_is_float32(native, present):
    native(present)
    assert precision.resolve("float32", "cpu") is torch.float32


def test_explicit_bfloat16_without_native_support_is_honoured_with_one_warning(native, caplog):
    native(False)
    caplog.set_level(logging.INFO, logger="whp")
    assert precision.resolve("bfloat16", "cpu") is torch.bfloat16
    assert precision.resolve("bfloat16", "cpu") is torch.bfloat16
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "emulates" in warnings[0] and "dtype=auto picks float32" in warnings[0]


def test_explicit_bfloat16_with_native_support_warns_nothing(native, caplog):
    native(True)
    caplog.set_level(logging.INFO, logger="whp")
    assert precision.resolve("bfloat16", "cpu") is torch.bfloat16
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("bad", ["float16", "fp32", "bf16", "half"])
def test_unknown_dtype_names_are_one_line_errors(bad):
    with pytest.raises(WhpError, match="dtype must be one of auto, bfloat16, float32"):
        load_config(None, [f"dtype={bad}"])
    with pytest.raises(WhpError, match="unknown dtype"):
        precision.resolve(bad, "cpu")


def test_x86_flags_decide_on_an_x86_cpu(monkeypatch):
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    for flags, expected in [({"amx_tile"}, True), ({"avx512_bf16"}, True), (set(), False), (None, False)]:
        monkeypatch.setattr(precision, "_x86_cpu_flags", lambda flags=flags: flags)
        native, why = precision.native_bf16("cpu")
        assert native is expected
        assert ("unreadable" in why) is (flags is None)


def test_other_devices_decide_by_a_timed_probe(monkeypatch):
    monkeypatch.setattr(precision.platform, "machine", lambda: "arm64")
    for bf16_seconds, expected in [(0.5, True), (40.0, False)]:
        monkeypatch.setattr(precision, "_probe_seconds", lambda dtype, device, s=bf16_seconds: s if dtype == torch.bfloat16 else 1.0)
        assert precision.native_bf16("cpu")[0] is expected


def test_a_failing_probe_falls_back_to_float32(monkeypatch):
    monkeypatch.setattr(precision.platform, "machine", lambda: "arm64")

    def broken(dtype, device):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(precision, "_probe_seconds", broken)
    native, why = precision.native_bf16("cpu")
    assert not native and "fallback" in why


def test_the_resolved_dtype_enters_run_config_stage_settings_and_label_fingerprints(native, tmp_path):
    cfg = RunConfig(model=str(tmp_path / "no-model"), target=["t.txt"], anchors="a.yaml")
    folders, settings = {}, {}
    for present in (True, False):
        native(present)
        assert resolved_dict(cfg)["dtype"] == ("bfloat16" if present else "float32")
        settings[present] = stage_settings(cfg, "labels")
        folders[present] = labels_folder(cfg, tmp_path, "some text", {"Holmes": ["Turner"]})
    assert settings[True] != settings[False]
    assert folders[True] != folders[False]


def test_the_resolved_dtype_enters_the_metric_cache_key(native, tmp_path):
    cfg = EvalConfig(metrics=["retain_perplexity"])
    keys = set()
    for present in (True, False):
        native(present)
        keys.add(metric_inputs("retain_perplexity", ("retain_text",), str(tmp_path / "no-model"), cfg))
    assert len(keys) == 2
