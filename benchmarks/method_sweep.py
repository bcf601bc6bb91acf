"""Tune a loss method (ga, gd, npo) on the demo setting: one training run per learning rate, the
model saved and evaluated on the TUNE prompts after each of several step counts.

With a constant lr (after warm-up) the loop's state at step k is exactly that of a k-step run
(same batches, same seeds; `whp.train.train` resumes from its checkpoint when `max_steps` grows),
so one run yields the whole steps axis. Usage (2 CPU cores: minutes per run):

    python benchmarks/method_sweep.py --method npo --out runs/sweep --steps 25 50 100 \
        --set npo.train.lr=3e-4 --set npo.train.lora=true

Writes OUT/eval/<name>-s<steps>/ (whp eval's per-metric JSON; the base model's in OUT/eval/base),
OUT/<name>-s<steps>/model with --keep-models, and appends one line per point to OUT/sweep.jsonl: settings, steps, trained tokens, seconds, metrics.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path

from whp.pipeline import trainable_baseline

from whp import peft_adapter
from whp.corpus import load_blocks
from whp.demo import demo_eval_config, demo_run_config
from whp.evaluate.suite import evaluate_model
from whp.methods import LOSS_METHODS
from whp.methods.lm import lm_examples
from whp.models import load_tokenizer, save_model
from whp.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(LOSS_METHODS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="step counts at which to save and evaluate")
    parser.add_argument("--name", help="label of this run (default: method and overrides)")
    parser.add_argument("--group", help="curve this run's points join in the sweep report (default: --name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", default="tune", choices=["tune", "heldout"])
    parser.add_argument("--metrics", nargs="+", help="subset of the demo's metrics (default: all five)")
    parser.add_argument("--keep-models", action="store_true", help="keep each point's model folder (540 MB each for SmolLM2)")
    args = parser.parse_args()

    cfg = demo_run_config([f"method={args.method}", *args.overrides])
    cfg.check()
    method, settings = LOSS_METHODS[cfg.method], getattr(cfg, cfg.method)
    if settings.train.schedule != "constant":
        raise SystemExit("the steps axis is exact only with a constant lr: --set <method>.train.schedule=constant")
    name = args.name or "_".join([args.method, *(o.split(".")[-1] for o in args.overrides)])
    state = args.out / "work" / name / "checkpoint" / "state.json"
    if state.is_file() and json.loads(state.read_text())["step"] > min(args.steps):
        raise SystemExit(f"{state.parent} is past step {min(args.steps)} already: choose another --name")
    tokenizer = load_tokenizer(cfg.model)
    width = cfg.corpus.block_size
    target = lm_examples(load_blocks(cfg.target, tokenizer, cfg.corpus), is_retain=False, width=width)
    retain = lm_examples(load_blocks(cfg.retain, tokenizer, cfg.corpus), is_retain=True, width=width) if method.uses_retain else []
    model = trainable_baseline(cfg, settings.train)
    started = time.perf_counter()
    examples, loss_fn = method.prepare(model, target, retain, settings)
    seconds = time.perf_counter() - started
    eval_cfg = demo_eval_config(args.split)
    eval_cfg = dataclasses.replace(eval_cfg, metrics=args.metrics or eval_cfg.metrics)
    evaluate_model(cfg.model, "base", eval_cfg, args.out / "eval")
    for steps in sorted(args.steps):
        tick = time.perf_counter()
        train_cfg = dataclasses.replace(settings.train, max_steps=steps, checkpoint_every=steps)
        result = train(model, examples, loss_fn, train_cfg, args.out / "work" / name, f"{name} to {steps}")
        seconds += time.perf_counter() - tick
        label = f"{name}-s{steps}"
        folder = args.out / label / "model"
        save_model(peft_adapter.merged(copy.deepcopy(model)), tokenizer, folder)
        metrics = evaluate_model(str(folder), label, eval_cfg, args.out / "eval")
        if not args.keep_models:
            shutil.rmtree(folder.parent)
        row = {"label": label, "group": args.group or name, "method": args.method, "overrides": args.overrides, "steps": steps,
               "tokens": result.tokens, "train_seconds": round(seconds, 1), "final_loss": result.losses[-1], **metrics}
        with open(args.out / "sweep.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
