"""The run folder of `whp unlearn`: its record, its checks, and what each stage leaves in it.

    config.yaml          the resolved configuration (latest)
    run.json             method, versions, per-stage settings fingerprint, dtype, timings, token counts
    reinforced/          the reinforced model (LoRA adapter or full model) + tokenizer
    labels/<fp>/         generic-label shards keyed by a fingerprint of their inputs
    model/               the unlearned model, loads with `from_pretrained` (whp-inference: the
                         wrapper's folder, loads with `whp.models.load_model`)
    work/<stage>/        checkpoints and training logs
Every output is written to a temporary sibling and renamed into place, so a folder that exists
is finished; a re-run skips finished stages and resumes unfinished ones. A folder made with
other settings is refused unless `overwrite`, which removes the stages whose settings changed
(and those after them). Only the main process writes here.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import yaml

import whp
from whp import distributed, precision
from whp.common import fingerprint
from whp.errors import WhpError
from whp.files import read_json, write_json, write_yaml
from whp.models import resolve_model_path

if TYPE_CHECKING:
    from whp.config import RunConfig

log = logging.getLogger("whp")


def run_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype every stage of the run computes in (whp.precision)."""
    return precision.resolve_for(cfg.dtype, distributed.device())


def resolved_dict(cfg: RunConfig) -> dict:
    """The configuration as saved with the run: `dtype` resolved for this device."""
    return {**dataclasses.asdict(cfg), "dtype": precision.dtype_name(run_dtype(cfg))}


def reinforced_path(cfg: RunConfig, out: Path) -> Path:
    return Path(cfg.reinforced) if cfg.reinforced else out / "reinforced"


class RunRecord:
    """run.json of one run folder. `settings_of(stage)`: the settings a stage's result depends on
    (whp.stages knows them); their fingerprint is recorded with the stage."""

    def __init__(self, out: Path, data: dict, settings_of: Callable[[str], dict]):
        self.out, self.data, self.settings_of = out, data, settings_of

    @property
    def stages(self) -> dict:
        return self.data["stages"]

    def save(self) -> None:
        if distributed.is_main():
            write_json(self.out / "run.json", self.data)

    def stage_done(self, cfg: RunConfig, stage: str, seconds: float, **facts) -> None:
        """Record a stage's settings fingerprint, dtype, seconds (added over resumed attempts) and facts."""
        previous = self.stages.get(stage, {})
        self.stages[stage] = {
            "settings": fingerprint(self.settings_of(stage)),
            "dtype": precision.dtype_name(run_dtype(cfg)),
            "seconds": round(previous.get("seconds", 0.0) + seconds, 2),
            **facts,
        }
        self.save()


def check_paths(cfg: RunConfig, out: Path) -> None:
    """The output folder must not be, or lie inside, an input folder, nor hold an input."""
    out = out.resolve()
    folders = [resolve_model_path(cfg.model)] + ([cfg.reinforced] if cfg.reinforced else [])
    for folder in (Path(f).resolve() for f in folders if Path(f).exists()):
        if out == folder or folder in out.parents:
            raise WhpError(f"output folder is or lies inside the input folder {folder}; choose another --out", out)
    inputs = [*cfg.target, *([cfg.anchors] if cfg.anchors else []), *folders]
    own_products = {out / "reinforced"}
    for path in (Path(p).resolve() for p in inputs if Path(p).exists()):
        if out in path.parents and path not in own_products:
            raise WhpError(f"input {path} lies inside the output folder; choose another --out", out)


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _differences(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def open_run_folder(cfg: RunConfig, out: Path, overwrite: bool, stages: tuple[str, ...], outputs: dict[str, tuple[str, ...]],
             settings_of: Callable[[str], dict]) -> dict:
    """Create or reopen the run folder for a method made of `stages` (in order; `outputs[stage]`:
    the paths each writes) and return its record's data. A folder holding another run is
    refused unless `overwrite`; then the stages made with other settings, and those after them,
    are removed."""
    check_paths(cfg, out)
    record_path = out / "run.json"
    if out.exists() and any(out.iterdir()) and not record_path.is_file():
        if not overwrite:
            raise WhpError("output folder is not empty and holds no whp run; use --overwrite or another --out", out)
        shutil.rmtree(out)
    data = read_json(record_path) if record_path.is_file() else {"stages": {}}
    made_with = data.get("method", "whp")
    if data["stages"] and made_with != cfg.method:
        if not overwrite:
            raise WhpError(f"holds a run of method {made_with!r}, not {cfg.method!r}; use --overwrite to replace it, or another --out", out)
        shutil.rmtree(out)
        data = {"stages": {}}
    old_config = yaml.safe_load((out / "config.yaml").read_text()) if (out / "config.yaml").is_file() else {}
    for position, stage in enumerate(stages):
        done = data["stages"].get(stage)
        if done and done["settings"] != fingerprint(settings_of(stage)):
            if not overwrite:
                changed = _differences({k: old_config.get(k) for k in settings_of(stage)}, settings_of(stage))
                raise WhpError(f"holds a different run: stage {stage!r} was made with other settings "
                               f"({', '.join(changed) or 'inputs changed'}); use --overwrite to redo it, or another --out", out)
            for later in stages[position:]:
                for name in outputs[later]:
                    shutil.rmtree(out / name, ignore_errors=True)
                data["stages"].pop(later, None)
                log.info("removed stage %s (its settings changed)", later)
            break
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yaml", resolved_dict(cfg))
    data.update(method=cfg.method, whp=whp.__version__, versions=_versions(), command=sys.argv)
    write_json(record_path, data)
    return data


def _versions() -> dict:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
