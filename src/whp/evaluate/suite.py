"""`whp eval`: run the metrics on one or more models, one JSON per metric, a summary and a report.

Output folder layout:
    OUT/<label>/<metric>.json   one file per metric and model (a finished one is not recomputed)
    OUT/<label>/metrics.json    {label: {metric: value}}
    OUT/metrics.json            every model's summary
    OUT/report.html             tables, plots, side-by-side completions
A model folder made by `whp unlearn` also gets the numbers in its model card (README.md).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from whp import distributed, precision
from whp.corpus import read_text
from whp.errors import WhpError
from whp.evaluate.judges import JudgeError
from whp.files import atomic_write_bytes, read_json, write_json
from whp.generic import fingerprint
from whp.models import cache_dir, load_model, load_tokenizer, model_identity, resolve_model_path

log = logging.getLogger("whp")


def demo_file(name: str) -> str:
    """A file of the built-in Sherlock Holmes set (prompts, texts) shipped in the package."""
    return str(resources.files("whp") / "data" / "demo" / name)


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
    metrics: list[str] = field(default_factory=lambda: [*METRICS, BENCHMARKS], metadata={"help": "which metrics to run"})
    benchmarks: list[str] = field(default_factory=list, metadata={"help": "lm-eval tasks (whp_arc_easy, ... or hub names when online)"})
    benchmark_data: str | None = field(default=None, metadata={"help": "folder of the local benchmark jsonl files"})
    benchmark_limit: int | None = field(default=None, metadata={"help": "items per benchmark task"})
    judge: str = field(default="reference", metadata={"help": "reference (offline) or llm"})
    llm_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for the LLM judge"})
    llm_model: str | None = field(default=None, metadata={"help": "model name for the LLM judge"})
    llm_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the judge's API key"})
    max_new_tokens: int = field(default=48, metadata={"help": "completion length"})
    batch_size: int = field(default=16, metadata={"help": "prompts per forward pass"})
    relearn_steps: int = field(default=10, metadata={"help": "fine-tuning steps of the relearning attack"})
    relearn_lr: float = field(default=1e-5, metadata={"help": "learning rate of the relearning attack"})
    seed: int = field(default=0, metadata={"help": "seed for sampling passages"})
    dtype: str = field(default="auto", metadata={"help": precision.HELP + "; the weights' dtype while measuring (compare models in the same one)"})

    def __post_init__(self) -> None:
        precision.check_setting(self.dtype)

    def resolved_dtype(self) -> torch.dtype:
        return precision.resolve_for(self.dtype, distributed.device())


def _judge(cfg: EvalConfig):
    from whp.evaluate.judges import LLMJudge, ReferenceJudge

    if cfg.judge == "reference":
        return ReferenceJudge()
    if cfg.judge == "llm":
        if not cfg.llm_url or not cfg.llm_model:
            raise WhpError("the llm judge needs --llm-url and --llm-model")
        return LLMJudge(cfg.llm_url, cfg.llm_model, api_key_env=cfg.llm_key_env)
    raise WhpError(f"unknown judge {cfg.judge!r} (reference or llm)")


def _passages(texts: list[str], words: int = 150) -> list[str]:
    """Texts cut into passages of about `words` words (for membership inference)."""
    all_words = "\n\n".join(read_text([t]) for t in texts).split()
    return [" ".join(all_words[i : i + words]) for i in range(0, len(all_words) - words + 1, words)]


def _probability(model, tok, cfg: EvalConfig, prompt_files: list[str]) -> dict:
    from whp.evaluate.familiarity import probability_familiarity
    from whp.evaluate.prompts import load_probability_prompts

    prompts = [p for f in prompt_files for p in load_probability_prompts(f)]
    return probability_familiarity(model, tok, prompts, batch_size=cfg.batch_size)


def _completion(model, tok, cfg: EvalConfig, prompt_files: list[str]) -> dict:
    from whp.evaluate.familiarity import completion_familiarity
    from whp.evaluate.prompts import load_completion_prompts

    prompts = [p for f in prompt_files for p in load_completion_prompts(f)]
    return completion_familiarity(model, tok, prompts, _judge(cfg), max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.batch_size, seed=cfg.seed)


def _retain_perplexity(model, tok, cfg: EvalConfig, path: str) -> dict:
    from whp.evaluate.perplexity import perplexity

    return perplexity(model, tok, read_text(cfg.retain_text))


def _verbatim(model, tok, cfg: EvalConfig, path: str) -> dict:
    from whp.evaluate.memorisation import verbatim_memorisation

    return verbatim_memorisation(model, tok, read_text(cfg.target_text), seed=cfg.seed, batch_size=cfg.batch_size)


def _qa(model, tok, cfg: EvalConfig, path: str) -> dict:
    from whp.evaluate.memorisation import qa_knowledge
    from whp.evaluate.prompts import load_qa

    if not cfg.qa:
        raise WhpError("no QA file given (--qa)")
    return qa_knowledge(model, tok, load_qa(cfg.qa), batch_size=cfg.batch_size)


def _membership(model, tok, cfg: EvalConfig, path: str) -> dict:
    from whp.evaluate.mia import membership_auc

    return membership_auc(model, tok, _passages(cfg.target_text), _passages(cfg.retain_text))


def _relearn(model, tok, cfg: EvalConfig, path: str) -> dict:
    """The attack trains a fresh copy loaded from `path`; the probe is probability familiarity."""
    from whp.evaluate.relearn import relearning_attack
    from whp.inference import InferenceWHP

    if isinstance(model, InferenceWHP):
        reason = "not defined for the inference-time WHP wrapper (no weights of its own to fine-tune)"
        log.warning("%s: relearn_familiarity %s", path, reason)
        return {"value": None, "skipped": reason}

    def probe(attacked) -> float:
        return _probability(attacked, tok, cfg, cfg.probability_prompts)["value"]

    return relearning_attack(path, tok, read_text(cfg.target_text), probe, steps=cfg.relearn_steps,
                             lr=cfg.relearn_lr, seed=cfg.seed, dtype=cfg.resolved_dtype())


Metric = Callable[..., dict]  # (model, tokenizer, cfg, model_path) -> {"value": ..., details}
METRICS: dict[str, Metric] = {
    "familiarity_probability": lambda m, t, c, p: _probability(m, t, c, c.probability_prompts),
    "familiarity_completion": lambda m, t, c, p: _completion(m, t, c, c.completion_prompts),
    "side_effect_probability": lambda m, t, c, p: _probability(m, t, c, c.side_effect_probability),
    "side_effect_completion": lambda m, t, c, p: _completion(m, t, c, c.side_effect_completion),
    "retain_perplexity": _retain_perplexity,
    "verbatim_rouge_l": _verbatim,
    "qa_rouge_l": _qa,
    "membership": _membership,
    "relearn_familiarity": _relearn,
}
BENCHMARKS = "benchmarks"  # lm-evaluation-harness tasks, one file each (benchmark_<task>.json)


def model_label(path: str, taken: set[str]) -> str:
    """A short name: the folder's name, or its run's name for `RUN/model`; made unique."""
    folder = Path(resolve_model_path(path))
    label = folder.parent.name if folder.name == "model" and folder.parent.name else folder.name or str(path)
    unique, n = label, 2
    while unique in taken:
        unique, n = f"{label}-{n}", n + 1
    return unique


def _save_metric(folder: Path, label: str, name: str, result: dict, seconds: float, inputs: str, dtype: str) -> dict:
    record = {"metric": name, "model": label, **result, "seconds": round(seconds, 2), "dtype": dtype, "inputs": inputs}
    if distributed.is_main():
        write_json(folder / f"{name}.json", record)
        write_json(machine_cache(inputs) / f"{name}.json", record)
    return record


def _summary_values(records: dict[str, dict]) -> dict[str, float]:
    """{metric: value} in a fixed order (the suite's, then benchmarks by name)."""
    order = {name: i for i, name in enumerate(METRICS)}
    values = {}
    for name, record in sorted(records.items(), key=lambda item: (order.get(item[0], len(order)), item[0])):
        if name == "membership":
            values["min_k_auc"] = record["min_k_auc"]
            values["min_k_plus_plus_auc"] = record["min_k_plus_plus_auc"]
        else:
            values[name] = record["value"]
    return values


@functools.lru_cache(maxsize=1)
def code_identity() -> dict:
    """What a metric's value also depends on: the evaluation code and the libraries that run it."""
    import transformers

    sources = sorted(Path(__file__).parent.glob("*.py"))
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    return {"whp_evaluate": code, "torch": torch.__version__, "transformers": transformers.__version__}


def inputs_fingerprint(path: str, cfg: EvalConfig) -> str:
    """A hash of what every metric depends on: the model's weights, the settings (the resolved
    dtype), the files' contents, the evaluation code and library versions."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("metrics", "batch_size", "benchmarks")}
    settings["dtype"] = precision.dtype_name(cfg.resolved_dtype())
    files = [f for value in settings.values() for f in (value if isinstance(value, list) else [value])
             if isinstance(f, str) and Path(f).is_file()]
    contents = {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}
    return fingerprint({"model": model_identity(path), "settings": settings, "files": contents, "code": code_identity()})


def machine_cache(inputs: str) -> Path:
    """Where this machine keeps every metric computed from these inputs (WHP_CACHE/metrics/...):
    a model evaluated again with the same files, settings and code (the base model of every demo
    or comparison) is not measured twice, whichever output folder asks."""
    return cache_dir() / "metrics" / inputs


def _cached_records(folder: Path, inputs: str) -> dict[str, dict]:
    """Finished metric records for these inputs: the output folder's, else the machine cache's."""
    records = {}
    for where in (machine_cache(inputs), folder):
        for p in where.glob("*.json") if where.is_dir() else []:
            if p.stem != "metrics" and "." not in p.stem:
                record = read_json(p)
                if record.get("inputs") == inputs:
                    records[p.stem] = record
    return records


def evaluate_model(path: str, label: str, cfg: EvalConfig, out: Path) -> dict[str, float]:
    """Run every requested metric missing from `out/label/` (or computed from other inputs: another
    model, other settings or files); returns {metric: value}."""
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(cfg.metrics) - {*METRICS, BENCHMARKS})
    if unknown:
        raise WhpError(f"unknown metric {unknown[0]!r} (known: {', '.join([*METRICS, BENCHMARKS])})")
    inputs = inputs_fingerprint(path, cfg)
    records = _cached_records(folder, inputs)
    for name, record in records.items():
        if distributed.is_main() and not (folder / f"{name}.json").is_file():
            log.info("%s: %s reused from %s", label, name, machine_cache(inputs))
            write_json(folder / f"{name}.json", {**record, "model": label})
    todo = [m for m in cfg.metrics if m not in records and not (m == BENCHMARKS and _benchmarks_done(records, cfg))]
    if todo:
        dtype_name = precision.dtype_name(cfg.resolved_dtype())
        tokenizer = load_tokenizer(path)
        model = load_model(path, cfg.resolved_dtype()).to(distributed.device())
        for name in todo:
            log.info("%s: %s", label, name)
            started = time.perf_counter()
            if name == BENCHMARKS:
                records.update(_run_benchmarks(model, tokenizer, cfg, folder, label, inputs))
                continue
            try:
                result = METRICS[name](model, tokenizer, cfg, path)
            except JudgeError as exc:
                if exc.partial is not None and distributed.is_main():  # keep what was graded before the judge failed
                    write_json(folder / f"{name}.partial.json", {"metric": name, "model": label, **exc.partial})
                raise
            records[name] = _save_metric(folder, label, name, result, time.perf_counter() - started, inputs, dtype_name)
        del model
        gc.collect()
    values = _summary_values({name: r for name, r in records.items() if _requested(name, cfg)})
    if distributed.is_main():
        write_json(folder / "metrics.json", {label: values})
    return values


def _requested(name: str, cfg: EvalConfig) -> bool:
    return name in cfg.metrics or (BENCHMARKS in cfg.metrics and name.removeprefix("benchmark_") in cfg.benchmarks)


def _benchmarks_done(records: dict, cfg: EvalConfig) -> bool:
    return all(f"benchmark_{task}" in records for task in cfg.benchmarks)


def _run_benchmarks(model, tokenizer, cfg: EvalConfig, folder: Path, label: str, inputs: str) -> dict[str, dict]:
    from whp.lm_eval_adapter import run_benchmarks

    if not cfg.benchmarks:
        return {}
    started = time.perf_counter()
    scores = run_benchmarks(model, tokenizer, cfg.benchmarks, cfg.benchmark_data, limit=cfg.benchmark_limit)
    seconds = (time.perf_counter() - started) / len(scores)
    return {
        f"benchmark_{task}": _save_metric(folder, label, f"benchmark_{task}", {"value": s["acc"], **s}, seconds, inputs,
                                          precision.dtype_name(cfg.resolved_dtype()))
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


def update_model_card(folder: Path, values: dict[str, float], source: str = "whp eval",
                      before: dict[str, float] | None = None) -> None:
    """Write (or replace) the evaluation section of the README.md of a model folder that whp made;
    `before`: the base model's values, shown beside the model's own with the change."""
    from whp.report import CARD_HEADING, card_section

    card = folder / "README.md"
    if not card.is_file() or "whp" not in card.read_text():
        return
    head = card.read_text().split("\n" + CARD_HEADING)[0].rstrip("\n")
    atomic_write_bytes(card, f"{head}\n\n{card_section(values, source, before)}".encode())
