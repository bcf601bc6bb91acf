"""Speed and peak memory of every stage on SmolLM2-135M, against this machine's own matmul rate.

For each stage: tokens/s, peak memory, and the fraction of the floor set by the model's FLOPs
per token at the machine's measured matmul rate (bf16 and fp32), i.e. model FLOPs utilisation
(MFU) against what torch.matmul reaches here on the model's own shapes:

    forward FLOPs / token  = 2·N + 4·L·d·T        (PaLM, appendix B; attention over the full
    training FLOPs / token = 6·N + 12·L·d·T        context T, not halved for causality)

N = weights that multiply every token (the L layers' projections and the LM head; not the
embedding lookup), L layers, d = heads × head dim, T = block length. A target token of the
label stage costs two forward passes. LoRA training is counted at 6·N like full fine-tuning
(standard MFU); its real arithmetic is nearer 4·N (no gradient for frozen weights), also printed.

The matmul rate: torch.matmul(x, w.t(), out=...) on each of the model's weight shapes at the best of
512, 1024 and 2048 rows, FLOPs of one pass ÷ time of its matmuls, in bf16 and in fp32 (the output
buffer is reused: on a VM whose fresh pages are slow, a new output per call measures page faults).

The naive reference for the label stage: two whole fp32 models (the baseline and a full
reinforced copy), batch 1, every (T, V) logit tensor kept and combined whole; its tokens/s and
ours are measured in the same run. Each measurement runs in a fresh process (its own peak RSS).

    flock -x /work/cpu.lock python benchmarks/stages.py [--tokens 8192] [--only labels,train]

Variants ("levers") of a stage: python benchmarks/stages.py --only train --train-variants full-b2,full-b2-fused,...
The target defaults to the Sherlock Holmes canon in ../shared/data (used here, never shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from label_stage import (  # the same target slice and "reinforced" models
    DEFAULT_ANCHORS,
    DEFAULT_TARGET,
    prepare,
)

BLOCK = 512

# name: (lora, batch_size, grad_accum, fused AdamW, frozen weights' dtype, torch.compile)
TRAIN_VARIANTS = {
    "full-b2": (False, 2, 1, False, "float32", False),
    "full-b2-fused": (False, 2, 1, True, "float32", False),
    "full-b4x4-fused": (False, 4, 4, True, "float32", False),
    "full-b2x8-fused": (False, 2, 8, True, "float32", False),
    "lora-b4": (True, 4, 1, False, "float32", False),
    "lora-b4-bf16base": (True, 4, 1, False, "bfloat16", False),
    "lora-b4x4-bf16base-fused": (True, 4, 4, True, "bfloat16", False),
    "lora-b8x2-bf16base-fused": (True, 8, 2, True, "bfloat16", False),
    "full-b4x4-fused-compile": (False, 4, 4, True, "float32", True),
    "lora-b4-compile": (True, 4, 1, False, "float32", True),
}
# name: (weights' dtype or "autocast" (fp32 weights, bf16 autocast), batch of blocks, LM-head rows,
#        torch.compile of the body, processes (torchrun; threads divided between them))
LABEL_VARIANTS = {
    "bf16-b4": ("bfloat16", 4, 512, False, 1),
    "bf16-b2": ("bfloat16", 2, 512, False, 1),
    "bf16-b8": ("bfloat16", 8, 512, False, 1),
    "bf16-b4-head128": ("bfloat16", 4, 128, False, 1),
    "bf16-b4-head2048": ("bfloat16", 4, 2048, False, 1),
    "fp32-b4": ("float32", 4, 512, False, 1),
    "autocast-b4": ("autocast", 4, 512, False, 1),
    "bf16-b4-compile": ("bfloat16", 4, 512, True, 1),
    "bf16-b4-2proc": ("bfloat16", 4, 512, False, 2),
    "bf16-b4-compile-2proc": ("bfloat16", 4, 512, True, 2),
    "bf16-b4-fullR": ("bfloat16", 4, 512, False, 1),  # the reinforced model a second full copy, not a LoRA adapter
}
LABEL_SHARD_BLOCKS = 4  # several shards even for 16 blocks, so that processes can share them
WARM_BATCHES = 3  # compilation happens in the first batches (a second time when the padded width first changes)


# ---- the floor ---------------------------------------------------------------------------------


def model_shapes(config) -> tuple[list[tuple[int, int]], int]:
    """(in, out) of every weight that multiplies each token once per layer, and the layer count;
    the LM head is the last entry (counted once)."""
    hidden, inner = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    layer = [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden), (hidden, inner), (hidden, inner), (inner, hidden)]
    return layer + [(hidden, config.vocab_size)], config.num_hidden_layers


def flops_per_token(config, seq_len: int) -> dict:
    shapes, layers = model_shapes(config)
    n = layers * sum(i * o for i, o in shapes[:-1]) + shapes[-1][0] * shapes[-1][1]
    d_attn = config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    attention = 4 * layers * d_attn * seq_len
    return {"N": n, "forward": 2 * n + attention, "train": 6 * n + 3 * attention, "lora_train_real": 4 * n + 3 * attention}


def matmul_rate(config, dtype_name: str, threads: int) -> dict:
    """FLOPs/s of one pass's matmuls (each weight shape at its best of 512/1024/2048 rows)."""
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    shapes, layers = model_shapes(config)
    total_flops, total_seconds, per_shape = 0.0, 0.0, {}
    for index, (k, n) in enumerate(shapes):
        weight = torch.randn(n, k, dtype=dtype)
        best = 0.0
        for m in (512, 1024, 2048):
            x, out = torch.randn(m, k, dtype=dtype), torch.empty(m, n, dtype=dtype)  # a reused output: no page faults
            for _ in range(3):
                torch.matmul(x, weight.t(), out=out)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < 0.4:
                torch.matmul(x, weight.t(), out=out)
                runs += 1
            best = max(best, 2 * m * k * n * runs / (time.perf_counter() - started))
        count = 1 if index == len(shapes) - 1 else layers
        total_flops += count * 2 * k * n
        total_seconds += count * 2 * k * n / best
        per_shape[f"{k}x{n}"] = round(best / 1e12, 3)
    return {"dtype": dtype_name, "tflops": round(total_flops / total_seconds / 1e12, 3), "per_shape_tflops": per_shape}


