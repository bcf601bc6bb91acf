"""One dataclass per stage, YAML in (with `--set key=value` overrides), resolved config out.

A run's configuration is a `RunConfig`: the inputs plus one section per stage. Unknown keys
and bad values are errors that name the setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from whp.anchors.extract import ExtractConfig
from whp import precision
from whp.corpus import CorpusConfig
from whp.errors import WhpError, warn
from whp.generic import LabelsConfig
from whp.methods import LOSS_METHODS
from whp.methods.ga import GAConfig
from whp.methods.gd import GDConfig
from whp.methods.npo import NPOConfig
from whp.train import TrainConfig

METHODS = ("whp", "whp-inference", *LOSS_METHODS)


@dataclass
class ReinforceConfig:
    """Stage 1: fine-tune the baseline further on the target (a LoRA adapter by default)."""

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=1e-4, epochs=3, batch_size=4, warmup_steps=10, lora=True),
        metadata={"help": "paper (7B, full): 3 epochs, lr 3e-6, batch 8x16; LoRA wants a larger lr"},
    )


@dataclass
class FinetuneConfig:
    """Stage 3: fine-tune the baseline on the generic labels."""

    loss: str = field(default="hard", metadata={"help": "hard (argmax labels, the paper's) or soft (needs labels.top_k > 0)"})
    retain_weight: float = field(default=1.0, metadata={"help": "weight of the loss on retain text (toward the baseline's own predictions)"})
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=1e-6, beta2=0.98, batch_size=8, grad_accum=16, max_steps=150, lora=False),
        metadata={"help": "paper (7B): lr 1e-6, batch 8x16, AdamW betas (0.9, 0.98), 120-150 steps"},
    )

    def __post_init__(self) -> None:
        if self.loss not in ("hard", "soft"):
            raise ValueError(f"loss must be hard or soft, got {self.loss!r}")
        if self.retain_weight < 0:
            raise ValueError("retain_weight must be >= 0")


@dataclass
class InferenceConfig:
    """`--method whp-inference`: no fine-tuning; the baseline and reinforced logits are combined
    at inference time, v_B − α·ReLU(v_R − v_B) on the same input (whp.inference)."""

    alpha: float = field(default=5.0, metadata={"help": "α of v_B − α·ReLU(v_R − v_B) (the paper's label stage: 5)"})

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")


@dataclass
class RunConfig:
    """Everything a `whp unlearn` run depends on."""

    method: str = field(default="whp", metadata={"help": f"unlearning method: {', '.join(METHODS)}"})
    model: str = field(default="", metadata={"help": "baseline model: a folder, a hub id, or 'smollm2-135m-instruct'"})
    target: list[str] = field(default_factory=list, metadata={"help": "text file(s) to forget"})
    anchors: str | None = field(default=None, metadata={"help": "anchored dictionary, JSON or YAML; none = extracted from the target (see extract)"})
    retain: list[str] = field(default_factory=list, metadata={"help": "general text file(s) the model must keep predicting as before (optional)"})
    reinforced: str | None = field(default=None, metadata={"help": "an existing reinforced model or adapter folder (skips stage 1)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from the model folder"})
    dtype: str = field(default="auto", metadata={"help": precision.HELP + "; every stage of the run"})
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig, metadata={"help": "dictionary extraction when no anchors are given"})
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    ga: GAConfig = field(default_factory=GAConfig)
    gd: GDConfig = field(default_factory=GDConfig)
    npo: NPOConfig = field(default_factory=NPOConfig)

    def __post_init__(self) -> None:
        precision.check_setting(self.dtype)

    def check(self) -> None:
        if self.method not in METHODS:
            raise WhpError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        if not self.model:
            raise WhpError("no model given (--model or `model:` in the config)")
        if not self.target:
            raise WhpError("no target text given (--target or `target:` in the config)")
        if self.method == "whp" and self.finetune.loss == "soft" and not self.labels.top_k:
            raise WhpError("finetune.loss=soft needs labels.top_k > 0")
        method = LOSS_METHODS.get(self.method)
        if method and method.needs_retain and not self.retain:
            raise WhpError(f"method {self.method} needs retain text (--retain)")
        if method and self.retain and not method.uses_retain:
            warn(f"method {self.method} uses no retain text: --retain is ignored")
        if self.anchors and self.method != "whp":
            warn(f"method {self.method} uses no anchored dictionary: --anchors is ignored")


def _coerce(value: Any, annotation: Any, name: str, default: Any) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise WhpError(f"setting {name!r} must be a mapping")
        return from_dict(type(default), value, name + ".", default)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = next(a for a in typing.get_args(annotation) if a is not type(None))
        return _coerce(value, inner, name, default)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, typing.get_args(annotation)[0], name, None) for v in items]
    if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads "1e-5" as a string
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        raise WhpError(f"setting {name!r} must be {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, prefix: str = "", base: Any = None):
    """Dataclass `cls` from nested dicts over `base` (default: `cls()`); errors name the setting."""
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise WhpError(f"unknown setting {prefix + unknown[0]!r} (known here: {', '.join(known)})")
    kwargs = {
        name: _coerce(data[name], hints[name], prefix + name, getattr(base, name)) if name in data else getattr(base, name)
        for name in known
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise WhpError(f"bad setting in {prefix.rstrip('.') or 'config'}: {exc}") from exc


def apply_override(data: dict, assignment: str) -> None:
    """`a.b.c=value` (value parsed as YAML) into nested dict `data`."""
    if "=" not in assignment:
        raise WhpError(f"--set expects key=value, got {assignment!r}")
    dotted, raw = assignment.split("=", 1)
    *parents, leaf = dotted.strip().split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise WhpError(f"--set {dotted}: {key!r} is not a section")
    node[leaf] = yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type = RunConfig, **inputs: Any):
    """`cls` (default RunConfig) from a YAML file (optional) ← `--set` overrides ← explicit
    inputs (the CLI flags that were given)."""
    data: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise WhpError("config file does not exist", path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise WhpError(f"cannot parse: {str(exc).splitlines()[0]}", path) from exc
        if not isinstance(data, dict):
            raise WhpError("config must be a mapping", path)
    for assignment in overrides:
        apply_override(data, assignment)
    data.update({key: value for key, value in inputs.items() if value not in (None, [], ())})
    return from_dict(cls, data)


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def commented_yaml(cfg: Any, sections: list[str] = (), indent: int = 0) -> str:
    """`cfg` (a config dataclass) as YAML with each setting's help as a comment: a config file to
    edit, which loads back to `cfg`. `sections` keeps only those top-level sections."""
    names = [f.name for f in dataclasses.fields(cfg)]
    unknown = sorted(set(sections) - set(names))
    if unknown:
        raise WhpError(f"unknown section {unknown[0]!r} (known: {', '.join(names)})")
    lines, pad = [], "  " * indent
    for spec in dataclasses.fields(cfg):
        if sections and spec.name not in sections:
            continue
        value = getattr(cfg, spec.name)
        if dataclasses.is_dataclass(value):
            note = spec.metadata.get("help") or (type(value).__doc__ or "").strip().splitlines()[0]
            lines += [f"{pad}{spec.name}:  # {note}", commented_yaml(value, indent=indent + 1)]
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).removesuffix("...\n").strip()
            note = spec.metadata.get("help")
            lines.append(f"{pad}{spec.name}: {text}" + (f"  # {note}" if note else ""))
    return "\n".join(lines)
