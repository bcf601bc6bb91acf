"""Label-stage throughput and peak memory on SmolLM2-135M (issue 2's target: ≥ 700 target
tokens/s through the label stage, two forward passes each, and peak RSS ≤ 1.5 GB).

Each setting runs in a fresh process so that its peak RSS is its own:
- lora: the reinforced model is a LoRA adapter on the shared base (adapter disabled = baseline);
- full: the reinforced model is a second full copy of the weights.

    python benchmarks/label_stage.py [--target FILE] [--tokens 20000] [--anchors FILE]

The target defaults to the Sherlock Holmes canon in ../shared/data (used here, never shipped).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TARGET = ROOT.parent / "shared" / "data" / "corpora" / "sherlock_complete_canon.txt"
DEFAULT_ANCHORS = ROOT / "src" / "whp" / "data" / "demo" / "anchors.yaml"


def prepare(work: Path, target: Path, n_tokens: int) -> dict:
    """The target slice, a LoRA adapter and a full 'reinforced' copy, with perturbed weights."""
    import torch

    from whp.models import (
        LoraConfig,
        add_lora,
        demo_model_path,
        load_model,
        load_tokenizer,
        save_model,
    )

    base = demo_model_path()
    tokenizer = load_tokenizer(base)
    ids = tokenizer(target.read_text()[: n_tokens * 6], add_special_tokens=False)["input_ids"][:n_tokens]
    (work / "target.txt").write_text(tokenizer.decode(ids))
    torch.manual_seed(0)
    adapter = add_lora(load_model(base), LoraConfig())
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-3)  # a trained adapter is non-zero; compute is the same either way
    adapter.save_pretrained(work / "lora")
    full = load_model(base)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(torch.randn_like(p) * 1e-4)
    save_model(full, tokenizer, work / "full")
    return {"base": str(base), "target": str(work / "target.txt")}


def run_one(args: argparse.Namespace) -> None:
    """Child process: one labels stage, printing JSON with throughput and peak RSS."""
    import torch
    from whp.pipeline import prepare_run_folder, run_labels

    from whp.config import load_config

    torch.set_num_threads(args.threads)
    overrides = [f"labels.batch_size={args.batch_size}", f"labels.dtype={args.dtype}", f"labels.top_k={args.top_k}"]
    cfg = load_config(None, overrides, model=args.base, target=[args.target], anchors=args.anchors,
                      reinforced=str(Path(args.work) / args.mode))
    out = Path(args.work) / f"run-{args.mode}-{args.dtype}-{args.batch_size}"
    record = prepare_run_folder(cfg, out, overwrite=True)
    started = time.perf_counter()
    run_labels(cfg, out, record)
    seconds = time.perf_counter() - started
    stage = json.loads((out / "run.json").read_text())["stages"]["labels"]
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({
        "mode": args.mode, "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads,
        "target_tokens": stage["tokens"], "stage_seconds": round(seconds, 1),
        "tokens_per_s_with_loading": round(stage["tokens"] / seconds, 1),
        "tokens_per_s_compute": round(stage["tokens"] / stage["compute_seconds"], 1),
        "peak_rss_gb": round(peak_rss_gb, 3),
    }))


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    for name in ("mode", "work", "base", "target", "anchors", "dtype"):
        parser.add_argument(f"--{name}")
    for name in ("batch-size", "top-k", "threads"):
        parser.add_argument(f"--{name}", type=int)
    run_one(parser.parse_args(argv))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--anchors", default=str(DEFAULT_ANCHORS) if DEFAULT_ANCHORS.is_file() else None)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--modes", default="lora,full")
    parser.add_argument("--dtypes", default="bfloat16")
    parser.add_argument("--batch-sizes", default="4")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = prepare(work, args.target, args.tokens)
        for mode in args.modes.split(","):
            for dtype in args.dtypes.split(","):
                for batch_size in args.batch_sizes.split(","):
                    command = [sys.executable, __file__, "--child", "--mode", mode, "--work", str(work),
                               "--base", paths["base"], "--target", paths["target"], "--dtype", dtype,
                               "--batch-size", batch_size, "--top-k", str(args.top_k), "--threads", str(args.threads)]
                    if args.anchors:
                        command += ["--anchors", args.anchors]
                    result = subprocess.run(command, capture_output=True, text=True)
                    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
                    print(lines[-1] if lines else result.stderr[-2000:], flush=True)


if __name__ == "__main__":
    child_main(sys.argv[2:]) if sys.argv[1:2] == ["--child"] else main()
