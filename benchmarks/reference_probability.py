"""Reference probability on completion prompts: a finer tune signal than the grade-3 count.

    python benchmarks/reference_probability.py runs/NAME/model [--prompts tune|heldout] [--show 20]

For each prompt of the demo's completion_<split>.jsonl, the model's next-token probability of
its references' first tokens (`probability_familiarity` with the references as continuations,
bf16 weights); prints their mean (R) and how many prompts have a reference as the top token.
`base` stands for the demo's base model. Used by the demo's selection rule of round 8
(benchmarks/RESULTS.md, session 15).
"""

from __future__ import annotations

import argparse
import json

import torch

from whp.evaluate.familiarity import probability_familiarity
from whp.evaluate.prompts import ProbabilityPrompt, load_completion_prompts
from whp.evaluate.suite import demo_file
from whp.models import demo_model_path, load_model, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder, or 'base'")
    parser.add_argument("--prompts", choices=["tune", "heldout"], default="tune")
    parser.add_argument("--show", type=int, default=0, help="also list the N prompts of highest probability")
    args = parser.parse_args()
    path = str(demo_model_path()) if args.model == "base" else args.model
    completion_prompts = load_completion_prompts(demo_file(f"completion_{args.prompts}.jsonl"))
    prompts = [ProbabilityPrompt(p.prompt, p.references) for p in completion_prompts]
    result = probability_familiarity(load_model(path, torch.bfloat16), load_tokenizer(path), prompts)
    top1 = sum(row["rank"] == 1 for row in result["prompts"])
    print(json.dumps({"model": args.model, "prompts": args.prompts, "R": round(result["value"], 4),
                      "reference_top1": top1, "n": result["n"]}))
    for row in sorted(result["prompts"], key=lambda r: -r["probability"])[: args.show]:
        print(f"{row['probability']:.3f}  top {row['top1']!r:14}  {row['prompt'][-70:]!r}")


if __name__ == "__main__":
    main()
