"""`whp` command line: subcommands parse arguments, build a config, call the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from whp import precision
from whp.config import PRESETS
from whp.errors import WhpError

PRESET_HELP = ("start from a preset: paper (the defaults: the paper's settings, for 7B models on GPUs) or small "
               "(the measured recipe for small models on a CPU, as the demo runs)")

log = logging.getLogger("whp")

def _stage_commands() -> dict[str, tuple[tuple[str, ...] | None, str]]:
    """`whp unlearn` and one command per stage of WHP (whp.stages)."""
    from whp.stages import METHODS

    whp_stages = METHODS["whp"].stages
    return {"unlearn": (None, "run every stage of the method (WHP: " + ", ".join(s.name for s in whp_stages) + ")"),
            **{s.name: ((s.name,), f"WHP stage {i}: {s.help}") for i, s in enumerate(whp_stages, 1)}}


def _add_overrides(parser: argparse.ArgumentParser, text: str) -> None:
    """`--set KEY=VALUE`, repeatable, into args.overrides (what `whp.config.load_config` reads)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=text)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from whp.stages import METHODS

    parser.add_argument("--method", choices=list(METHODS), help="; ".join(f"{name}: {m.help}" for name, m in METHODS.items())
                        + " (default whp)")
    parser.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    parser.add_argument("--model", help="baseline model folder, hub id, or 'smollm2-135m-instruct'")
    parser.add_argument("--target", nargs="+", help="text file(s) to forget")
    parser.add_argument("--anchors", help="anchored dictionary (JSON or YAML): anchor -> generic alternatives (whp only)")
    parser.add_argument("--retain", nargs="+", help="general text the model must keep predicting as before (whp, gd, npo; optional but for gd)")
    parser.add_argument("--reinforced", help="use this reinforced model or LoRA adapter folder instead of training one")
    parser.add_argument("--out", required=True, type=Path, help="run folder (re-run the same command to resume)")
    parser.add_argument("--config", help="YAML config; flags and --set override it")
    _add_overrides(parser, "override one setting, e.g. --set labels.alpha=2 --set finetune.train.lr=1e-5")
    parser.add_argument("--overwrite", action="store_true", help="redo stages whose settings changed (or reuse a non-run folder)")
    parser.add_argument("--trust-remote-code", action="store_true", default=None, help="allow model code from the model folder")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whp", description="Make a causal LM forget a body of knowledge (Who's Harry Potter? method).")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in _stage_commands().items():
        _add_run_arguments(commands.add_parser(name, help=help_text, description=help_text))
    _add_eval_arguments(commands.add_parser("eval", help="measure familiarity, general ability, memorisation, relearning"))
    compare = commands.add_parser("compare", help="evaluate several runs (any method) and their baseline alike: one report",
                                  description="Evaluate the model of each run folder and the baseline they were made from "
                                              "with the same metrics; write OUT/compare.json and OUT/report.html.")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="finished `whp unlearn` folders")
    compare.add_argument("--baseline", help="the model to compare against (default: the one the runs were made from)")
    _add_eval_arguments(compare, models=False)
    prompts = commands.add_parser("prompts", help="draft completion prompts from a target text and an anchored dictionary (offline)")
    prompts.add_argument("--target", nargs="+", required=True, help="target text file(s)")
    prompts.add_argument("--anchors", required=True, help="anchored dictionary: prompts are cut just before its terms")
    prompts.add_argument("--n", type=int, default=100, help="how many prompts (default 100)")
    prompts.add_argument("--context-words", type=int, default=30, help="words of context before the term")
    prompts.add_argument("--seed", type=int, default=0)
    prompts.add_argument("--out", required=True, type=Path, help="JSON Lines file of {prompt, references}")
    _add_anchors_arguments(commands.add_parser(
        "anchors", help="draft an anchored dictionary from the target text (offline, or with an LLM endpoint)"))
    settings = commands.add_parser("settings", help="print every setting with its value and meaning, as a YAML config to edit",
                                   description="Print the settings of a run (the defaults, or those of --config and --set) as "
                                               "YAML with each setting's meaning as a comment: `whp settings > run.yaml`, "
                                               "edit, then `whp unlearn --config run.yaml ...`.")
    settings.add_argument("sections", nargs="*", help="only these sections (e.g. labels finetune)")
    settings.add_argument("--config", help="YAML config to resolve first")
    settings.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    _add_overrides(settings, "override one setting, e.g. --set labels.alpha=2")
    demo = commands.add_parser("demo", help="the built-in demo: forget Sherlock Holmes in SmolLM2-135M (CPU, minutes)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    _add_overrides(demo, "override a pipeline setting of the demo's config")
    demo.add_argument("--prompts", choices=["heldout", "tune"], default="heldout",
                      help="which prompt split to report (defaults were tuned on 'tune' only)")
    demo.add_argument("--anchors", help="dictionary file instead of the built-in one, or 'auto' to extract one from the corpus")
    return parser


def _add_anchors_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="baseline model folder, hub id, or 'smollm2-135m-instruct'")
    parser.add_argument("--target", nargs="+", required=True, help="text file(s) to forget")
    parser.add_argument("--reference", nargs="+", help="general (non-target) text for salience; default: the baseline's own likelihood")
    parser.add_argument("--reinforced", help="reinforced adapter or model folder (e.g. RUN/reinforced); default: train one on a sample")
    parser.add_argument("--save-reinforced", type=Path, help="keep the reinforced adapter trained here (no --reinforced) in this folder")
    parser.add_argument("--llm-url", help="OpenAI-compatible base URL: also draft entries with that LLM (key from $OPENAI_API_KEY; "
                                          "a slow local server: --set llm.workers=1 --set llm.timeout=SECONDS --set llm.max_tokens=N)")
    parser.add_argument("--llm-model", help="model name at --llm-url")
    parser.add_argument("--merge", help="your own dictionary (JSON or YAML) to merge in; its entries win")
    parser.add_argument("--out", required=True, type=Path, help="review file to write (YAML; --anchors reads it as it is)")
    parser.add_argument("--config", help="YAML of extraction settings (see whp.anchors.extract.ExtractConfig)")
    _add_overrides(parser, "override one setting, e.g. --set max_entries=500 --set min_count=5")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folder")
    parser.add_argument("--dtype", default="auto", choices=precision.SETTINGS, help=precision.HELP)


