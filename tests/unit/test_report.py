"""HTML report and model card from evaluation metrics."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whp.card import evaluation_section as card_section
from whp.card import percent_change, update_model_card
from whp.errors import WhpError
from whp.report import load_results, report_html, write_report

SUMMARY = {
    "base": {
        "familiarity_probability": 0.231, "familiarity_completion": 0.412, "retain_perplexity": 18.4,
        "min_k_auc": 0.71, "relearn_familiarity": 0.236, "benchmark_arc_easy": 0.586,
        "benchmark_piqa": 0.683, "judge_agreement": 0.84,
    },
    "unlearned": {
        "familiarity_probability": 0.018, "familiarity_completion": 0.043, "retain_perplexity": 19.9,
        "min_k_auc": 0.56, "relearn_familiarity": 0.142, "benchmark_arc_easy": 0.571,
        "benchmark_piqa": 0.677, "judge_agreement": 0.81,
    },
}  # fmt: skip
NASTY = '<script>alert("x")</script> & Holmes'


def _details() -> dict:
    completions = {"base": NASTY, "unlearned": "a tall man in a grey coat"}
    return {
        model: {
            "familiarity_completion": {
                "metric": "familiarity_completion", "model": model, "value": SUMMARY[model]["familiarity_completion"],
                "prompts": [{"prompt": "The man who called at <221B> was", "completion": completions[model],
                                "grade": 3 if model == "base" else 0, "reason": "names"}],
            },
            "relearn_familiarity": {"metric": "relearn_familiarity", "model": model, "probe_before": 0.2, "probe_after": 0.15},
        }
        for model in SUMMARY
    }  # fmt: skip


@pytest.fixture(scope="module")
def page() -> str:
    return report_html(SUMMARY, _details(), title="Report <test>")


def test_html_names_every_metric_and_model(page):
    for row in SUMMARY.values():
        for metric in row:
            assert metric in page
    for model in SUMMARY:
        assert f"<th>{model}</th>" in page
    assert "lower = forgotten" in page and "higher = kept" in page
    assert "Report &lt;test&gt;" in page


def test_embedded_images_decode_as_png(page):
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # five metric groups (familiarity, memorisation, retained ability, benchmarks, other) + scatter
    assert len(images) == 6
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_completions_side_by_side_are_escaped(page):
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Holmes" in page
    assert "The man who called at &lt;221B&gt; was" in page
    assert "a tall man in a grey coat" in page


def test_report_without_scatter_inputs(tmp_path):
    out = write_report({"m": {"something_new": 1.5}}, {}, tmp_path / "r.html")
    text = out.read_text()
    assert "something_new" in text and "1.500" in text
    assert text.count("data:image/png;base64,") == 1


def test_empty_summary_is_an_error(tmp_path):
    with pytest.raises(WhpError, match="no metrics"):
        write_report({}, {}, tmp_path / "r.html")


def _write_folder(folder, model, row, details):
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({model: row}))
    for metric, value in row.items():
        record = {"metric": metric, "model": model, "value": value, "seconds": 1.0, **details.get(metric, {})}
        (folder / f"{metric}.json").write_text(json.dumps(record))


def test_load_results_merges_folders(tmp_path):
    details = _details()
    for model in SUMMARY:
        _write_folder(tmp_path / model, model, SUMMARY[model], details[model])
    summary, loaded = load_results([tmp_path / "base", tmp_path / "unlearned"])
    assert summary == SUMMARY
    assert loaded["base"]["familiarity_completion"]["prompts"][0]["completion"] == NASTY
    assert loaded["unlearned"]["benchmark_piqa"]["value"] == 0.677


def test_load_results_names_missing_summary(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(WhpError) as info:
        load_results([tmp_path / "run"])
    assert info.value.path == str(tmp_path / "run" / "metrics.json")


def test_card_section_lists_every_metric_with_its_direction():
    section = card_section(SUMMARY["unlearned"], "whp eval")
    assert section.startswith("## Evaluation (whp eval)\n\n| metric | value | direction |")
    for metric in SUMMARY["unlearned"]:
        assert re.search(rf"^\| {metric} \| [0-9.]+ \| ", section, re.MULTILINE)
    assert "| familiarity_probability | 0.018 | lower = forgotten |" in section


def test_card_section_beside_the_base_model_shows_the_change():
    section = card_section({"familiarity_probability": 0.05, "retain_perplexity": 11.0, "extra": 1.0}, "whp demo",
                           before={"familiarity_probability": 0.2, "retain_perplexity": 10.0})
    assert "| familiarity_probability | 0.200 | 0.050 | -75.0 % | lower = forgotten |" in section
    assert "| retain_perplexity | 10.00 | 11.00 | +10.0 % |" in section
    assert "| extra | — | 1.000 | — |" in section  # no base value: no change either


@given(st.one_of(st.none(), st.floats()), st.one_of(st.none(), st.floats()))
def test_percent_change_is_nan_exactly_when_undefined(before, after):
    change = percent_change(before, after)
    defined = before is not None and after is not None and math.isfinite(before) and math.isfinite(after) and before != 0
    assert math.isnan(change) != defined
    if defined and math.isfinite(change):
        assert math.isclose(before * (1 + change / 100), after, rel_tol=1e-9, abs_tol=1e-12 * abs(before))


def test_model_card_section_is_replaced_not_repeated(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Unlearned model (whp 0.1.0)\n\nMade with `whp unlearn`.\n")
    update_model_card(tmp_path, SUMMARY["unlearned"])
    update_model_card(tmp_path, SUMMARY["unlearned"], "whp demo, heldout prompts", before=SUMMARY["base"])
    text = card.read_text()
    assert text.startswith("# Unlearned model (whp 0.1.0)\n\nMade with `whp unlearn`.\n\n## Evaluation (whp demo")
    assert text.count("## Evaluation (") == 1
    assert "| familiarity_probability | 0.231 | 0.018 | -92.2 % | lower = forgotten |" in text


def test_model_card_of_another_tool_is_left_alone(tmp_path):
    (tmp_path / "README.md").write_text("# Someone else's model\n")
    update_model_card(tmp_path, SUMMARY["unlearned"])
    assert (tmp_path / "README.md").read_text() == "# Someone else's model\n"


def test_odd_values_still_render():
    """Infinite perplexity, NaN, a string, a missing metric and many unknown metrics: no crash."""
    summary = {
        "a": {"retain_perplexity": float("inf"), "familiarity_probability": float("nan"), "note": "n/a"},
        "b": {"retain_perplexity": 20.0, **{f"extra_{i}": i / 10 for i in range(9)}},
    }
    page = report_html(summary, {})
    assert "inf" in page and "nan" in page and "n/a" in page and "extra_8" in page
    assert page.count("data:image/png;base64,") == 3  # familiarity, retained ability, other; no scatter point


def test_runs_table_names_methods_compute_and_changes():
    runs = {"base": {"method": "baseline"},
            "unlearned": {"method": "npo", "steps": 40, "trained_tokens": 40800, "seconds": 312.5}}
    page = report_html(SUMMARY, _details(), runs=runs)
    table = page.split("<h2>Methods side by side</h2>")[1].split("</table>")[0]
    assert "npo" in table and "baseline" in table and "40800" in table.replace(",", "")
    assert "(-92.2 %)" in table  # familiarity_probability 0.231 → 0.018
    assert "(+8.2 %)" in table  # retain_perplexity 18.4 → 19.9
    assert "(-1.7 %)" in table  # mean benchmark accuracy 0.6345 → 0.624
    assert page.count("data:image/png;base64,") >= 2


def test_scatter_groups_a_sweep_and_names_its_points():
    from whp.plots import _point_name, familiarity_scatter

    assert _point_name("npo_lr1e-4-s80", "npo_lr1e-4") == "s80"
    assert _point_name("npo", "npo") == ""
    assert _point_name("base", "baseline") == "base"
    summary = {"base": SUMMARY["base"], **{f"ga-s{k}": {**SUMMARY["unlearned"], "retain_perplexity": 19 + k} for k in (1, 2, 3)}}
    fig = familiarity_scatter(summary, {"base": "baseline", **{f"ga-s{k}": "ga" for k in (1, 2, 3)}})
    perplexity_axis = fig.axes[0]
    assert perplexity_axis.get_xscale() == "log"
    lines = {line.get_label(): line for line in perplexity_axis.get_lines()}
    assert list(lines["ga"].get_xdata()) == [20, 21, 22] and len(lines["baseline"].get_xdata()) == 1
    assert {t.get_text() for t in perplexity_axis.texts} == {"base", "s1", "s2", "s3"}


def test_relearning_curves_are_plotted_and_skipped_metrics_named():
    curve = {"steps": [0, 10, 50], "probe": [0.05, 0.12, 0.2]}
    details = {"base": {"relearn_curve": {"curves": {"full": curve, "lora": curve}}},
               "unlearned": {"chat_completion": {"value": None, "skipped": "the tokenizer has no chat template"}}}
    summary = {"base": {"relearn_curve": 0.2, "chat_completion": 1.4}, "unlearned": {"relearn_curve": 0.05, "chat_completion": None}}
    page = report_html(summary, details)
    assert "Robustness (attacks)" in page and "Familiarity along the relearning attack" in page
    assert "chat_completion for unlearned: the tokenizer has no chat template" in page
    assert "Familiarity along the relearning attack" not in report_html(SUMMARY, _details())