# ---- stages (children) -------------------------------------------------------------------------


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def child_labels(args) -> dict:
    import torch
    import whp.pipeline
    from whp.pipeline import prepare_run_folder, run_labels

    import whp.generic
    from whp.config import load_config

    dtype, batch, head_rows, compiled, _ = LABEL_VARIANTS[args.variant]
    whp.generic.HEAD_ROWS = head_rows
    if dtype == "autocast":
        dtype, passes = "float32", whp.pipeline.model_pass

        def autocast_pass(model, device):
            plain = passes(model, device)

            def body(ids):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return plain.body(ids)

            def head(states):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return plain.head(states)

            return whp.generic.ModelPass(body, head)

        whp.pipeline.model_pass = autocast_pass
    batch_times = []  # (seconds, target tokens) of each batch: the steady rate leaves out the first WARM_BATCHES
    timed = whp.generic.batch_labels

    def timed_batch_labels(blocks, *rest, **options):
        started = time.perf_counter()
        labels = timed(blocks, *rest, **options)
        batch_times.append((time.perf_counter() - started, sum(len(b.original_ids) for b in blocks)))
        return labels

    whp.generic.batch_labels = timed_batch_labels
    settings = [f"labels.batch_size={batch}", f"labels.dtype={dtype}", f"labels.shard_blocks={LABEL_SHARD_BLOCKS}",
                f"labels.compile={str(compiled).lower()}"]
    cfg = load_config(None, settings, model="smollm2-135m-instruct",
                      target=[str(args.work / "target.txt")], anchors=args.anchors,
                      reinforced=str(args.work / ("full" if args.variant.endswith("fullR") else "lora")))
    out = args.work / f"labels-{args.variant}"
    record = prepare_run_folder(cfg, out, overwrite=True)
    run_labels(cfg, out, record)
    stage = json.loads((out / "run.json").read_text())["stages"]["labels"]
    steady = batch_times[WARM_BATCHES:]
    return {"tokens": stage["tokens"], "seconds": stage["compute_seconds"],
            "steady_tokens_per_s": round(sum(n for _, n in steady) / sum(t for t, _ in steady), 1) if steady else None,
            "first_batches_seconds": [round(t, 2) for t, _ in batch_times[:WARM_BATCHES]]}


