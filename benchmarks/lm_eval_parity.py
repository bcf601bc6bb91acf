"""Check that whp's lm-eval adapter scores a local task as the `lm_eval` command line does.

Runs the demo model (SmolLM2-135M, fp32, CPU) on one local task twice: in memory through
`whp.lm_eval_adapter.run_benchmarks`, then through `lm_eval run --include_path` over the same
resolved task folder. Prints both accuracies, the commands and wall times; exits 1 when they
differ by more than `--tolerance` points.

    WHP_EVAL_DATA=/path/to/eval .venv/bin/python benchmarks/lm_eval_parity.py --limit 500
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from whp.lm_eval_adapter import run_benchmarks, write_task_dir
from whp.models import demo_model_path, load_model, load_tokenizer


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="whp_arc_easy", help="local task name")
    parser.add_argument("--limit", type=int, default=500, help="first N items of the task")
    parser.add_argument("--data-dir", default=None, help="benchmark jsonl folder (default: $WHP_EVAL_DATA)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed difference, in points")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here as JSON")
    return parser


def adapter_run(model_dir: Path, args) -> dict:
    """Accuracy through the in-memory adapter, with its wall time (model loading excluded)."""
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    start = time.perf_counter()
    scores = run_benchmarks(model, tokenizer, [args.task], args.data_dir, args.limit, args.batch_size)
    seconds = time.perf_counter() - start
    call = f"run_benchmarks(model, tokenizer, [{args.task!r}], data_dir, limit={args.limit}, batch_size={args.batch_size})"
    return {"command": call, "seconds": round(seconds, 1), **scores[args.task]}


def cli_command(model_dir: Path, include_dir: Path, output_dir: Path, args) -> list[str]:
    lm_eval = Path(sys.executable).parent / "lm_eval"
    return [
        str(lm_eval), "run", "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32",
        "--tasks", args.task, "--include_path", str(include_dir),
        "--limit", str(args.limit), "--batch_size", str(args.batch_size),
        "--device", "cpu", "--output_path", str(output_dir),
    ]  # fmt: skip


def cli_run(model_dir: Path, args) -> dict:
    """Accuracy through the `lm_eval` command line on the same resolved task folder (wall time includes loading)."""
    with tempfile.TemporaryDirectory(prefix="whp-parity-") as tmp:
        include_dir = write_task_dir([args.task], args.data_dir, Path(tmp) / "tasks")
        command = cli_command(model_dir, include_dir, Path(tmp) / "out", args)
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        result_file = next((Path(tmp) / "out").rglob("results_*.json"))
        row = json.loads(result_file.read_text())["results"][args.task]
    return {
        "command": shlex.join(command),
        "seconds": round(seconds, 1),
        "acc": row["acc,none"],
        "acc_norm": row.get("acc_norm,none"),
    }


def main(args) -> int:
    model_dir = demo_model_path()
    adapter = adapter_run(model_dir, args)
    cli = cli_run(model_dir, args)
    gap = 100 * abs(adapter["acc"] - cli["acc"])
    report = {"task": args.task, "limit": args.limit, "adapter": adapter, "cli": cli, "gap_points": round(gap, 3)}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if gap <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main(make_parser().parse_args()))
