"""Evaluation metrics → a self-contained HTML report with plots.

An evaluation writes one folder per run: `<metric>.json` per metric (`{"metric", "model",
"value", "seconds", ...details}`) and `metrics.json`, the summary `{model_label: {metric: value}}`.
`load_results` merges any number of such folders; `write_report` turns the merged summary and
details into one HTML file (table, bar charts, familiarity-vs-ability scatter, side-by-side
completions), images embedded as base64 PNG so the file can be mailed or opened offline.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable

from matplotlib.figure import Figure

from whp.card import percent_change
from whp.errors import WhpError
from whp.evaluate.metrics import (
    direction,
    fmt,
    headline_names,
)
from whp.files import atomic_write_bytes
from whp.plots import (
    familiarity_scatter,
    group_figures,
    grouped_metrics,
    mean_benchmark_accuracy,
    png,
    relearn_curve_figure,
)

Summary = dict[str, dict[str, float]]  # model label → metric → value
Details = dict[str, dict[str, dict]]  # model label → metric → that metric's JSON
Runs = dict[str, dict]  # model label → the run that made it: {"method", "steps", "trained_tokens", "seconds"} (whp compare)

DEFAULT_TITLE = "whp evaluation report"


# ---- reading evaluation folders -------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WhpError("evaluation output file does not exist", path) from None
    except json.JSONDecodeError as exc:
        raise WhpError(f"not valid JSON: {exc}", path) from None


def _read_folder(folder: Path) -> tuple[Summary, Details]:
    """One evaluation folder: its metrics.json summary and every `<metric>.json` beside it."""
    summary = _read_json(folder / "metrics.json")
    if not isinstance(summary, dict) or not all(isinstance(row, dict) for row in summary.values()):
        raise WhpError("expected {model_label: {metric: value}}", folder / "metrics.json")
    only_model = next(iter(summary)) if len(summary) == 1 else None
    details: Details = {}
    for path in sorted(folder.glob("*.json")):
        if path.name == "metrics.json":
            continue
        record = _read_json(path)
        if not isinstance(record, dict):
            raise WhpError("expected a JSON object", path)
        model = record.get("model", only_model)
        if model is None:
            raise WhpError("metric file names no model", path)
        details.setdefault(model, {})[record.get("metric", path.stem)] = record
    return summary, details


def load_results(folders: Iterable[str | Path]) -> tuple[Summary, Details]:
    """Merge evaluation folders (in order; a later folder's value wins) into summary and details."""
    summary: Summary = {}
    details: Details = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise WhpError("evaluation folder does not exist", folder)
        folder_summary, folder_details = _read_folder(folder)
        for model, row in folder_summary.items():
            summary.setdefault(model, {}).update(row)
        for model, rows in folder_details.items():
            details.setdefault(model, {}).update(rows)
    return summary, details


# ---- metric bookkeeping ---------------------------------------------------------------------


def _relearn_pair(record: dict) -> tuple[Any, Any] | None:
    """(before, after) of a relearning record."""
    before, after = record.get("probe_before"), record.get("probe_after")
    return None if before is None and after is None else (before, after)


def _per_prompt(record: dict) -> list[dict]:
    """familiarity_completion's per-prompt rows."""
    rows = record.get("prompts")
    return rows if isinstance(rows, list) else []


# ---- HTML -----------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; vertical-align: top; }
th { background: #f2f4f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.dir { color: #555; font-size: 0.9em; white-space: nowrap; }
tr.group th { background: #e4e9f2; }
.delta { color: #777; font-size: 0.85em; }
.grade { display: inline-block; min-width: 1.4em; text-align: center; border-radius: 3px;
         color: #fff; font-weight: bold; margin-right: 4px; }
.g0 { background: #55a868; } .g1 { background: #8c8c8c; } .g2 { background: #dd8452; }
.g3 { background: #c44e52; } .gnone { background: #bbb; }
td.completion { max-width: 420px; white-space: pre-wrap; font-size: 0.88em; }
img { max-width: 100%; display: block; margin: 8px 0 16px; }
.top { display: flex; gap: 32px; align-items: flex-start; flex-wrap: wrap; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))  # quotes too: values also land in attributes


def _table(head: list[str], rows: list[str]) -> str:
    """An HTML table from header labels (escaped here) and ready-made <tr> rows."""
    header = "".join(f"<th>{_esc(label)}</th>" for label in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _num(value: Any, extra: str = "") -> str:
    return f'<td class="num">{_esc(fmt(value))}{extra}</td>'


def _delta(value: Any, reference: Any) -> str:
    """The change from the reference model's value, as a small grey suffix ('' when not numeric)."""
    if not isinstance(value, (int, float)) or not isinstance(reference, (int, float)):
        return ""
    return f' <span class="delta">({value - reference:+.3f})</span>'


def metrics_table_html(summary: Summary) -> str:
    """Rows = metrics under group headings; columns = direction, then one per model, the others
    with their change from the first model."""
    models = list(summary)
    rows = []
    for heading, metrics in grouped_metrics(summary).items():
        rows.append(f'<tr class="group"><th colspan="{len(models) + 2}">{_esc(heading)}</th></tr>')
        for metric in metrics:
            values = [summary[m].get(metric) for m in models]
            cells = "".join(_num(v, _delta(v, values[0]) if i else "") for i, v in enumerate(values))
            rows.append(f'<tr><td>{_esc(metric)}</td><td class="dir">{_esc(direction(metric))}</td>{cells}</tr>')
    note = f"<p>Changes in brackets are against the first model, <b>{_esc(models[0])}</b>.</p>"
    return _table(["metric", "direction", *models], rows) + (note if len(models) > 1 else "")


def relearn_table_html(details: Details) -> str:
    """Familiarity before and after the relearning attack, per model ('' when no model has one)."""
    pairs = {m: _relearn_pair(records.get("relearn_familiarity", {})) for m, records in details.items()}
    rows = [f"<tr><td>{_esc(m)}</td>{_num(p[0])}{_num(p[1])}</tr>" for m, p in pairs.items() if p is not None]
    if not rows:
        return ""
    intro = "<h2>Relearning attack</h2><p>Familiarity that comes back after a few fine-tuning steps on target text.</p>"
    return intro + _table(["model", "familiarity before attack", "after attack"], rows)


def relearn_curve_html(details: Details) -> str:
    """Familiarity against relearning steps, every model's curves in one plot ('' when no model has one)."""
    curves = {m: records["relearn_curve"]["curves"] for m, records in details.items()
              if "curves" in records.get("relearn_curve", {})}
    fig = relearn_curve_figure(curves)
    if fig is None:
        return ""
    caption = "Familiarity along the relearning attack"
    return (f"<h2>{caption}</h2><p>Probability familiarity after each number of fine-tuning steps on target text "
            f"the model never trained on: solid, every weight; dashed, a LoRA adapter.</p>{_img(caption, fig)}")


def skipped_html(details: Details) -> str:
    """The metrics that did not apply to a model, with the reason ('' when none)."""
    rows = [f"<li>{_esc(metric)} for {_esc(model)}: {_esc(record['skipped'])}</li>"
            for model, records in details.items() for metric, record in records.items() if record.get("skipped")]
    return f"<p>Not measured (—):</p><ul>{''.join(rows)}</ul>" if rows else ""


def _completion_cell(row: dict | None) -> str:
    """A completion with its judge grade as a coloured badge and the judge's reason on hover."""
    if row is None:
        return '<td class="completion">—</td>'
    grade = row.get("grade")
    css = f"g{grade}" if grade in (0, 1, 2, 3) else "gnone"
    badge = f'<span class="grade {css}">{_esc("?" if grade is None else grade)}</span>'
    reason = _esc(row.get("reason") or "")
    return f'<td class="completion" title="{reason}">{badge}{_esc(row.get("completion", ""))}</td>'


def completions_html(details: Details, max_prompts: int = 8) -> str:
    """Side-by-side completions of every model for the first model's familiarity prompts, escaped."""
    per_prompt = {m: _per_prompt(records.get("familiarity_completion", {})) for m, records in details.items()}
    by_model = {m: {row.get("prompt"): row for row in rows} for m, rows in per_prompt.items() if rows}
    if not by_model:
        return ""
    models = list(by_model)
    prompts = [p for p in by_model[models[0]] if p is not None][:max_prompts]
    rows = [
        f'<tr><td class="completion">{_esc(p)}</td>{"".join(_completion_cell(by_model[m].get(p)) for m in models)}</tr>'
        for p in prompts
    ]
    intro = (
        "<h2>Completions side by side</h2><p>Judge grade 0–3 in the badge "
        "(3 = details unique to the target; hover for the reason).</p>"
    )
    return intro + _table(["prompt", *models], rows)


def _img(caption: str, fig: Figure) -> str:
    return f'<img alt="{_esc(caption)}" src="data:image/png;base64,{png(fig)}">'


def _scatter_html(summary: Summary, methods: dict[str, str] | None = None) -> str:
    fig = familiarity_scatter(summary, methods)
    if fig is None:
        return ""
    caption = "Familiarity against general ability"
    return f"<div><h2>{caption}</h2><p>Best: low (forgotten) and on the 'kept' side.</p>{_img(caption, fig)}</div>"



def _change(value: Any, reference: Any) -> str:
    change = percent_change(reference, value)
    return "" if math.isnan(change) else f' <span class="delta">({change:+.1f} %)</span>'


def runs_table_html(summary: Summary, runs: Runs) -> str:
    """One row per model: its method, the compute its run used, and the headline metrics with their
    change from the first model (the baseline), in per cent."""
    reference = summary[next(iter(summary))]
    columns = [m for m in headline_names() if any(m in row for row in summary.values())]
    accuracy = {m: mean_benchmark_accuracy(row) for m, row in summary.items()}
    rows = []
    for model, row in summary.items():
        run = runs.get(model, {})
        budget = "".join(_num(run.get(key)) for key in ("steps", "trained_tokens", "seconds"))
        cells = "".join(_num(row.get(m), _change(row.get(m), reference.get(m))) for m in columns)
        if any(a is not None for a in accuracy.values()):
            cells += _num(accuracy[model], _change(accuracy[model], accuracy[next(iter(summary))]))
        rows.append(f"<tr><td>{_esc(model)}</td><td>{_esc(run.get('method', '—'))}</td>{budget}{cells}</tr>")
    head = ["model", "method", "training steps", "trained tokens", "seconds", *columns]
    head += ["mean benchmark accuracy"] if any(a is not None for a in accuracy.values()) else []
    note = ("<p>Trained tokens: tokens that went through a forward and backward pass (every training stage); "
            "seconds: the run's wall time. Changes in brackets are against the first model.</p>")
    return "<h2>Methods side by side</h2>" + _table(head, rows) + note


def report_html(summary: Summary, details: Details, title: str = DEFAULT_TITLE, runs: Runs | None = None) -> str:
    """The whole report as one HTML string, images inlined: table and scatter side by side on
    top, then a bar chart per metric group, the relearning curve, then completions side by side.
    With `runs` (whp compare), a methods table comes first and the scatter groups points by method."""
    if not summary:
        raise WhpError("no metrics to report")
    plots = "".join(f"<h3>{_esc(group)}</h3>{_img(group, fig)}" for group, fig in group_figures(summary))
    methods = {model: run["method"] for model, run in runs.items() if "method" in run} if runs else None
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>"
        f"<p>Models: {', '.join(_esc(m) for m in summary)}.</p>"
        f"{runs_table_html(summary, runs) if runs else ''}"
        f'<div class="top"><div><h2>Metrics</h2>{metrics_table_html(summary)}{skipped_html(details)}'
        f"{relearn_table_html(details)}</div>{_scatter_html(summary, methods)}</div>"
        f"<h2>Metrics by group</h2>{plots}{relearn_curve_html(details)}{completions_html(details)}</body></html>\n"
    )


def write_report(summary: Summary, details: Details, out_path: str | Path, title: str = DEFAULT_TITLE,
                 runs: Runs | None = None) -> Path:
    """Write the HTML report (atomically) and return its path."""
    out_path = Path(out_path)
    atomic_write_bytes(out_path, report_html(summary, details, title, runs).encode("utf-8"))
    return out_path


def build_report(folders: Iterable[str | Path], out_path: str | Path, title: str = DEFAULT_TITLE,
                 runs: Runs | None = None) -> Path:
    """Evaluation folders → HTML report in one call."""
    summary, details = load_results(folders)
    return write_report(summary, details, out_path, title, runs)
