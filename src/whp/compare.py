"""`whp compare`: the models of several runs (any method) and their baseline, measured alike, in
one report.

Each RUN_DIR is a finished `whp unlearn` folder (its `model/`, `config.yaml` and `run.json`).
Every model, and the baseline the runs were made from, goes through the same metrics of
`whp.evaluate.suite` (a metric already in OUT for the same model, settings and files is reused),
then OUT/compare.json and OUT/report.html gather them: a table of method, compute and headline
changes per run, every metric per model, and familiarity against general ability with each
method's runs joined into a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from whp.errors import WhpError
from whp.evaluate.suite import EvalConfig, evaluate_model, model_label
from whp.files import read_json, write_json
from whp.report import build_report

BASELINE = "baseline"  # the method name the baseline's row carries


@dataclass
class Run:
    folder: Path
    method: str
    baseline: str  # the model the run started from (its config's `model`)
    facts: dict  # steps, trained_tokens, seconds


def run_budget(record: dict) -> dict:
    """Compute a run used, from its run.json: optimizer steps and forward+backward tokens over its
    training stages (those with steps), and wall seconds over all stages."""
    stages = record.get("stages", {}).values()
    trained = [stage for stage in stages if "steps" in stage]
    return {
        "steps": sum(stage["steps"] for stage in trained),
        "trained_tokens": sum(stage.get("tokens", 0) for stage in trained),
        "seconds": round(sum(stage.get("seconds", 0.0) for stage in stages), 1),
    }


def read_run(folder: str | Path) -> Run:
    """A finished run folder, or a WhpError naming what is missing."""
    folder = Path(folder)
    for name in ("model", "config.yaml", "run.json"):
        if not (folder / name).exists():
            raise WhpError(f"not a finished whp run (no {name}); run `whp unlearn --out {folder}` first", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    record = read_json(folder / "run.json")
    return Run(folder, record.get("method", config.get("method", "whp")), config.get("model", ""), run_budget(record))


def compare(run_folders: list[str | Path], cfg: EvalConfig, out: Path, baseline: str | None = None,
            title: str = "whp compare: unlearning methods side by side") -> dict[str, dict[str, float]]:
    """Evaluate the baseline and every run's model; write OUT/metrics.json, OUT/compare.json and
    OUT/report.html. Returns {label: {metric: value}}, the baseline first."""
    runs = [read_run(folder) for folder in run_folders]
    if baseline is None:
        baselines = sorted({run.baseline for run in runs})
        if len(baselines) != 1:
            raise WhpError(f"the runs start from different models ({', '.join(baselines)}); choose one with --baseline")
        baseline = baselines[0]
    out = Path(out)
    labels = {"base"}
    table = {"base": {"method": BASELINE, "model": baseline}}
    summary = {"base": evaluate_model(baseline, "base", cfg, out)}
    for run in runs:
        label = model_label(str(run.folder / "model"), labels)
        labels.add(label)
        table[label] = {"method": run.method, "run": str(run.folder), **run.facts}
        summary[label] = evaluate_model(str(run.folder / "model"), label, cfg, out)
    write_json(out / "metrics.json", summary)
    write_json(out / "compare.json", {label: {**table[label], "metrics": summary[label]} for label in summary})
    build_report([out / label for label in summary], out / "report.html", title, runs=table)
    return summary