def child_naive(args) -> dict:
    """Two whole fp32 models, batch 1, full (T, V) logits of both kept, the formula on whole tensors."""
    import torch
    from whp.pipeline import _aligner

    from whp.anchors.dictionary import load_dictionary
    from whp.config import load_config
    from whp.corpus import load_blocks
    from whp.generic import generic_logits, lower_forbidden_
    from whp.models import load_model, load_tokenizer

    cfg = load_config(None, [], model="smollm2-135m-instruct", target=[str(args.work / "target.txt")])
    tokenizer = load_tokenizer(cfg.model)
    blocks = load_blocks(cfg.target, tokenizer, cfg.corpus)[: args.naive_blocks]
    align = _aligner(blocks, load_dictionary(args.anchors), tokenizer, 0)
    baseline, reinforced = load_model(cfg.model, torch.float32), load_model(args.work / "full", torch.float32)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(blocks)):
            aligned = align(i)
            v_r = reinforced(input_ids=torch.tensor([aligned.original_ids])).logits[0]  # (T, V)
            v_b = baseline(input_ids=torch.tensor([aligned.translated_ids])).logits[0]  # (T', V)
            source, target = torch.tensor(aligned.source_positions), torch.tensor(aligned.target_positions)
            v_gen = generic_logits(v_r[source], lower_forbidden_(v_b[target].clone(), target, aligned.forbidden), 5.0)
            labels = torch.full((len(aligned.original_ids),), -100)
            labels[source + 1] = v_gen.argmax(-1)
    return {"tokens": sum(len(b.ids) for b in blocks), "seconds": time.perf_counter() - started}


def child_train(args) -> dict:
    import torch

    import whp.train
    from whp.config import load_config
    from whp.corpus import load_blocks
    from whp.methods.lm import lm_examples, lm_loss
    from whp.methods.whp import hard_label_loss
    from whp.models import add_lora, load_model, load_tokenizer
    from whp.train import TrainConfig, train

    lora, batch, accum, fused, frozen_dtype, compiled = TRAIN_VARIANTS[args.variant]
    cfg = load_config(None, [], model="smollm2-135m-instruct", target=[str(args.work / "target.txt")])
    examples = lm_examples(load_blocks(cfg.target, load_tokenizer(cfg.model), cfg.corpus))
    model = load_model(cfg.model, getattr(torch, frozen_dtype))
    if lora:
        torch.manual_seed(0)
        model = add_lora(model, cfg.reinforce.train.lora_config)
    if fused:
        adamw = torch.optim.AdamW
        whp.train.torch.optim.AdamW = lambda *a, **k: adamw(*a, **k, fused=True)
    if compiled:
        model = torch.compile(model, dynamic=False)
    loss_fn = lm_loss if args.loss == "lm" else hard_label_loss
    warm = TrainConfig(lr=1e-6, max_steps=1, batch_size=batch, grad_accum=accum, lora=lora, checkpoint_every=0)
    train(model, examples, loss_fn, warm)  # first step: allocations, compilation
    steps = args.train_steps
    result = train(model, examples, loss_fn, TrainConfig(lr=1e-6, max_steps=steps, batch_size=batch, grad_accum=accum,
                                                         lora=lora, checkpoint_every=0))
    return {"tokens": steps * batch * accum * BLOCK, "seconds": result.seconds}


def child_eval(args) -> dict:
    import torch

    from whp.evaluate.perplexity import perplexity
    from whp.models import load_model, load_tokenizer

    model = load_model("smollm2-135m-instruct", getattr(torch, args.variant))
    text = (args.work / "target.txt").read_text()
    started = time.perf_counter()
    result = perplexity(model, load_tokenizer("smollm2-135m-instruct"), text, block_size=BLOCK, batch_size=4)
    return {"tokens": result["tokens"] + result["blocks"], "seconds": time.perf_counter() - started}


CHILDREN = {"labels": child_labels, "naive": child_naive, "train": child_train, "eval": child_eval}


def child_main(argv: list[str]) -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--stage")
    parser.add_argument("--variant")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--anchors")
    parser.add_argument("--loss", default="lm")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--naive-blocks", type=int)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = CHILDREN[args.stage](args)
    if os.environ.get("RANK", "0") == "0":  # several processes: rank 0's peak RSS (per process)
        print(json.dumps({**result, "peak_rss_gb": peak_rss_gb()}))


# ---- the parent ----------------------------------------------------------------------------------


