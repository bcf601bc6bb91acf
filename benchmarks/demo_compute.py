"""The compute of a finished demo (or any `whp unlearn` run) per stage, next to its wall time,
so that the figure carries from one machine to another.

    python benchmarks/demo_compute.py runs/demo [--out runs/demo/compute.json]

Tokens forward (the label stage: two passes per target token with a reinforced model, one per
retain token) and tokens forward+backward (training stages: every position of every block of
every step), seconds per stage from run.json, the evaluation's seconds from summary.json when the
folder is a demo's, and the machine (benchmarks/machine.py, without its matmul timing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import cpu_model


def compute(run: Path) -> dict:
    record = json.loads((run / "run.json").read_text())
    stages = {name: {"seconds": facts["seconds"], "dtype": facts.get("dtype"),
                     **{k: facts[k] for k in ("tokens_forward", "tokens_forward_backward", "steps") if k in facts}}
              for name, facts in record["stages"].items()}
    totals = {"tokens_forward": sum(s.get("tokens_forward", 0) for s in stages.values()),
              "tokens_forward_backward": sum(s.get("tokens_forward_backward", 0) for s in stages.values()),
              "unlearning_seconds": round(sum(s["seconds"] for s in stages.values()), 1)}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return {"cpu": cpu_model(), "stages": stages, "totals": totals, "demo_seconds": summary.get("seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(compute(args.run), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
