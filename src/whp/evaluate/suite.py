"""`whp eval`: run the metrics of whp.evaluate.metrics on one or more models, one JSON per
metric, a summary and a report.

Output folder layout:
    OUT/<label>/<metric>.json   one file per metric and model (a finished one is not recomputed)
    OUT/<label>/metrics.json    {label: {metric: value}}
    OUT/metrics.json            every model's summary
    OUT/report.html             tables, plots, side-by-side completions
Each metric record carries the fingerprint of its own inputs (the model's weights, the dtype,
the settings and files that metric reads, the evaluation code); a record whose inputs are
unchanged is reused, from the output folder or from this machine's metric cache
(WHP_CACHE/metrics), so a base model evaluated before is not measured again. A model folder
made by `whp unlearn` also gets the numbers in its model card (whp.card).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from whp import distributed, precision
from whp.card import update_model_card
from whp.common import file_hash, fingerprint
from whp.evaluate.judges import JudgeError
from whp.evaluate.metrics import (
    BENCHMARK_PREFIX,
    BENCHMARKS,
    METRICS,
    STANDARD,
    SUITES,
    Metric,
    ordered,
    suite_metrics,
)
from whp.evaluate.relearn_curve import MODES
from whp.files import read_json, write_json
from whp.inference import any_model_identity, load_any_model
from whp.models import cache_dir, load_tokenizer, resolve_model_path, tokenizer_identity

log = logging.getLogger("whp")


def demo_file(name: str) -> str:
    """A file of the built-in Sherlock Holmes set (prompts, texts) shipped in the package."""
    return str(resources.files("whp") / "data" / "demo" / name)


def robust_file(name: str) -> str:
    """A file of the built-in set for the robustness metrics (passages, translations, prefixes)."""
    return demo_file(f"robust/{name}")


LANGUAGES = ("fr", "es", "de")  # the built-in translations of the held-out prompts


def demo_corpus_files() -> list[str]:
    folder = resources.files("whp") / "data" / "demo" / "corpus"
    return sorted(str(folder / name.name) for name in folder.iterdir() if name.name.endswith(".txt"))


@dataclass
class EvalConfig:
    """What `whp eval` measures and on which files (defaults: the built-in Sherlock Holmes set)."""

    probability_prompts: list[str] = field(default_factory=lambda: [demo_file("probability_heldout.jsonl")], metadata={"help": "prompts whose next word reveals the target"})
    completion_prompts: list[str] = field(default_factory=lambda: [demo_file("completion_heldout.jsonl")], metadata={"help": "prompts to complete, with reference terms"})
    side_effect_probability: list[str] = field(default_factory=lambda: [demo_file("side_effect_probability.jsonl")], metadata={"help": "probability prompts of related domains that must be kept"})
    side_effect_completion: list[str] = field(default_factory=lambda: [demo_file("side_effect_completion.jsonl")], metadata={"help": "completion prompts of related domains that must be kept"})
    retain_text: list[str] = field(default_factory=lambda: [demo_file("retain.txt")], metadata={"help": "general text for perplexity (and MIA non-members)"})
    target_text: list[str] = field(default_factory=demo_corpus_files, metadata={"help": "target text for memorisation, MIA members and the relearning slice"})
    qa: str | None = field(default_factory=lambda: demo_file("qa.jsonl"), metadata={"help": "question-answer file on the target"})
    incontext_passages: str = field(default_factory=lambda: robust_file("incontext_passages.jsonl"), metadata={"help": "passages of the target's world it never trained on ({length: short|long, text}) put before the prompts"})
    crosslingual_probability: list[str] = field(default_factory=lambda: [robust_file(f"crosslingual_{lang}_probability_heldout.jsonl") for lang in LANGUAGES], metadata={"help": "probability prompts translated into other languages (one file per language; source: the line of the English prompt in probability_prompts)"})
    crosslingual_completion: list[str] = field(default_factory=lambda: [robust_file(f"crosslingual_{lang}_completion_heldout.jsonl") for lang in LANGUAGES], metadata={"help": "completion prompts translated into other languages (one file per language; source: the line of the English prompt in completion_prompts)"})
    chat_questions: str = field(default_factory=lambda: robust_file("chat_heldout.jsonl"), metadata={"help": "questions on the target ({question, references}) asked through the chat template"})
    jailbreak_prefixes: str = field(default_factory=lambda: robust_file("jailbreak_prefixes.jsonl"), metadata={"help": "jailbreak prefixes ({name, prefix}) put before the prompts"})
    relearn_text: list[str] = field(default_factory=lambda: [robust_file("incontext_passages.jsonl")], metadata={"help": "held-out target text of the relearning curve (text files, or passage files .jsonl); never the unlearning's own target"})
    relearn_curve_steps: list[int] = field(default_factory=lambda: [0, 10, 50, 100], metadata={"help": "fine-tuning steps after which the relearning curve measures familiarity (increasing; 0 = before)"})
    relearn_curve_lr: float = field(default=1e-4, metadata={"help": "learning rate of the relearning curve's full fine-tune"})
    relearn_curve_lora_lr: float = field(default=1e-3, metadata={"help": "learning rate of the relearning curve's LoRA attack (rank 16): ten times the full fine-tune's, as a LoRA adapter moves the weights less per step"})
    relearn_curve_modes: list[str] = field(default_factory=lambda: list(MODES), metadata={"help": f"attacks of the relearning curve: {' and/or '.join(MODES)} (value: the first one's last point)"})
    reference_model: str | None = field(default=None, metadata={"help": "latent probe: the model whose hidden states train the probe (the model before unlearning); none = the evaluated model itself"})
    probe_layer: int | None = field(default=None, metadata={"help": "latent probe: hidden states after this many layers (0 = embeddings); none = the middle layer"})
    probe_folds: int = field(default=10, metadata={"help": "latent probe: cross-validation folds over the prompts (0 = leave-one-out)"})
    suite: str = field(default=STANDARD, metadata={"help": f"which metrics run when `metrics` is empty: {', '.join(SUITES)}"})
    metrics: list[str] = field(default_factory=list, metadata={"help": f"which metrics to run (empty: those of `suite`, and benchmarks): {', '.join([*METRICS, BENCHMARKS])}"})
    benchmarks: list[str] = field(default_factory=list, metadata={"help": "lm-eval tasks (whp_arc_easy, ... or hub names when online)"})
    benchmark_data: str | None = field(default=None, metadata={"help": "folder of the local benchmark jsonl files"})
    benchmark_limit: int | None = field(default=None, metadata={"help": "items per benchmark task"})
    judge: str = field(default="reference", metadata={"help": "reference (offline) or llm"})
    llm_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for the LLM judge"})
    llm_model: str | None = field(default=None, metadata={"help": "model name for the LLM judge"})
    llm_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the judge's API key"})
    llm_timeout: float = field(default=60.0, metadata={"help": "seconds to wait for a judge's reply (for its next words: replies are streamed); after a time-out the wait doubles and fewer requests go at once, before the judge gives up"})
    llm_workers: int = field(default=4, metadata={"help": "judge requests in flight at once (halved after a time-out); 1 suits a local server on a CPU"})
    llm_max_tokens: int = field(default=64, metadata={"help": "reply length limit of the judge (a grade line and one sentence)"})
    max_new_tokens: int = field(default=48, metadata={"help": "completion length"})
    batch_size: int = field(default=64, metadata={"help": "prompts per forward pass or generation batch (on a CPU, 64 generated the demo's completions about 3x as fast as 16, with the same score)"})
    relearn_steps: int = field(default=10, metadata={"help": "fine-tuning steps of the relearning attack"})
    relearn_lr: float = field(default=1e-5, metadata={"help": "learning rate of the relearning attack"})
    seed: int = field(default=0, metadata={"help": "seed for sampling passages"})
    dtype: str = field(default="auto", metadata={"help": precision.HELP + "; the weights' dtype while measuring (compare models in the same one)"})

    def __post_init__(self) -> None:
        precision.check_setting(self.dtype)
        unknown = sorted(set(self.metrics) - {*METRICS, BENCHMARKS})
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join([*METRICS, BENCHMARKS])})")
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r} (known: {', '.join(SUITES)})")
        steps = self.relearn_curve_steps
        if not steps or steps[0] < 0 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"relearn_curve_steps must be increasing numbers from 0, got {steps}")
        modes = self.relearn_curve_modes
        if not modes or not set(modes) <= set(MODES) or len(set(modes)) < len(modes):
            raise ValueError(f"relearn_curve_modes must be {' and/or '.join(MODES)}, each once, got {modes}")
        if self.probe_folds < 0 or self.probe_folds == 1:
            raise ValueError(f"probe_folds must be 0 (leave-one-out) or at least 2, got {self.probe_folds}")

    def chosen_metrics(self) -> list[str]:
        """The metrics to run: `metrics`, or those of `suite` and benchmarks."""
        return self.metrics or [*suite_metrics(self.suite), BENCHMARKS]

    def resolved_dtype(self) -> torch.dtype:
        return precision.resolve_for(self.dtype, distributed.device())


def model_label(path: str, taken: set[str]) -> str:
    """A short name: the folder's name, or its run's name for `RUN/model`; made unique."""
    folder = Path(resolve_model_path(path))
    label = folder.parent.name if folder.name == "model" and folder.parent.name else folder.name or str(path)
    unique, n = label, 2
    while unique in taken:
        unique, n = f"{label}-{n}", n + 1
    return unique


# ---- what a metric's value depends on ------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def code_identity() -> dict:
    """What a metric's value also depends on: the evaluation code and the libraries that run it."""
    import transformers

    sources = sorted(Path(__file__).parent.glob("*.py"))
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    return {"whp_evaluate": code, "torch": torch.__version__, "transformers": transformers.__version__}


