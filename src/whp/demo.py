"""`whp demo`: forget Sherlock Holmes in SmolLM2-135M-Instruct, on a CPU, in minutes.

Evaluates the base model, runs the whole pipeline on the built-in corpus (written for this
project) with the built-in dictionary, evaluates the result on the held-out prompts, prints a
before / after table and writes DIR/model/, DIR/summary.json and DIR/report.html.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from whp.anchors.dictionary import load_dictionary
from whp.card import percent_change, update_model_card
from whp.config import load_config
from whp.errors import WhpError
from whp.evaluate.metrics import demo_names
from whp.evaluate.suite import EvalConfig, demo_corpus_files, demo_file, evaluate_model
from whp.files import write_json
from whp.models import demo_model_path
from whp.report import build_report
from whp.stages import open_run, run_unlearn

log = logging.getLogger("whp")

PRESET = "small"

SPLIT_NAMES = {"heldout": "held-out"}  # prompt-file split -> words for people


def demo_run_config(overrides: list[str] = (), anchors: str | None = None):
    """The demo's pipeline configuration: the `small` preset over the built-in inputs.
    `anchors`: a dictionary file instead of the built-in one, or "auto" to have the pipeline
    extract one from the corpus (as `whp unlearn` does without --anchors)."""
    if anchors is None:
        anchors = demo_file("anchors.yaml")
    return load_config(None, overrides, preset=PRESET, model=str(demo_model_path()), target=demo_corpus_files(),
                       anchors=None if anchors == "auto" else str(anchors), retain=[demo_file("retain_train.txt")])


def demo_eval_config(split: str = "heldout", dtype: str = "auto") -> EvalConfig:
    return EvalConfig(metrics=demo_names(), probability_prompts=[demo_file(f"probability_{split}.jsonl")],
                      completion_prompts=[demo_file(f"completion_{split}.jsonl")], dtype=dtype)


def run_demo(out: Path = Path("runs/demo"), overrides: list[str] = (), split: str = "heldout",
             anchors: str | None = None) -> dict:
    out = Path(out)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    base = str(demo_model_path())
    seconds["model_conversion"] = time.perf_counter() - started
    run_cfg = demo_run_config(overrides, anchors)
    if run_cfg.anchors:
        load_dictionary(run_cfg.anchors)  # a bad file fails now, not after the base evaluation
    if out.is_dir() and any(out.iterdir()) and not (out / "run.json").is_file():
        raise WhpError("output folder is not empty and holds no whp run; choose another --out", out)
    open_run(run_cfg, out, overwrite=True)  # stages whose settings changed are redone
    eval_cfg = demo_eval_config(split, run_cfg.dtype)  # measured in the run's own dtype
    log.info("demo 1/3: evaluating the base model")
    tick = time.perf_counter()
    before = evaluate_model(base, "base", eval_cfg, out / "eval")
    seconds["evaluate_base"] = time.perf_counter() - tick
    log.info("demo 2/3: unlearning (reinforce, generic labels, fine-tune)")
    tick = time.perf_counter()
    model = run_unlearn(run_cfg, out, overwrite=True)
    seconds["unlearn"] = time.perf_counter() - tick
    log.info("demo 3/3: evaluating the unlearned model")
    tick = time.perf_counter()
    after = evaluate_model(str(model), "unlearned", eval_cfg, out / "eval")
    seconds["evaluate_unlearned"] = time.perf_counter() - tick
    update_model_card(Path(model), after, f"whp demo, {SPLIT_NAMES.get(split, split)} prompts", before)
    build_report([out / "eval" / "base", out / "eval" / "unlearned"], out / "report.html", "whp demo: who's Sherlock Holmes?")
    seconds["total"] = time.perf_counter() - started
    summary = {name: {"before": before[name], "after": after[name], "change_percent": percent_change(before[name], after[name])}
               for name in demo_names()}
    summary["prompts"] = split
    summary["anchors"] = run_cfg.anchors or "extracted (anchors.yaml)"
    summary["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    write_json(out / "summary.json", summary)
    print(summary_table(summary))
    print(f"model: {model}\nreport: {out / 'report.html'}")
    return summary


def summary_table(summary: dict) -> str:
    lines = [f"{'':28}{'before':>10}{'after':>10}{'change':>10}"]
    for name in demo_names():
        row = summary[name]
        lines.append(f"{name:28}{row['before']:>10.4g}{row['after']:>10.4g}{row['change_percent']:>9.1f}%")
    lines.append(f"{'seconds':28}{summary['seconds']['total']:>10.0f}")
    return "\n".join(lines)
