"""Speed of each WHP stage on this machine, in the dtype the precision policy picks here, against
the floor that the model's FLOPs set at this machine's matmul rate in that dtype.

    python benchmarks/stages.py [--dtype auto] [--steps 12] [--out runs/bench/stages.json]

SmolLM2-135M-Instruct, the demo corpus and dictionary, the `small` preset (blocks of 256 tokens,
LoRA), through the library's own stages: reinforcement and fine-tuning for `--steps` steps each,
the label stage over the whole corpus. Each stage's tokens/s comes from its record in run.json
(the stage's wall time, loading included). FLOPs per token (PaLM, appendix B): forward
2N + 4·L·d·T, training 6N + 12·L·d·T, N the weights that multiply every token (the layers'
projections and the LM head). A target token of the label stage costs two forward passes.
The matmul rate is benchmarks/machine.py's, in the dtype in force. Writes one JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from machine import describe


def flops_per_token(config, length: int) -> dict:
    head_dim = config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    h, inner = config.hidden_size, config.intermediate_size
    n = config.num_hidden_layers * (h * q + 2 * h * kv + q * h + 3 * h * inner) + h * config.vocab_size
    attention = 4 * config.num_hidden_layers * q * length
    return {"N": n, "forward": 2 * n + attention, "train": 6 * n + 3 * attention}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32 (whp.precision)")
    parser.add_argument("--steps", type=int, default=12, help="reinforcement and fine-tuning steps")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    args = parser.parse_args()

    from whp.demo import demo_run_config
    from whp.models import load_model
    from whp.stages import run_unlearn

    machine = describe(args.dtype)
    cfg = demo_run_config([f"dtype={args.dtype}", f"reinforce.train.max_steps={args.steps}",
                           f"finetune.train.max_steps={args.steps}", "reinforce.train.checkpoint_every=0",
                           "finetune.train.checkpoint_every=0"])
    flops = flops_per_token(load_model(cfg.model).config, cfg.corpus.block_size)
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        run_unlearn(cfg, Path(work) / "run")
        stages = json.loads((Path(work) / "run" / "run.json").read_text())["stages"]
    rate = machine["matmul_tflops"] * 1e12
    rows = {
        "reinforce": (stages["reinforce"]["tokens_forward_backward"], stages["reinforce"]["seconds"], flops["train"]),
        "labels": (stages["labels"]["tokens_forward"], stages["labels"]["seconds"], flops["forward"]),
        "finetune": (stages["finetune"]["tokens_forward_backward"], stages["finetune"]["seconds"], flops["train"]),
    }
    report = {"machine": machine, "flops_per_token": flops, "total_seconds": round(time.perf_counter() - started, 1), "stages": {
        name: {"tokens": tokens, "seconds": seconds, "tokens_per_s": round(tokens / seconds, 1),
               "floor_seconds": round(tokens * per_token / rate, 1), "of_floor": round(tokens * per_token / rate / seconds, 3)}
        for name, (tokens, seconds, per_token) in rows.items()}}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
