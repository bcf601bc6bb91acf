"""The stages of `whp unlearn` over one run folder, resumable and checked.

Each method is a sequence of stages (`METHOD_STAGES`): WHP's three (reinforce, labels,
finetune); the inference-time variant's two (reinforce, wrap); one stage for each method that
is a loss over the baseline (ga, gd, npo; `whp.methods.LOSS_METHODS`).

Run folder layout:
    config.yaml          the resolved configuration (latest)
    run.json             method, versions, per-stage settings fingerprint, timings and token counts
    reinforced/          stage 1: the reinforced model (LoRA adapter or full model) + tokenizer
    labels/<fp>/         stage 2: generic-label shards keyed by a fingerprint of their inputs
    model/               the unlearned model, loads with `from_pretrained` (whp-inference: the
                         wrapper's folder, loads with `whp.models.load_model`)
    work/<stage>/        checkpoints and training logs
Every output is written to a temporary sibling and renamed into place, so a folder that
exists is finished; a re-run skips finished stages and resumes unfinished ones.

Under several processes (`accelerate launch`, `torchrun`) every process runs every stage on its
share of the work (whp.distributed); the main process alone writes the run folder's files.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import yaml

import whp
from whp import distributed, peft_adapter, precision
from whp.anchors.dictionary import AnchorMatcher, Dictionary, draw_alternatives, keys_missing_from, load_dictionary
from whp.anchors.extract import NoCandidates, extract
from whp.anchors.review import write_review
from whp.config import RunConfig, to_dict
from whp.corpus import Block, load_blocks, read_text
from whp.errors import WhpError, warn
from whp.files import atomic_folder, read_json, write_json, write_yaml
from whp.generic import HeadIntoBuffer, ModelPass, compute_labels, fingerprint, identity_alignment, is_complete, load_examples, mark_complete
from whp.inference import write_inference_folder
from whp.methods import LOSS_METHODS
from whp.methods.lm import lm_examples, lm_loss
from whp.methods.whp import whp_loss
from whp.models import (
    DEMO_MODEL_ALIAS,
    add_lora,
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    model_identity,
    model_vocab_size,
    resolve_model_path,
    save_model,
    split_at_head,
)
from whp.train import TrainConfig, TrainResult, train
from whp.translate import align_block

log = logging.getLogger("whp")

STAGES = ("reinforce", "labels", "finetune")
METHOD_STAGES = {
    "whp": STAGES,
    "whp-inference": ("reinforce", "wrap"),
    **{name: (name,) for name in LOSS_METHODS},
}
_BASELINE_INPUTS = ("model", "target", "trust_remote_code", "dtype", "corpus")
_STAGE_INPUTS = {  # config keys each stage's result depends on (cumulative over a method's stages)
    "reinforce": (*_BASELINE_INPUTS, "reinforced", "reinforce"),
    "labels": ("anchors", "extract", "retain", "labels"),
    "finetune": ("finetune",),
    "wrap": ("inference",),
    **{name: (*_BASELINE_INPUTS, *(("retain",) if m.uses_retain else ()), name) for name, m in LOSS_METHODS.items()},
}
_STAGE_OUTPUTS = {
    "reinforce": ["reinforced", "work/reinforce"], "labels": ["labels"], "finetune": ["model", "work/finetune"],
    "wrap": ["model"], **{name: ["model", f"work/{name}"] for name in LOSS_METHODS},
}


def stage_settings(cfg: RunConfig, stage: str) -> dict:
    stages = METHOD_STAGES[cfg.method]
    keys = [k for s in stages[: stages.index(stage) + 1] for k in _STAGE_INPUTS[s]]
    if cfg.anchors or not cfg.labels.use_dictionary:  # extraction settings matter only when it runs
        keys = [k for k in keys if k != "extract"]
    full = resolved_dict(cfg)
    return {key: full[key] for key in keys}


def run_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype every stage of the run computes in (whp.precision)."""
    return precision.resolve_for(cfg.dtype, distributed.device())


