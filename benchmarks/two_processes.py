"""One process against two (torchrun, gloo, CPU) on the demo model and corpus: the label shards'
bytes and the fine-tuning loss curve (issue 7). The tests do the same on a tiny random model;
this is the real one.

    python benchmarks/two_processes.py --reinforced runs/demo/reinforced [--out runs/two_processes] [--steps 10]

Labels of the demo corpus (about 100 blocks) with each process count, then `--steps` fine-tuning
steps on them with a global batch of 2 blocks × 2 micro-batches (one micro-batch per process when
there are two). Every process runs one CPU thread (torchrun's default): a bf16 matrix product
summed by 2 threads differs in its last bits from one summed by 1, so only equal threads per
process can give equal bytes. Prints one JSON line: identical shards, per-step losses and their
largest relative difference, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "whp" / "data" / "demo"


def whp_command(processes: int, stage: str, out: Path, reinforced: str, steps: int) -> list[str]:
    launcher = [sys.executable, "-m", "whp.cli"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", "whp.cli"]
    return [*launcher, "-q", stage, "--preset", "small", "--model", "smollm2-135m-instruct",
            "--target", *map(str, sorted((DEMO / "corpus").glob("*.txt"))), "--anchors", str(DEMO / "anchors.yaml"),
            "--retain", str(DEMO / "retain_train.txt"), "--reinforced", reinforced, "--out", str(out),
            "--set", f"finetune.train.max_steps={steps}", "--set", "finetune.train.batch_size=2",
            "--set", "finetune.train.grad_accum=2"]


def run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return round(time.perf_counter() - started, 1)


def losses(out: Path) -> list[float]:
    lines = (out / "work" / "finetune" / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reinforced", required=True, help="the demo run's reinforced adapter (e.g. runs/demo/reinforced)")
    parser.add_argument("--out", type=Path, default=Path("runs/two_processes"))
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    seconds = {}
    for processes in (1, 2):
        out = args.out / f"p{processes}"
        for stage in ("labels", "finetune"):
            seconds[f"{stage} p{processes}"] = run(whp_command(processes, stage, out, args.reinforced, args.steps))
    (one,), (two,) = ([*(args.out / p / "labels").iterdir()] for p in ("p1", "p2"))
    shards = sorted(p.name for p in one.glob("*.safetensors"))
    identical = one.name == two.name and all((one / n).read_bytes() == (two / n).read_bytes() for n in shards)
    curve_one, curve_two = losses(args.out / "p1"), losses(args.out / "p2")
    worst = max(abs(a - b) / abs(a) for a, b in zip(curve_one, curve_two))
    print(json.dumps({"label_shards": len(shards), "byte_identical": identical, "loss_one_process": curve_one,
                      "loss_two_processes": curve_two, "max_relative_loss_difference": worst, "seconds": seconds}))


if __name__ == "__main__":
    main()