def metric_inputs(name: str, settings: tuple[str, ...], path: str, cfg: EvalConfig, models: tuple[str, ...] = ()) -> str:
    """The fingerprint of one metric's inputs: the model and its tokenizer, the resolved dtype, the
    settings it reads (files among them by content, `models` among them by their weights), the
    evaluation code and library versions."""
    values = {key: getattr(cfg, key) for key in settings}
    files = [f for value in values.values() for f in (value if isinstance(value, list) else [value])
             if isinstance(f, str) and Path(f).is_file()]
    other_models = {key: any_model_identity(values[key]) for key in models if values[key] is not None}
    return fingerprint({"metric": name, "model": any_model_identity(path), "tokenizer": tokenizer_identity(path),
                        "dtype": precision.dtype_name(cfg.resolved_dtype()),
                        "settings": values, "files": {f: file_hash(f) for f in files}, "models": other_models,
                        "code": code_identity()})


def machine_cache(inputs: str) -> Path:
    """Where this machine keeps the record of a metric computed from these inputs."""
    return cache_dir() / "metrics" / f"{inputs}.json"


def _finished(folder: Path, name: str, inputs: str) -> dict | None:
    """A metric's record for these inputs: the output folder's, else the machine cache's."""
    for path in (folder / f"{name}.json", machine_cache(inputs)):
        if path.is_file():
            record = read_json(path)
            if record.get("inputs") == inputs:
                return record
    return None


