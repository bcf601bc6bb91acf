"""One report over a tuning sweep (benchmarks/method_sweep.py's OUT): every point's metrics, and
familiarity against retain perplexity with each method's points joined into a curve.

    python benchmarks/sweep_report.py runs/sweep [--extra LABEL=METHOD ...]

Curves come from OUT/sweep.jsonl (each row's `group`, default its run's name); other evaluation folders under OUT/eval (e.g. `whp eval` of
inference-time WHP at several α) are named with --extra, the baseline's folder is `base`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from whp.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--extra", nargs="*", default=[], metavar="LABEL=METHOD")
    parser.add_argument("--title", default="Tuning sweep on the demo's tune prompts")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.out / "sweep.jsonl").read_text().splitlines()]
    for row in rows:
        row.setdefault("group", row["label"].rsplit("-s", 1)[0])
    rows.sort(key=lambda row: (row["group"], row["steps"]))  # each curve in order of steps
    methods = {"base": "baseline", **{row["label"]: row["group"] for row in rows}}
    methods.update(dict(item.split("=", 1) for item in args.extra))
    folders = [args.out / "eval" / label for label in methods if (args.out / "eval" / label / "metrics.json").is_file()]
    runs = {folder.name: {"method": methods[folder.name]} for folder in folders}
    print(build_report(folders, args.out / "report.html", args.title, runs=runs))


if __name__ == "__main__":
    main()
