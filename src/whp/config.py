"""Settings: one dataclass per section, YAML in (with `--set key=value` overrides and named
presets), the resolved configuration out.

A run's configuration is a `RunConfig`: its inputs, the precision, the corpus, one shared
`train` block of training settings, and one section per stage or method of the registry
(whp.stages.METHODS), each stage overriding only the training settings it changes
(`finetune.train: {lr: 1e-6, ...}`). Layers, each over the one before: the defaults (the
paper's, for a 7B model on GPUs) ← a preset (`--preset small`) ← a YAML file ← `--set` ← the
command's flags. Unknown keys and bad values are errors that name the setting.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from whp import precision
from whp.corpus import CorpusConfig
from whp.errors import WhpError, warn
from whp.stages import METHODS
from whp.train import TrainConfig, TrainOverrides

PRESETS = ("paper", "small")


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise WhpError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return Path(str(resources.files("whp") / "data" / "presets" / f"{name}.yaml"))


def _sections() -> dict[str, type]:
    """Every method's settings sections, in the order methods declare them."""
    sections: dict[str, type] = {}
    for method in METHODS.values():
        sections.update(method.sections)
    return sections


def _check(self) -> None:
    """Inputs a run needs, and their agreement with the method (after the command's flags)."""
    if self.method not in METHODS:
        raise WhpError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
    if not self.model:
        raise WhpError("no model given (--model or `model:` in the config)")
    if not self.target:
        raise WhpError("no target text given (--target or `target:` in the config)")
    if self.method == "whp" and self.finetune.loss == "soft" and not self.labels.top_k:
        raise WhpError("finetune.loss=soft needs labels.top_k > 0")
    method = METHODS[self.method]
    if method.needs_retain and not self.retain:
        raise WhpError(f"method {self.method} needs retain text (--retain)")
    if self.retain and not method.uses_retain:
        warn(f"method {self.method} uses no retain text: --retain is ignored")
    if self.anchors and not method.uses_anchors:
        warn(f"method {self.method} uses no anchored dictionary: --anchors is ignored")


def _train_for(self, section: str) -> TrainConfig:
    """The training settings of a stage or method: the shared `train` block with `section`'s
    `train` overrides (a nested `lora_config` mapping merges into the shared one)."""
    return from_dict(TrainConfig, getattr(self, section).train, f"{section}.train.", self.train)


def _post_init(self) -> None:
    precision.check_setting(self.dtype)
    for name in _sections():
        section = getattr(self, name)
        if hasattr(section, "train"):
            if not isinstance(section.train, dict):
                raise ValueError(f"{name}.train must be a mapping of training settings")
            self.train_for(name)  # unknown or bad training settings fail now


_INPUTS = [
    ("method", str, field(default="whp", metadata={"help": f"unlearning method: {', '.join(METHODS)}"})),
    ("model", str, field(default="", metadata={"help": "baseline model: a folder, a hub id, or 'smollm2-135m-instruct'"})),
    ("target", list[str], field(default_factory=list, metadata={"help": "text file(s) to forget"})),
    ("anchors", str | None, field(default=None, metadata={"help": "anchored dictionary, JSON or YAML; none = extracted from the target (see extract)"})),
    ("retain", list[str], field(default_factory=list, metadata={"help": "general text file(s) the model must keep predicting as before (optional)"})),
    ("reinforced", str | None, field(default=None, metadata={"help": "an existing reinforced model or adapter folder (skips the reinforce stage)"})),
    ("trust_remote_code", bool, field(default=False, metadata={"help": "allow model code from the model folder"})),
    ("preset", str | None, field(default=None, metadata={"help": f"the preset the settings started from: {', '.join(PRESETS)} (none: the defaults, the paper's)"})),
    ("dtype", str, field(default="auto", metadata={"help": precision.HELP + "; every stage of the run"})),
    ("corpus", CorpusConfig, field(default_factory=CorpusConfig)),
    ("train", TrainConfig, field(default_factory=TrainConfig, metadata={"help": "training settings shared by every training stage; each stage's `train` overrides some"})),
]

RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [*_INPUTS, *((name, cls, field(default_factory=cls)) for name, cls in _sections().items())],
    namespace={"__post_init__": _post_init, "check": _check, "train_for": _train_for,
               "__doc__": "Everything a `whp unlearn` run depends on: inputs, precision, corpus, shared training "
                          "settings, and the sections of every method's stages (whp.stages.METHODS)."},
)
RunConfig.__module__ = __name__


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
    if annotation is TrainOverrides:  # a stage's training overrides: merged over its defaults, key by key
        if not isinstance(value, dict):
            raise WhpError(f"setting {name!r} must be a mapping")
        return _overrides(_merged(default or {}, value), TrainConfig(), name)
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


def _overrides(values: dict, base: Any, name: str) -> dict:
    """Override values checked and typed against the fields of dataclass instance `base` (a
    nested mapping against its nested dataclass); they stay a mapping of the changed fields only."""
    hints = typing.get_type_hints(type(base))
    known = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise WhpError(f"unknown setting {name + '.' + unknown[0]!r} (known here: {', '.join(known)})")
    return {key: _overrides(value, getattr(base, key), f"{name}.{key}")
            if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict)
            else _coerce(value, hints[key], f"{name}.{key}", getattr(base, key)) for key, value in values.items()}


def _merged(base: dict, over: dict) -> dict:
    """`over` deep-merged into a copy of `base` (mappings merge, anything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


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


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WhpError("config file does not exist", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise WhpError(f"cannot parse: {str(exc).splitlines()[0]}", path) from exc
    if not isinstance(data, dict):
        raise WhpError("config must be a mapping", path)
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type | None = None, preset: str | None = None,
                **inputs: Any):
    """`cls` (default RunConfig) from its defaults ← a preset (`preset`, or `preset:` in the file)
    ← a YAML file (optional) ← `--set` overrides ← explicit inputs (the flags that were given)."""
    cls = cls or RunConfig
    data: dict = _read_yaml(path) if path else {}
    for assignment in overrides:
        apply_override(data, assignment)
    data.update({key: value for key, value in inputs.items() if value not in (None, [], ())})
    preset = preset or data.get("preset")
    if preset:
        preset_data = _read_yaml(preset_path(preset))
        base = from_dict(cls, preset_data) if cls is RunConfig else None
        if base is not None:
            data["preset"] = preset
            return from_dict(cls, data, base=base)
    return from_dict(cls, data)


def to_dict(cfg) -> dict:
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
