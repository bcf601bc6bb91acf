"""whp: make a causal language model forget a body of knowledge, by the "Who's Harry Potter?"
method of Eldan & Russinovich (2023), with an evaluation of what was forgotten and kept.

    import whp
    model_dir = whp.unlearn("smollm2-135m-instruct", ["books.txt"], "runs/mine", anchors="anchors.yaml", preset="small")
    scores = whp.evaluate([model_dir, "smollm2-135m-instruct"], "runs/mine/eval")
    model = whp.load_model(model_dir)
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

from whp.config import PRESETS, RunConfig, load_config  # noqa: E402
from whp.evaluate.suite import EvalConfig  # noqa: E402
from whp.inference import load_any_model as load_model  # noqa: E402


def unlearn(model: str, target: Sequence[str], out: str | Path, anchors: str | None = None, retain: Sequence[str] = (),
            method: str = "whp", preset: str | None = None, settings: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Run (or resume) every stage of `method` and return the unlearned model's folder.
    `settings`: overrides as on the command line, e.g. ["finetune.train.lr=1e-5"]."""
    from whp.stages import run_unlearn

    cfg = load_config(None, list(settings), preset=preset, method=method, model=model, target=list(target), anchors=anchors,
                      retain=list(retain))
    return Path(run_unlearn(cfg, Path(out), overwrite=overwrite))


def evaluate(models: Sequence[str | Path], out: str | Path, settings: Sequence[str] = (), **fields) -> dict[str, dict[str, float]]:
    """Evaluate each model (a folder, a hub id or a whp-inference folder) with the metrics of
    whp.evaluate.metrics; returns {model label: {metric: value}} and writes OUT/report.html.
    `fields` are EvalConfig fields (metrics=[...], probability_prompts=[...], ...)."""
    from whp.evaluate.suite import evaluate as run

    return run([str(m) for m in models], load_config(None, list(settings), cls=EvalConfig, **fields), Path(out))


__all__ = ["PRESETS", "EvalConfig", "RunConfig", "__version__", "evaluate", "load_config", "load_model", "unlearn"]
