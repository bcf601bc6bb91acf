"""The report's figures (matplotlib, no display): bar charts per metric group, benchmark bars,
familiarity against general ability (one colour per method in `whp compare`), and familiarity
along the relearning attack."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from whp.evaluate.metrics import (
    BENCHMARK_GROUP,
    BENCHMARK_PREFIX,
    FORGET_AUC,
    KEEP_HIGHER,
    direction,
    finite,
    fmt,
    group,
    ordered,
)

Summary = dict[str, dict[str, float]]  # model label → metric → value
FAMILIARITY_FOR_SCATTER = ("familiarity_probability", "familiarity_completion")


def grouped_metrics(summary: Summary) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for metric in ordered(name for row in summary.values() for name in row):
        groups.setdefault(group(metric), []).append(metric)
    return groups


def mean_benchmark_accuracy(row: dict[str, float]) -> float | None:
    values = [v for m, v in row.items() if m.startswith(BENCHMARK_PREFIX) and finite(v)]
    return sum(values) / len(values) if values else None


def png(fig: Figure) -> str:
    """A figure as a base64 PNG (no pyplot: figures are plain objects, the Agg canvas draws)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _colours(models: list[str]) -> dict[str, str]:
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    return {model: palette[i % len(palette)] for i, model in enumerate(models)}


def _height(value: Any) -> float:
    """A bar height: the value when it is a finite number, else 0 (the label still says '—' or 'inf')."""
    return float(value) if finite(value) else 0.0


def _small_multiples(summary: Summary, metrics: list[str], per_row: int = 4) -> Figure:
    """One bar chart per metric (each on its own scale, up to `per_row` a row), one bar per model."""
    models = list(summary)
    colours = list(_colours(models).values())
    ncols = min(per_row, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(3.1 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        values = [summary[m].get(metric) for m in models]
        ax.bar(range(len(models)), [_height(v) for v in values], color=colours)
        for x, value in enumerate(values):
            ax.annotate(fmt(value), (x, _height(value)), ha="center", va="bottom", fontsize=8)
        way = direction(metric)
        if way == FORGET_AUC:
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_title(metric if way == "—" else f"{metric}\n({way})", fontsize=9)
        ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
        ax.margins(y=0.15)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    return fig


def _benchmark_bars(summary: Summary, metrics: list[str]) -> Figure:
    """Grouped bars: one group per benchmark, one bar per model, all on the accuracy scale."""
    models = list(summary)
    colours = _colours(models)
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(6.0, 1.1 * len(metrics) + 2), 3.4), layout="constrained")
    ax = fig.subplots()
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, [_height(summary[model].get(m)) for m in metrics], width, label=model, color=colours[model])
    ax.set_xticks(range(len(metrics)), [m.removeprefix(BENCHMARK_PREFIX) for m in metrics], rotation=20, fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(KEEP_HIGHER, fontsize=9)
    return fig


def _scatter_panels(summary: Summary, familiarity: str) -> list[tuple[str, dict[str, tuple[float, float]]]]:
    """(x label, {model: (x, familiarity)}) for retain perplexity and mean benchmark accuracy,
    keeping models with both numbers finite and panels with at least one such model."""
    abilities = {
        "retain perplexity (lower = kept)": {m: row.get("retain_perplexity") for m, row in summary.items()},
        "mean benchmark accuracy (higher = kept)": {m: mean_benchmark_accuracy(row) for m, row in summary.items()},
    }
    panels = []
    for label, xs in abilities.items():
        points = {m: (x, summary[m].get(familiarity)) for m, x in xs.items()}
        points = {m: xy for m, xy in points.items() if finite(xy[0]) and finite(xy[1])}
        if points:
            panels.append((label, points))
    return panels


def _point_name(model: str, group: str | None) -> str:
    """A point's annotation: the model's label, less its method's name when that prefixes it
    ("npo_lr1e-4-s80" in sweep "npo_lr1e-4" → "s80"; a run named like its method → no text)."""
    if group is None or not model.startswith(group):
        return model
    return model[len(group) :].strip("-_ ")


def familiarity_scatter(summary: Summary, methods: dict[str, str] | None = None) -> Figure | None:
    """Familiarity (y) against general ability (x), one labelled point per model; None if unplottable.
    With `methods` (model → method), points are coloured by method and each method's points
    (a sweep) joined by a line in the order given. Perplexity is on a log scale."""
    familiarity = next((m for m in FAMILIARITY_FOR_SCATTER if any(m in row for row in summary.values())), None)
    panels = _scatter_panels(summary, familiarity) if familiarity else []
    if not panels:
        return None
    group_of = methods or {model: model for model in summary}
    colours = _colours(list(dict.fromkeys(group_of.get(m, m) for m in summary)))
    fig = Figure(figsize=(6.0, 3.6 * len(panels)), layout="constrained")
    for ax, (label, points) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        groups: dict[str, list[tuple[float, float, str]]] = {}
        for model, (x, y) in points.items():
            groups.setdefault(group_of.get(model, model), []).append((x, y, model))
        for method, members in groups.items():
            ax.plot([x for x, _, _ in members], [y for _, y, _ in members], "-o", ms=7, color=colours[method],
                    label=method if methods else None)
            for x, y, model in members:
                name = _point_name(model, method if methods else None)
                if name:
                    ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8 if methods else 9)
        if label.startswith("retain perplexity"):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))  # 10 15 20 30 50 70 100 ...
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # not 1.2×10¹ crowding a narrow range
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"{familiarity} (lower = forgotten)")
        ax.margins(0.25)
        ax.grid(alpha=0.3)
        if methods:
            ax.legend(fontsize=8)
    return fig


RELEARN_LINES = {"full": "-", "lora": "--"}  # line style of each relearning attack


def relearn_curve_figure(curves: dict[str, dict[str, dict]]) -> Figure | None:
    """Probability familiarity (y) against relearning steps (x), one colour per model, a solid line
    for the full fine-tune and a dashed one for LoRA. `curves`: {model: {mode: {"steps", "probe"}}}
    (the relearn_curve record's "curves"); None when there is none."""
    if not curves:
        return None
    colours = _colours(list(curves))
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for model, modes in curves.items():
        for mode, curve in modes.items():
            ax.plot(curve["steps"], curve["probe"], RELEARN_LINES.get(mode, ":"), marker="o", ms=5,
                    color=colours[model], label=f"{model} ({mode})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("fine-tuning steps on held-out target text")
    ax.set_ylabel("probability familiarity (lower = forgotten)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def group_figures(summary: Summary) -> list[tuple[str, Figure]]:
    """(group name, bar-chart figure) for every metric group present."""
    return [
        (heading, _benchmark_bars(summary, metrics) if heading == BENCHMARK_GROUP else _small_multiples(summary, metrics))
        for heading, metrics in grouped_metrics(summary).items()
    ]


