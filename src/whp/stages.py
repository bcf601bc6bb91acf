"""The stages of every unlearning method, declared once, and the driver that runs them.

A `Stage` is a name, the settings its result depends on, the run-folder paths it writes and
the function that makes them; a `Method` is a list of stages and the settings sections they
read. WHP is reinforce → labels → finetune; inference-time WHP is reinforce → wrap; each method
that is one loss over the baseline (whp.methods.LOSS_METHODS) is one stage of its own name.
The configuration's sections, `--method`'s choices and the run folder's checks all come from
`METHODS`. Every process runs the same stages on its share of the work (whp.distributed).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from whp import distributed
from whp.anchors.dictionary import load_dictionary
from whp.anchors.extract import ExtractConfig
from whp.errors import WhpError
from whp.finetune import FinetuneConfig, run_finetune
from whp.inference import InferenceConfig, run_wrap
from whp.labels import LabelsConfig, finished_labels, run_labels
from whp.loss_stage import run_loss_method
from whp.methods import LOSS_METHODS
from whp.methods.base import LossMethod
from whp.reinforce import ReinforceConfig, run_reinforce
from whp.runs import RunRecord, open_run_folder, resolved_dict

if TYPE_CHECKING:
    from whp.config import RunConfig

log = logging.getLogger("whp")

StageRun = Callable[["RunConfig", Path, RunRecord, "Path | None"], "Path | None"]  # (cfg, out, record, previous output)


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageRun
    settings: tuple[str, ...]  # RunConfig fields its result depends on, besides those of the stages before it
    outputs: tuple[str, ...]  # run-folder paths it writes (removed when it is redone)
    trains: str | None = None  # the section whose `train` overrides it trains with
    help: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    stages: tuple[Stage, ...]
    sections: dict[str, type]  # settings sections of RunConfig that it reads, beyond corpus and train
    uses_retain: bool
    needs_retain: bool
    uses_anchors: bool
    help: str


BASELINE = ("model", "target", "trust_remote_code", "dtype", "corpus")


def _reinforce(cfg: RunConfig, out: Path, record: RunRecord, previous: Path | None) -> Path | None:
    if cfg.method == "whp" and cfg.labels.alpha == 0:
        return None  # anchors alone: no reinforced model
    return run_reinforce(cfg, out, record)


REINFORCE = Stage("reinforce", _reinforce, (*BASELINE, "reinforced", "reinforce"), ("reinforced", "work/reinforce"),
                  trains="reinforce", help="fine-tune the baseline further on the target (OUT/reinforced)")
LABELS = Stage("labels", lambda cfg, out, record, previous: run_labels(cfg, out, record), ("anchors", "extract", "retain", "labels"),
               ("labels",), help="generic labels from the baseline, reinforced model and dictionary (OUT/labels)")
FINETUNE = Stage("finetune", lambda cfg, out, record, previous: run_finetune(cfg, out, record, previous or finished_labels(cfg, out)),
                 ("finetune",), ("model", "work/finetune"), trains="finetune",
                 help="fine-tune the baseline on the generic labels (OUT/model)")
WRAP = Stage("wrap", lambda cfg, out, record, previous: run_wrap(cfg, out, record), ("inference",), ("model",),
             help="write the inference-time wrapper's folder (OUT/model)")


def loss_method(method: LossMethod) -> Method:
    """The one-stage method of a loss over the baseline."""
    stage = Stage(method.name, lambda cfg, out, record, previous: run_loss_method(cfg, out, record),
                  (*BASELINE, *(("retain",) if method.uses_retain else ()), method.name), ("model", f"work/{method.name}"),
                  trains=method.name, help=method.description)
    return Method(method.name, (stage,), {method.name: method.config}, method.uses_retain, method.needs_retain, False,
                  method.description)


METHODS: dict[str, Method] = {
    "whp": Method("whp", (REINFORCE, LABELS, FINETUNE),
                  {"reinforce": ReinforceConfig, "labels": LabelsConfig, "extract": ExtractConfig, "finetune": FinetuneConfig},
                  uses_retain=True, needs_retain=False, uses_anchors=True,
                  help="the paper's method: reinforced model, generic labels, fine-tuning on them"),
    "whp-inference": Method("whp-inference", (REINFORCE, WRAP), {"reinforce": ReinforceConfig, "inference": InferenceConfig},
                            uses_retain=False, needs_retain=False, uses_anchors=False,
                            help="generic logits at inference time, no fine-tuning (as MUSE evaluates WHP)"),
    **{name: loss_method(m) for name, m in LOSS_METHODS.items()},
}
STAGES: dict[str, Stage] = {stage.name: stage for method in METHODS.values() for stage in method.stages}


def stage_settings(cfg: RunConfig, stage: str) -> dict:
    """What the result of `stage` depends on: its settings and those of the stages before it in
    the run's method, the training ones as the stage trains with them (shared block + overrides)."""
    stages = METHODS[cfg.method].stages
    upto = stages[: [s.name for s in stages].index(stage) + 1]
    keys = [key for s in upto for key in s.settings]
    if cfg.anchors or not cfg.labels.use_dictionary:  # extraction settings matter only when it runs
        keys = [key for key in keys if key != "extract"]
    full = resolved_dict(cfg)
    settings = {key: full[key] for key in keys}
    for s in upto:
        if s.trains:
            settings[f"train ({s.name})"] = dataclasses.asdict(cfg.train_for(s.trains))
    return settings


def open_run(cfg: RunConfig, out: Path, overwrite: bool = False) -> RunRecord:
    """Create or reopen the run folder of `cfg`'s method (whp.runs.open_run_folder), in every process."""
    method = METHODS[cfg.method]
    settings_of = functools.partial(stage_settings, cfg)
    outputs = {s.name: s.outputs for s in method.stages}
    names = tuple(s.name for s in method.stages)
    data = distributed.on_main(lambda: open_run_folder(cfg, Path(out), overwrite, names, outputs, settings_of))
    return RunRecord(Path(out), data, settings_of)


def run_unlearn(cfg: RunConfig, out: Path, overwrite: bool = False, stages: tuple[str, ...] | None = None) -> Path:
    """Run (or resume) the chosen stages of the method (default: all) in order; returns the last
    stage's output."""
    cfg.check()
    method = METHODS[cfg.method]
    names = tuple(s.name for s in method.stages)
    chosen = names if stages is None else stages
    foreign = [s for s in chosen if s not in names]
    if foreign:
        raise WhpError(f"stage {foreign[0]!r} is not part of method {cfg.method!r} (its stages: {', '.join(names)})")
    if "labels" in chosen and cfg.anchors and cfg.labels.use_dictionary:
        load_dictionary(cfg.anchors)  # a bad dictionary fails now, not after the reinforcement stage
    out = Path(out)
    record = open_run(cfg, out, overwrite)
    if (out / "model").is_dir() and names[-1] in chosen:
        log.info("the run is complete: %s", out / "model")
        return out / "model"
    result = None
    for stage in method.stages:
        if stage.name in chosen:
            result = stage.run(cfg, out, record, result)
    if (out / "model").is_dir():
        record.data["status"] = "complete"
        record.save()
    return result