def run_child(args, work: Path, stage: str, variant: str, loss: str = "lm") -> dict:
    processes = LABEL_VARIANTS[variant][4] if stage == "labels" else 1
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         "--nproc_per_node", str(processes)]
    command = [*launcher, __file__, "--child", "--stage", stage, "--variant", variant, "--work", str(work),
               "--anchors", args.anchors, "--loss", loss, "--threads", str(args.threads // processes),
               "--train-steps", str(args.train_steps), "--naive-blocks", str(args.naive_blocks)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{stage} {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def row(name: str, result: dict, flops: float, rates: dict, note: str = "") -> dict:
    tokens_per_s = result["tokens"] / result["seconds"]
    achieved = tokens_per_s * flops
    out = {"stage": name, "tokens_per_s": round(tokens_per_s, 1), "tflops": round(achieved / 1e12, 3),
           "of_bf16_rate": round(achieved / (rates["bfloat16"]["tflops"] * 1e12), 3),
           "of_fp32_rate": round(achieved / (rates["float32"]["tflops"] * 1e12), 3),
           "floor_tokens_per_s_bf16": round(rates["bfloat16"]["tflops"] * 1e12 / flops, 1),
           "peak_rss_gb": result["peak_rss_gb"], "seconds": round(result["seconds"], 2), "tokens": result["tokens"]}
    if result.get("steady_tokens_per_s"):
        steady = result["steady_tokens_per_s"] * flops
        out.update(steady_tokens_per_s=result["steady_tokens_per_s"], steady_of_bf16_rate=round(steady / (rates["bfloat16"]["tflops"] * 1e12), 3),
                   first_batches_seconds=result["first_batches_seconds"])
    if note:
        out["note"] = note
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--anchors", default=str(DEFAULT_ANCHORS))
    parser.add_argument("--tokens", type=int, default=8192, help="target tokens for the label stage and training data")
    parser.add_argument("--only", default="matmul,labels,naive,train,eval")
    parser.add_argument("--label-variants", default="bf16-b4")
    parser.add_argument("--train-variants", default="full-b2,lora-b4")
    parser.add_argument("--reinforce-variants", default="lora-b4", help="train variants also measured with the reinforcement (LM) loss")
    parser.add_argument("--eval-variants", default="bfloat16,float32")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--naive-blocks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    only = set(args.only.split(","))

    import torch
    from transformers import AutoConfig

    from whp.models import demo_model_path

    config = AutoConfig.from_pretrained(demo_model_path())
    flops = flops_per_token(config, BLOCK)
    print(json.dumps({"machine": "torch " + torch.__version__, "threads": args.threads, "flops_per_token": flops}), flush=True)
    rates = {d: matmul_rate(config, d, args.threads) for d in ("bfloat16", "float32")}
    for rate in rates.values():
        print(json.dumps({"matmul_rate": rate}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, args.target, args.tokens)
        if "labels" in only:
            measured = {variant: row(f"labels {variant}", run_child(args, work, "labels", variant), 2 * flops["forward"], rates)
                        for variant in args.label_variants.split(",")}
            ours = measured.get("bf16-b4") or next(iter(measured.values()))  # the stage's defaults, else the first variant
        if "naive" in only:
            naive = row("labels naive (2 fp32 models, batch 1, whole logits)", run_child(args, work, "naive", "fp32"),
                        2 * flops["forward"], rates)
            if "labels" in only:
                print(json.dumps({"ours_over_naive": round(ours["tokens_per_s"] / naive["tokens_per_s"], 2), "ours": ours["stage"]}), flush=True)
        if "train" in only:
            for variant in args.train_variants.split(","):
                lora = TRAIN_VARIANTS[variant][0]
                note = f"LoRA: real FLOPs/token {flops['lora_train_real'] / 1e6:.0f}M" if lora else ""
                for loss in ("lm", "whp") if variant in args.reinforce_variants.split(",") else ("whp",):
                    row(f"train {variant} ({'reinforce' if loss == 'lm' else 'fine-tune'} loss)",
                        run_child(args, work, "train", variant, loss), flops["train"], rates, note)
        if "eval" in only:
            for variant in args.eval_variants.split(","):
                row(f"eval forward {variant} (perplexity, batch 4)", run_child(args, work, "eval", variant), flops["forward"], rates)


if __name__ == "__main__":
    child_main(sys.argv[2:]) if sys.argv[1:2] == ["--child"] else main()
