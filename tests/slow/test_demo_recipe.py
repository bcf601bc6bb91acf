"""The demo's recipe (the `small` preset) on the real SmolLM2-135M-Instruct: it must still meet
the demo's forgetting targets on the held-out prompts (minutes: `make test-slow`)."""

from __future__ import annotations

import pytest

from whp.demo import run_demo

pytestmark = pytest.mark.slow


def test_the_demo_recipe_forgets_and_keeps(tmp_path):
    summary = run_demo(tmp_path / "demo", overrides=["dtype=float32"])
    change = {name: row["change_percent"] for name, row in summary.items() if isinstance(row, dict) and "change_percent" in row}
    assert change["familiarity_probability"] <= -80
    assert change["familiarity_completion"] <= -80
    assert change["retain_perplexity"] <= 10
    assert change["side_effect_probability"] >= -15