def resolved_dict(cfg: RunConfig) -> dict:
    """The configuration as saved with the run: `dtype` resolved for this device."""
    return {**to_dict(cfg), "dtype": precision.dtype_name(run_dtype(cfg))}


# ---- the run folder --------------------------------------------------------------------------


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _differences(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_paths(cfg: RunConfig, out: Path) -> None:
    """The output folder must not be, or lie inside, an input folder, nor hold an input."""
    out = out.resolve()
    folders = [resolve_model_path(cfg.model)] + ([cfg.reinforced] if cfg.reinforced else [])
    for folder in (Path(f).resolve() for f in folders if Path(f).exists()):
        if out == folder or folder in out.parents:
            raise WhpError(f"output folder is or lies inside the input folder {folder}; choose another --out", out)
    inputs = [*cfg.target, *([cfg.anchors] if cfg.anchors else []), *folders]
    own_products = {out / "reinforced"}
    for path in (Path(p).resolve() for p in inputs if Path(p).exists()):
        if out in path.parents and path not in own_products:
            raise WhpError(f"input {path} lies inside the output folder; choose another --out", out)


def prepare_run_folder(cfg: RunConfig, out: Path, overwrite: bool) -> dict:
    """Create or reopen the run folder; refuse one that holds a different run unless `overwrite`,
    in which case the stages made with other settings (and those after them) are removed."""
    check_paths(cfg, out)
    record_path = out / "run.json"
    if out.exists() and any(out.iterdir()) and not record_path.is_file():
        if not overwrite:
            raise WhpError("output folder is not empty and holds no whp run; use --overwrite or another --out", out)
        shutil.rmtree(out)
    record = read_json(record_path) if record_path.is_file() else {"stages": {}}
    made_with = record.get("method", "whp")  # runs from before other methods existed are WHP runs
    if record["stages"] and made_with != cfg.method:
        if not overwrite:
            raise WhpError(f"holds a run of method {made_with!r}, not {cfg.method!r}; use --overwrite to replace it, or another --out", out)
        shutil.rmtree(out)
        record = {"stages": {}}
    old_config = yaml.safe_load((out / "config.yaml").read_text()) if (out / "config.yaml").is_file() else {}
    stages = METHOD_STAGES[cfg.method]
    for position, stage in enumerate(stages):
        done = record["stages"].get(stage)
        if done and done["settings"] != fingerprint(stage_settings(cfg, stage)):
            if not overwrite:
                changed = _differences(
                    {k: old_config.get(k) for k in stage_settings(cfg, stage)}, stage_settings(cfg, stage)
                )
                raise WhpError(
                    f"holds a different run: stage {stage!r} was made with other settings "
                    f"({', '.join(changed) or 'inputs changed'}); use --overwrite to redo it, or another --out",
                    out,
                )
            for later in stages[position:]:
                _remove_stage(out, later)
                record["stages"].pop(later, None)
            break
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yaml", resolved_dict(cfg))
    record.update(method=cfg.method, whp=whp.__version__, versions=_versions(), command=sys.argv)
    write_json(record_path, record)
    return record


def _remove_stage(out: Path, stage: str) -> None:
    for name in _STAGE_OUTPUTS[stage]:
        shutil.rmtree(out / name, ignore_errors=True)
    log.info("removed stage %s (its settings changed)", stage)


def _versions() -> dict:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def _record_stage(out: Path, record: dict, cfg: RunConfig, stage: str, seconds: float, **facts) -> None:
    if not distributed.is_main():
        return
    previous = record["stages"].get(stage, {})
    record["stages"][stage] = {
        "settings": fingerprint(stage_settings(cfg, stage)),
        "dtype": precision.dtype_name(run_dtype(cfg)),
        "seconds": round(previous.get("seconds", 0.0) + seconds, 2),
        **facts,
    }
    write_json(out / "run.json", record)


# ---- stage 1: reinforced model ---------------------------------------------------------------


def trainable_baseline(cfg: RunConfig, train_cfg: TrainConfig):
    """The baseline in fp32 on the CPU (training places it), with a fresh seeded LoRA adapter if asked."""
    model = load_model(cfg.model, torch.float32, cfg.trust_remote_code)
    if train_cfg.lora:
        torch.manual_seed(train_cfg.seed)  # the adapter's initial weights
        model = add_lora(model, train_cfg.lora_config)
    return model


def trained_model(cfg: RunConfig, train_cfg: TrainConfig, model, result: TrainResult):
    """The trained model, whole, on the main process: `model` itself, or after a sharded run
    (FSDP, DeepSpeed) a plain copy on the CPU holding the gathered weights."""
    if result.state_dict is None:
        return model
    with distributed.unsharded_loading():
        whole = trainable_baseline(cfg, train_cfg)
    whole.load_state_dict(result.state_dict)
    return whole


def save_unlearned(cfg: RunConfig, train_cfg: TrainConfig, model, result: TrainResult, tokenizer, destination: Path,
                   record: dict) -> None:
    """The main process writes the trained model, adapter merged, with its card to `destination`
    (a `from_pretrained` folder); every process waits until it is there."""
    if distributed.is_main():
        whole = peft_adapter.merged(trained_model(cfg, train_cfg, model, result))
        save_model(whole, tokenizer, destination, {"README.md": model_card(cfg, record)})
    distributed.barrier()


def reinforced_path(cfg: RunConfig, out: Path) -> Path:
    return Path(cfg.reinforced) if cfg.reinforced else out / "reinforced"


def run_reinforce(cfg: RunConfig, out: Path, record: dict) -> Path:
    """Fine-tune the baseline further on the target; a LoRA adapter unless reinforce.train.lora=false."""
    destination = reinforced_path(cfg, out)
    if cfg.reinforced or destination.is_dir():
        return destination
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    blocks = load_blocks(cfg.target, tokenizer, cfg.corpus)
    train_cfg = cfg.reinforce.train
    model = trainable_baseline(cfg, train_cfg)
    result = train(model, lm_examples(blocks), lm_loss, train_cfg, out / "work" / "reinforce", "reinforce", run_dtype(cfg))
    if distributed.is_main():
        model = trained_model(cfg, train_cfg, model, result)
        if train_cfg.lora:
            with atomic_folder(destination) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        else:
            save_model(model, tokenizer, destination)
    distributed.barrier()
    _record_stage(out, record, cfg, "reinforce", time.perf_counter() - started,
                  steps=result.steps, tokens=result.tokens, final_loss=result.losses[-1], blocks=len(blocks))
    return destination


# ---- stage 2: generic labels -----------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _load_dictionary(cfg: RunConfig, text: str, out: Path, record: dict | None = None) -> Dictionary:
    if not cfg.labels.use_dictionary:
        return {}
    if not cfg.anchors:
        return _extracted_dictionary(cfg, text, out, record)
    dictionary = load_dictionary(cfg.anchors)
    missing = keys_missing_from(dictionary, text)
    if len(missing) == len(dictionary):
        warn(f"{cfg.anchors}: no dictionary key occurs in the target text; anchors will change nothing")
    elif missing:
        log.info("%d of %d dictionary keys do not occur in the target", len(missing), len(dictionary))
    return dictionary


def _extracted_dictionary(cfg: RunConfig, text: str, out: Path, record: dict | None) -> Dictionary:
    """The dictionary `whp anchors` would draft, written to OUT/anchors.yaml (a review file) and
    reused while the model, reinforced model, target and extraction settings are unchanged.
    Without `record` (a stage that only reads labels) it must already be there."""
    path = out / "anchors.yaml"
    reinforced = reinforced_path(cfg, out) if cfg.labels.alpha > 0 else None
    key = fingerprint({"model": model_identity(cfg.model), "reinforced": model_identity(reinforced) if reinforced else None,
                       "corpus": _sha256(text), "extract": to_dict(cfg)["extract"]})
    saved = (record if record is not None else read_json(out / "run.json") if (out / "run.json").is_file() else {})
    if path.is_file() and saved.get("anchors", {}).get("fingerprint") == key:
        return load_dictionary(path)
    if record is None:
        raise WhpError("the extracted dictionary is missing or stale; run `whp labels` (or `whp unlearn`) first", path)
    log.info("no --anchors given: extracting an anchored dictionary from the target (as `whp anchors` does) into %s", path)
    try:
        entries, facts = extract(cfg.model, text, cfg.extract, reinforced=reinforced, target_name=cfg.target[0], dtype=cfg.dtype,
                                 trust_remote_code=cfg.trust_remote_code)
    except NoCandidates as exc:
        warn(f"{exc}: no anchored dictionary; generic labels come from the reinforced model alone")
        return {}
    write_review(path, entries, f"extracted by whp unlearn from {', '.join(cfg.target)}")
    record["anchors"] = {"fingerprint": key, **facts}
    write_json(out / "run.json", record)
    return load_dictionary(path)


def model_pass(model, device: torch.device, compiled: bool = False) -> ModelPass:
    """`model` split at its LM head when its logits allow it (see models.split_at_head); with
    `compiled`, its body (or whole forward) through torch.compile."""
    split = split_at_head(model)
    if split is None:
        log.info("this model post-processes its logits: the label stage keeps whole (batch, length, vocabulary) logits")
        whole = torch.compile(model) if compiled else model
        return ModelPass(lambda ids: whole(input_ids=ids.to(device)).logits)
    body, head = split
    body = torch.compile(body) if compiled else body
    head = HeadIntoBuffer(head) if type(head) is torch.nn.Linear and head.bias is None else head
    return ModelPass(lambda ids: body(input_ids=ids.to(device)).last_hidden_state, head)


def lora_shared_passes(shared, device: torch.device, compiled: bool = False) -> tuple[ModelPass, ModelPass]:
    """R = the base weights with the adapter, B = the same weights with it switched off (the head
    too, only if the adapter changes it: each switch costs a walk over the model)."""
    reinforced = model_pass(shared, device, compiled)
    with peft_adapter.adapter_disabled(shared):
        baseline = model_pass(shared, device, compiled)
    head = peft_adapter.adapter_off(baseline.head, shared) if peft_adapter.is_adapted(baseline.head) else baseline.head
    return reinforced, ModelPass(peft_adapter.adapter_off(baseline.body, shared), head)


def _label_forwards(cfg: RunConfig, path: Path | None, tokenizer) -> tuple[ModelPass | None, ModelPass]:
    """The reinforced and baseline forward passes; one set of base weights when R is an adapter."""
    dtype, device = run_dtype(cfg), distributed.device()
    if path is not None and not path.is_dir():
        raise WhpError("no reinforced model here: run `whp reinforce` first, or pass --reinforced", path)
    if path is not None and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        # before loading any weights: a mismatch is found in seconds, not after minutes of loading
        check_same_vocabulary(tokenizer, load_tokenizer(path, cfg.trust_remote_code), cfg.model, str(path))
    base = load_model(cfg.model, dtype, cfg.trust_remote_code).to(device)
    compiled = cfg.labels.compile
    if path is None:
        return None, model_pass(base, device, compiled)
    if peft_adapter.is_adapter_folder(path):
        shared = peft_adapter.load_adapter(base, path).to(dtype).eval()  # adapter in the base's dtype: no casts
        return lora_shared_passes(shared, device, compiled)
    reinforced = load_model(path, dtype, cfg.trust_remote_code).to(device)
    if model_vocab_size(reinforced) != model_vocab_size(base):
        raise WhpError(f"vocabulary size {model_vocab_size(reinforced)} differs from the baseline's {model_vocab_size(base)}", path)
    return model_pass(reinforced, device, compiled), model_pass(base, device, compiled)


def labels_folder(cfg: RunConfig, out: Path, text: str, dictionary: Dictionary) -> Path:
    uses_reinforced = cfg.labels.alpha > 0
    parts = {
        "model": model_identity(cfg.model),
        "reinforced": model_identity(reinforced_path(cfg, out)) if uses_reinforced else None,
        "corpus": _sha256(text),
        "retain": _sha256(read_text(cfg.retain)) if cfg.retain else None,
        "dictionary": _sha256(json.dumps(dictionary, sort_keys=True)),
        "block_size": cfg.corpus.block_size,
        "keep_tail": cfg.corpus.keep_tail,
        "labels": {k: v for k, v in to_dict(cfg)["labels"].items() if k not in ("batch_size", "shard_blocks", "compile")},
        "dtype": precision.dtype_name(run_dtype(cfg)),
        "shard_blocks": cfg.labels.shard_blocks,
        "format": 2,  # soft targets stored as full-vocabulary log-probabilities
    }
    return out / "labels" / fingerprint(parts)


def run_labels(cfg: RunConfig, out: Path, record: dict) -> Path:
    """Compute generic labels for every block, in shards (resumable)."""
    text = read_text(cfg.target)
    dictionary = _load_dictionary(cfg, text, out, record)
    if cfg.labels.alpha == 0 and not dictionary:
        raise WhpError("nothing to unlearn: labels.alpha is 0 and there is no anchored dictionary")
    folder = labels_folder(cfg, out, text, dictionary)
    if is_complete(folder):
        return folder
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    blocks = load_blocks(cfg.target, tokenizer, cfg.corpus)
    reinforced, baseline = _label_forwards(cfg, reinforced_path(cfg, out) if cfg.labels.alpha > 0 else None, tokenizer)
    align = _aligner(blocks, dictionary, tokenizer, cfg.labels.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    share = {"rank": distributed.rank(), "world_size": distributed.world_size()}  # this process's shards
    stats = compute_labels(folder, len(blocks), align, reinforced, baseline, cfg.labels, pad_id, **share)
    if cfg.retain:
        retain_blocks = load_blocks(cfg.retain, tokenizer, cfg.corpus)
        own_predictions = dataclasses.replace(cfg.labels, alpha=0.0)
        retain_stats = compute_labels(folder, len(retain_blocks), lambda i: identity_alignment(retain_blocks[i].ids),
                                      None, baseline, own_predictions, pad_id, prefix="retain", **share)
        stats.update(retain_blocks=retain_stats["blocks"], retain_seconds=retain_stats["compute_seconds"])
    stats = _summed_over_processes(stats)
    distributed.barrier()  # every shard is on disk
    tokens = sum(len(b.ids) for b in blocks)
    _record_stage(out, record, cfg, "labels", time.perf_counter() - started, folder=folder.name, tokens=tokens,
                  dictionary_keys=len(dictionary), processes=distributed.world_size(), **stats)
    if distributed.is_main():
        mark_complete(folder, len(blocks), cfg.labels)
    distributed.barrier()
    return folder


def _summed_over_processes(stats: dict) -> dict:
    """Counts summed over the processes; seconds are the slowest process's."""
    every = distributed.gather(stats)
    return {key: (max if key.endswith("seconds") else sum)(s[key] for s in every) for key in stats}


def _aligner(blocks: list[Block], dictionary: Dictionary, tokenizer, seed: int) -> Callable:
    matcher = AnchorMatcher(dictionary)

    def align(i: int):
        block = blocks[i]
        choice = draw_alternatives(dictionary, seed, block.index)
        return align_block(block.text, block.ids, block.offsets, tokenizer, matcher, choice)

    return align


def finished_labels(cfg: RunConfig, out: Path) -> Path:
    text = read_text(cfg.target)
    folder = labels_folder(cfg, out, text, _load_dictionary(cfg, text, out))
    if not is_complete(folder):
        raise WhpError("generic labels are not computed yet; run `whp labels` (or `whp unlearn`) first", folder)
    return folder


# ---- stage 3: fine-tune on generic labels ----------------------------------------------------


def run_finetune(cfg: RunConfig, out: Path, record: dict, folder: Path) -> Path:
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    examples = load_examples(folder) + load_examples(folder, prefix="retain")
    if cfg.finetune.loss == "soft" and "top_values" not in examples[0]:
        raise WhpError("finetune.loss=soft but these labels have no top-k logits (set labels.top_k)", folder)
    train_cfg = cfg.finetune.train
    model = trainable_baseline(cfg, train_cfg)
    loss_fn = functools.partial(whp_loss, loss=cfg.finetune.loss, retain_weight=cfg.finetune.retain_weight)
    result = train(model, examples, loss_fn, train_cfg, out / "work" / "finetune", "fine-tune on generic labels", run_dtype(cfg))
    _record_stage(out, record, cfg, "finetune", time.perf_counter() - started,
                  steps=result.steps, tokens=result.tokens, first_loss=result.losses[0], final_loss=result.losses[-1])
    save_unlearned(cfg, train_cfg, model, result, tokenizer, destination, record)
    return destination


# ---- methods that are one loss over the baseline (ga, gd, npo) ---------------------------------


def run_loss_method(cfg: RunConfig, out: Path, record: dict) -> Path:
    """Train the baseline with the method's loss on the target (and retain) blocks; DIR/model."""
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    method, settings = LOSS_METHODS[cfg.method], getattr(cfg, cfg.method)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    width = cfg.corpus.block_size
    target = lm_examples(load_blocks(cfg.target, tokenizer, cfg.corpus), is_retain=False, width=width)
    retain = []
    if cfg.retain and method.uses_retain:
        retain = lm_examples(load_blocks(cfg.retain, tokenizer, cfg.corpus), is_retain=True, width=width)
    model = trainable_baseline(cfg, settings.train)
    examples, loss_fn = method.prepare(model, target, retain, settings, run_dtype(cfg))
    result = train(model, examples, loss_fn, settings.train, out / "work" / cfg.method, cfg.method, run_dtype(cfg))
    _record_stage(out, record, cfg, cfg.method, time.perf_counter() - started, steps=result.steps, tokens=result.tokens,
                  first_loss=result.losses[0], final_loss=result.losses[-1], blocks=len(target), retain_blocks=len(retain))
    save_unlearned(cfg, settings.train, model, result, tokenizer, destination, record)
    return destination


# ---- inference-time WHP: the wrapper's folder ----------------------------------------------------


def _portable_name(model: str) -> str:
    """How the wrapper's folder names the baseline: the demo alias and hub ids as given, a local
    folder by its absolute path."""
    return str(Path(model).resolve()) if model != DEMO_MODEL_ALIAS and Path(model).exists() else model


def run_wrap(cfg: RunConfig, out: Path, record: dict) -> Path:
    """Write DIR/model: the folder form of `whp.inference.InferenceWHP` over baseline and R."""
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    reinforced = reinforced_path(cfg, out)
    if not reinforced.is_dir():
        raise WhpError("no reinforced model here: run `whp reinforce` first, or pass --reinforced", reinforced)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    if (reinforced / "tokenizer.json").is_file() or (reinforced / "tokenizer_config.json").is_file():
        check_same_vocabulary(tokenizer, load_tokenizer(reinforced, cfg.trust_remote_code), cfg.model, str(reinforced))
    _record_stage(out, record, cfg, "wrap", time.perf_counter() - started, alpha=cfg.inference.alpha)
    if distributed.is_main():
        write_inference_folder(destination, _portable_name(cfg.model), reinforced, cfg.inference.alpha, tokenizer,
                               model_card(cfg, record))
    distributed.barrier()
    return destination


# ---- model card ----------------------------------------------------------------------------------


def _training_line(train_cfg: TrainConfig) -> str:
    length = f"{train_cfg.max_steps} steps" if train_cfg.max_steps else f"{train_cfg.epochs} epochs"
    batch = f"batch {train_cfg.batch_size}x{train_cfg.grad_accum}"
    return f"lr {train_cfg.lr}, {length}, {batch}, {'LoRA (merged)' if train_cfg.lora else 'all weights'}"


def _method_lines(cfg: RunConfig) -> str:
    if cfg.method == "whp":
        return (f"by the \"Who's Harry Potter?\" method (Eldan & Russinovich, 2023)\n\n"
                f"- anchored dictionary: `{_dictionary_name(cfg)}`; alpha = {cfg.labels.alpha}; block size {cfg.corpus.block_size}\n"
                f"- fine-tuning: {cfg.finetune.loss} labels, {_training_line(cfg.finetune.train)}")
    if cfg.method == "whp-inference":
        return ("by inference-time WHP (no fine-tuning: the logits are v_B − α·ReLU(v_R − v_B) on the same input)\n\n"
                f"- alpha = {cfg.inference.alpha}; reinforced model: {'`' + cfg.reinforced + '`' if cfg.reinforced else 'trained on the target'}\n"
                "- load with `whp.models.load_model(<this folder>)` (not `from_pretrained`)")
    settings = getattr(cfg, cfg.method)
    retain = f"; retain text: {', '.join(f'`{r}`' for r in cfg.retain)}" if cfg.retain and LOSS_METHODS[cfg.method].uses_retain else ""
    return (f"by `{cfg.method}`: {LOSS_METHODS[cfg.method].description}\n\n"
            f"- training: {_training_line(settings.train)}; block size {cfg.corpus.block_size}{retain}")


def model_card(cfg: RunConfig, record: dict) -> str:
    """A Markdown card for the model folder: what was forgotten, how, and what it cost."""
    rows = "\n".join(
        f"| {stage} | {facts.get('seconds', '')} | {facts.get('tokens', '')} | {facts.get('final_loss', '')} |"
        for stage, facts in record["stages"].items()
    )
    return f"""---
library_name: transformers
tags: [unlearning, whp]
---

# Unlearned model (whp {whp.__version__})

Made with `whp unlearn --method {cfg.method}` from `{cfg.model}`, forgetting the text in
{', '.join(f'`{t}`' for t in cfg.target)}, {_method_lines(cfg)}

| stage | seconds | tokens | final loss |
|---|---|---|---|
{rows}

Measure what was forgotten and kept with `whp eval --model <this folder>`.
"""


def _dictionary_name(cfg: RunConfig) -> str:
    if not cfg.labels.use_dictionary:
        return "none"
    return cfg.anchors or "extracted from the target (anchors.yaml)"


# ---- all stages --------------------------------------------------------------------------------


def run_unlearn(cfg: RunConfig, out: Path, overwrite: bool = False, stages: tuple[str, ...] | None = None) -> Path:
    """Run (or resume) the chosen stages of the method (default: all) in order; returns the last
    stage's output."""
    cfg.check()
    method_stages = METHOD_STAGES[cfg.method]
    stages = method_stages if stages is None else stages
    foreign = [stage for stage in stages if stage not in method_stages]
    if foreign:
        raise WhpError(f"stage {foreign[0]!r} is not part of method {cfg.method!r} (its stages: {', '.join(method_stages)})")
    if "labels" in stages and cfg.anchors and cfg.labels.use_dictionary:
        load_dictionary(cfg.anchors)  # a bad dictionary fails now, not after the reinforcement stage
    out = Path(out)
    record = distributed.on_main(lambda: prepare_run_folder(cfg, out, overwrite))
    if (out / "model").is_dir() and method_stages[-1] in stages:
        log.info("the run is complete: %s", out / "model")
        return out / "model"
    result = None
    if "reinforce" in stages and (cfg.method == "whp-inference" or cfg.labels.alpha > 0):
        result = run_reinforce(cfg, out, record)
    if "labels" in stages:
        result = run_labels(cfg, out, record)
    if "finetune" in stages:
        folder = result if "labels" in stages else finished_labels(cfg, out)
        result = run_finetune(cfg, out, record, folder)
    if "wrap" in stages:
        result = run_wrap(cfg, out, record)
    if cfg.method in LOSS_METHODS:
        result = run_loss_method(cfg, out, record)
    if (out / "model").is_dir() and distributed.is_main():
        record["status"] = "complete"
        write_json(out / "run.json", record)
    return result