def _anchors(args: argparse.Namespace) -> None:
    from whp.anchors.dictionary import read_entries
    from whp.anchors.extract import ExtractConfig, extract
    from whp.anchors.review import write_review
    from whp.config import load_config
    from whp.corpus import read_text

    if bool(args.llm_url) != bool(args.llm_model):
        raise WhpError("give both --llm-url and --llm-model, or neither")
    llm = [f"llm.url={args.llm_url}", f"llm.model={args.llm_model}"] if args.llm_url else []
    cfg = load_config(args.config, [*args.overrides, *llm], cls=ExtractConfig)
    user = read_entries(args.merge) if args.merge else None  # a bad file fails before any model loads
    target = read_text(args.target)
    reference = read_text(args.reference) if args.reference else None
    entries, facts = extract(args.model, target, cfg, reference, args.reinforced, user, target_name=args.target[0],
                             trust_remote_code=args.trust_remote_code, save_reinforced=args.save_reinforced, dtype=args.dtype)
    source = f"target {', '.join(args.target)}; model {args.model}; reference {', '.join(args.reference or ['none (model likelihood)'])}"
    write_review(args.out, entries, source)
    counts = {p: sum(e.provenance == p for e in entries) for p in ("extracted", "extracted+llm", "llm", "user")}
    print(f"{len(entries)} entries ({', '.join(f'{n} {p}' for p, n in counts.items() if n)}) "
          f"from {facts['candidates']} candidates in {facts['seconds']:.0f} s: {args.out}")


def _add_eval_arguments(parser: argparse.ArgumentParser, models: bool = True) -> None:
    if models:
        parser.add_argument("--model", action="append", required=True, help="model folder (repeat to compare models)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (re-run to finish missing metrics)")
    parser.add_argument("--prompts", nargs="+", default=[],
                        help="prompt files: probability prompts ({prompt, continuations}) or completion prompts "
                             "({prompt, references}), told apart by their fields (default: the built-in Sherlock set)")
    parser.add_argument("--suite", choices=["standard", "robust", "all"],
                        help="which metrics run: standard (the default), robust (attacks that try to bring the target back) or all")
    parser.add_argument("--metrics", nargs="+", help="subset of metrics to run (any suite)")
    parser.add_argument("--benchmarks", nargs="+", help="lm-eval tasks, e.g. whp_arc_easy whp_piqa (local) or arc_easy (hub)")
    parser.add_argument("--benchmark-data", help="folder of the local benchmark jsonl files")
    parser.add_argument("--limit", type=int, help="items per benchmark task")
    parser.add_argument("--judge", choices=["reference", "llm"], help="completion judge (default: reference, offline)")
    parser.add_argument("--llm-url", help="OpenAI-compatible base URL of the LLM judge (a slow local server: "
                                          "--set llm_workers=1 --set llm_timeout=SECONDS --set llm_max_tokens=N)")
    parser.add_argument("--llm-model", help="model name of the LLM judge (key from $OPENAI_API_KEY or --set llm_key_env=...)")
    parser.add_argument("--config", help="YAML of evaluation settings (see whp.evaluate.suite.EvalConfig)")
    _add_overrides(parser, "override one setting")