def _save(folder: Path, label: str, name: str, result: dict, seconds: float, inputs: str, dtype: str) -> dict:
    record = {"metric": name, "model": label, **result, "seconds": round(seconds, 2), "dtype": dtype, "inputs": inputs}
    if distributed.is_main():
        write_json(folder / f"{name}.json", record)
        write_json(machine_cache(inputs), record)
    return record


# ---- running them --------------------------------------------------------------------------------


def evaluate_model(path: str, label: str, cfg: EvalConfig, out: Path) -> dict[str, float]:
    """Run every requested metric whose record for these inputs is missing; returns the summary
    {name: value} of the requested ones."""
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    chosen = cfg.chosen_metrics()
    metrics = [METRICS[m] for m in chosen if m in METRICS]
    tasks = cfg.benchmarks if BENCHMARKS in chosen else []
    inputs = {m.name: metric_inputs(m.name, m.settings, path, cfg, m.models) for m in metrics}
    inputs.update({f"{BENCHMARK_PREFIX}{t}": metric_inputs(f"{BENCHMARK_PREFIX}{t}", ("benchmark_data", "benchmark_limit"), path, cfg)
                   for t in tasks})
    records = {name: record for name, key in inputs.items() if (record := _finished(folder, name, key)) is not None}
    for name, record in records.items():
        if distributed.is_main() and not (folder / f"{name}.json").is_file():
            log.info("%s: %s reused from this machine's metric cache", label, name)
            write_json(folder / f"{name}.json", {**record, "model": label})
    todo = [m for m in metrics if m.name not in records]
    todo_tasks = [t for t in tasks if f"{BENCHMARK_PREFIX}{t}" not in records]
    if todo or todo_tasks:
        dtype = cfg.resolved_dtype()
        tokenizer = load_tokenizer(path)
        model = load_any_model(path, dtype).to(distributed.device())
        for metric in todo:
            records[metric.name] = _measure(metric, model, tokenizer, cfg, path, folder, label, inputs[metric.name])
        if todo_tasks:
            records.update(_run_benchmarks(model, tokenizer, cfg, todo_tasks, folder, label, inputs))
        del model
        gc.collect()
    values = {}
    for metric in metrics:
        values.update(metric.summary(records[metric.name]))
    values.update({f"{BENCHMARK_PREFIX}{t}": records[f"{BENCHMARK_PREFIX}{t}"]["value"] for t in tasks})
    values = {name: values[name] for name in ordered(values)}
    if distributed.is_main():
        write_json(folder / "metrics.json", {label: values})
    return values


