"""Quality of an extracted dictionary against a written reference list and a written judgement (issue 5).

    whp anchors --model smollm2-135m-instruct --target CANON [--reference TEXT ...] --out review.yaml
    python benchmarks/anchor_extraction.py review.yaml [--judgement benchmarks/anchors_top100_judgement.md]

Recall: the share of `anchors_reference.yaml` entries found within the top N (300) keys of the
review file, where an entry counts as found when it is one of those keys or is made of them (the
cleaner's rule, whp.anchors.dictionary.is_splittable). Precision: the share of the top 100 keys
judged "yes" in the judgement file, a Markdown table `| rank | key | yes/no | reason |` written by
a person for exactly these keys. `--draft-judgement FILE` writes the table's skeleton to fill in.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

from whp.anchors.dictionary import is_splittable  # noqa: E402


def ranked_keys(review: Path) -> list[str]:
    return list(yaml.safe_load(review.read_text()))


def recall(reference: list[str], keys: list[str]) -> tuple[float, list[str]]:
    top = set(keys)
    missed = [a for a in reference if a not in top and not is_splittable(a, top)]
    return 1 - len(missed) / len(reference), missed


_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*(yes|no)\s*\|\s*(.*?)\s*\|\s*$", re.IGNORECASE)


def precision(judgement: Path, keys: list[str]) -> tuple[float, list[str]]:
    judged = {}
    for line in judgement.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            judged[match.group(2)] = (match.group(3).lower() == "yes", match.group(4))
    missing = [k for k in keys if k not in judged]
    if missing:
        raise SystemExit(f"{judgement}: no judgement for {len(missing)} of the top {len(keys)} keys, e.g. {missing[:5]}")
    if any(not judged[k][1] for k in keys):
        raise SystemExit(f"{judgement}: every judgement needs a reason")
    no = [k for k in keys if not judged[k][0]]
    return 1 - len(no) / len(keys), no


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("review", type=Path, help="review file written by whp anchors")
    parser.add_argument("--reference-list", type=Path, default=HERE / "anchors_reference.yaml")
    parser.add_argument("--judgement", type=Path, help="Markdown judgement of the top 100")
    parser.add_argument("--draft-judgement", type=Path, help="write a judgement skeleton for the top 100 here")
    parser.add_argument("--top", type=int, default=300)
    args = parser.parse_args()
    keys = ranked_keys(args.review)
    reference = [a for group in yaml.safe_load(args.reference_list.read_text()).values() for a in group]
    share, missed = recall(reference, keys[: args.top])
    print(f"recall of {len(reference)} reference anchors within the top {args.top} of {len(keys)}: {share:.1%}")
    print(f"  missed: {', '.join(missed) or 'none'}")
    if args.draft_judgement:
        rows = "\n".join(f"| {i} | {k} | ? | |" for i, k in enumerate(keys[:100], start=1))
        args.draft_judgement.write_text(f"| rank | key | anchor? | reason |\n|---|---|---|---|\n{rows}\n")
    if args.judgement:
        share, no = precision(args.judgement, keys[:100])
        print(f"precision of the top 100 by the written judgement: {share:.1%}")
        print(f"  judged no: {', '.join(no) or 'none'}")


if __name__ == "__main__":
    main()