def _eval_config(args: argparse.Namespace):
    from whp.config import load_config
    from whp.evaluate.prompts import prompt_file_kind
    from whp.evaluate.suite import BENCHMARKS, EvalConfig

    by_kind: dict[str, list[str]] = {"probability": [], "completion": []}
    for path in args.prompts:
        by_kind[prompt_file_kind(path)].append(path)
    metrics = args.metrics
    if metrics and args.benchmarks and BENCHMARKS not in metrics:  # --benchmarks asks for them, whatever --metrics lists
        metrics = [*metrics, BENCHMARKS]
    return load_config(args.config, args.overrides, cls=EvalConfig, probability_prompts=by_kind["probability"],
                       completion_prompts=by_kind["completion"], suite=args.suite, metrics=metrics, benchmarks=args.benchmarks,
                       benchmark_data=args.benchmark_data, benchmark_limit=args.limit, judge=args.judge,
                       llm_url=args.llm_url, llm_model=args.llm_model)


def _eval(args: argparse.Namespace) -> None:
    from whp.evaluate.suite import evaluate

    summary = evaluate(args.model, _eval_config(args), args.out)
    _print_summary(summary, args.out)


def _compare(args: argparse.Namespace) -> None:
    from whp.compare import compare

    summary = compare(args.runs, _eval_config(args), args.out, args.baseline)
    _print_summary(summary, args.out)


def _print_summary(summary: dict[str, dict[str, float]], out: Path) -> None:
    if _is_main_process():
        print(format_table(summary))
        print(f"report: {out / 'report.html'}")


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """Metrics as rows, models as columns, plain text."""
    models = list(summary)
    metrics = list(dict.fromkeys(m for row in summary.values() for m in row))
    width = max([len(m) for m in metrics] + [6])
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{m:>14}" for m in models)]
    for metric in metrics:
        cells = [summary[m].get(metric) for m in models]
        lines.append(f"{metric:<{width}}  " + "  ".join(f"{c:>14.4g}" if isinstance(c, (int, float)) else f"{'-':>14}" for c in cells))
    return "\n".join(lines)


def _run_stages(args: argparse.Namespace) -> None:
    from whp.config import load_config
    from whp.stages import run_unlearn

    cfg = load_config(args.config, args.overrides, preset=args.preset, method=args.method, model=args.model,
                      target=args.target, anchors=args.anchors, retain=args.retain, reinforced=args.reinforced,
                      trust_remote_code=args.trust_remote_code)
    stages, _ = _stage_commands()[args.command]
    result = run_unlearn(cfg, args.out, overwrite=args.overwrite, stages=stages)
    if _is_main_process():
        print(f"done: {result}")


def _prompts(args: argparse.Namespace) -> None:
    from whp.anchors.dictionary import load_dictionary
    from whp.corpus import read_text
    from whp.evaluate.promptgen import generate_prompts
    from whp.evaluate.prompts import write_completion_prompts

    drafted = generate_prompts(read_text(args.target), list(load_dictionary(args.anchors)), args.n,
                               context_words=args.context_words, seed=args.seed)
    write_completion_prompts(args.out, drafted)
    print(f"{len(drafted)} prompts: {args.out}")


def _settings(args: argparse.Namespace) -> None:
    from whp.config import commented_yaml, load_config

    print(commented_yaml(load_config(args.config, args.overrides, preset=args.preset), args.sections))


def _demo(args: argparse.Namespace) -> None:
    from whp.demo import run_demo

    run_demo(args.out, args.overrides, args.prompts, args.anchors)


def _is_main_process() -> bool:
    """Process 0 of an `accelerate launch` / `torchrun` group (or the only process) speaks for all."""
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    quiet = args.quiet or not _is_main_process()
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="whp: %(message)s")
    for noisy in ("transformers", "peft", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # progress bars (ours and the libraries') off
    try:
        {"demo": _demo, "settings": _settings, "eval": _eval, "compare": _compare, "prompts": _prompts, "anchors": _anchors}.get(args.command, _run_stages)(args)
    except WhpError as exc:
        print(f"whp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("whp: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