def _measure(metric: Metric, model, tokenizer, cfg: EvalConfig, path: str, folder: Path, label: str, inputs: str) -> dict:
    log.info("%s: %s", label, metric.name)
    started = time.perf_counter()
    try:
        result = metric.measure(model, tokenizer, cfg, path)
    except JudgeError as exc:
        if exc.partial is not None and distributed.is_main():  # keep what was graded before the judge failed
            write_json(folder / f"{metric.name}.partial.json", {"metric": metric.name, "model": label, **exc.partial})
        raise
    return _save(folder, label, metric.name, result, time.perf_counter() - started, inputs,
                 precision.dtype_name(cfg.resolved_dtype()))


def _run_benchmarks(model, tokenizer, cfg: EvalConfig, tasks: list[str], folder: Path, label: str, inputs: dict) -> dict[str, dict]:
    from whp.lm_eval_adapter import run_benchmarks

    started = time.perf_counter()
    scores = run_benchmarks(model, tokenizer, tasks, cfg.benchmark_data, limit=cfg.benchmark_limit)
    seconds = (time.perf_counter() - started) / len(scores)
    dtype = precision.dtype_name(cfg.resolved_dtype())
    return {
        f"{BENCHMARK_PREFIX}{task}": _save(folder, label, f"{BENCHMARK_PREFIX}{task}", {"value": s["acc"], **s}, seconds,
                                            inputs[f"{BENCHMARK_PREFIX}{task}"], dtype)
        for task, s in scores.items()
    }


def evaluate(paths: list[str], cfg: EvalConfig, out: Path, title: str = "whp evaluation") -> dict[str, dict[str, float]]:
    """Evaluate each model, write the combined summary and report, update our model cards."""
    from whp.report import build_report

    out = Path(out)
    summary, labels = {}, set()
    for path in paths:
        label = model_label(path, labels)
        labels.add(label)
        summary[label] = evaluate_model(path, label, cfg, out)
        if distributed.is_main():
            update_model_card(Path(resolve_model_path(path)), summary[label])
    if distributed.is_main():
        write_json(out / "metrics.json", summary)
        build_report([out / label for label in summary], out / "report.html", title)
    distributed.barrier()
    return summary


