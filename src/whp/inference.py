"""Inference-time WHP (the variant MUSE evaluates): no fine-tuning, the generic logits are used
directly at every step,

    logits = v_B − α · ReLU(v_R − v_B)

with v_B the baseline's and v_R the reinforced model's logits on the SAME input (no anchored
translation, no label stage). When R is a LoRA adapter the two share the base weights (v_B is R
with the adapter disabled); a full reinforced model is held beside the baseline.

`InferenceWHP` is a `PreTrainedModel` with `generate`, so every metric of `whp eval` runs on it
unchanged (probabilities, perplexity, greedy or sampled completions with a KV cache, lm-eval
benchmarks). Generation keeps two caches: the one `generate` hands in serves the baseline, and
a companion cache, looked up by that object, serves the reinforced pass. Beam search, which
reorders only the first, is not supported.

Folder form (what `whp unlearn --method whp-inference` writes as DIR/model, and what
`whp eval --model` loads):
    whp_inference.json   {"base": path, "reinforced": "reinforced" or a path, "alpha": α}
    reinforced/          the LoRA adapter (copied in; a full reinforced model is referenced by path)
    tokenizer files, README.md
"""

from __future__ import annotations

import copy
import shutil
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from whp import distributed, peft_adapter
from whp.card import run_card
from whp.errors import WhpError
from whp.files import atomic_folder, read_json, write_json
from whp.generic import generic_logits_
from whp.models import (
    DEMO_MODEL_ALIAS,
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    model_identity,
    resolve_model_path,
)
from whp.runs import RunRecord, reinforced_path

if TYPE_CHECKING:
    from whp.config import RunConfig

SPEC_FILE = "whp_inference.json"  # marks a folder of the wrapper
# transformers 5 renamed `past_key_values` to `cache` (argument and output field)
_CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class InferenceWHP(PreTrainedModel, GenerationMixin):
    """A causal LM whose logits are v_B − α·ReLU(v_R − v_B) on the input it is given."""

    _supports_sdpa = True  # attention is the wrapped models' business
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, reinforced: torch.nn.Module, baseline: torch.nn.Module | None, alpha: float):
        """`reinforced`: a PeftModel (then `baseline` is None: the adapter disabled) or a full model
        beside `baseline`."""
        super().__init__(copy.deepcopy(reinforced.config))  # a copy: PreTrainedModel edits its config
        if getattr(reinforced, "generation_config", None) is not None:
            self.generation_config = copy.deepcopy(reinforced.generation_config)  # the baseline's defaults
        self.reinforced = reinforced
        self.baseline = baseline
        self.alpha = alpha
        self._companions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # baseline cache -> reinforced cache

    def _baseline_forward(self, **inputs):
        if self.baseline is not None:
            return self.baseline(**inputs)
        with peft_adapter.adapter_disabled(self.reinforced):
            return self.reinforced(**inputs)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs) -> CausalLMOutputWithPast:
        if kwargs.get("labels") is not None:
            raise ValueError("InferenceWHP computes no loss; take its logits")
        cache = kwargs.pop("cache", kwargs.pop("past_key_values", None))
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      logits_to_keep=logits_to_keep, **kwargs)
        companion = self._companions.get(cache) if cache is not None else None
        base_out = self._baseline_forward(**inputs, **{_CACHE: cache})
        reinforced_out = self.reinforced(**inputs, **{_CACHE: companion})
        base_cache = base_out.get(_CACHE)
        if base_cache is not None:
            self._companions[base_cache] = reinforced_out.get(_CACHE)
        logits = generic_logits_(base_out.logits.float().contiguous(), reinforced_out.logits, self.alpha)  # (B, T, V)
        return CausalLMOutputWithPast(logits=logits, **{_CACHE: base_cache})


# ---- folder form -----------------------------------------------------------------------------


@dataclass
class InferenceConfig:
    """`--method whp-inference`: no fine-tuning; the baseline and reinforced logits are combined
    at inference time, v_B − α·ReLU(v_R − v_B) on the same input."""

    alpha: float = field(default=5.0, metadata={"help": "α of v_B − α·ReLU(v_R − v_B) (the paper's label stage: 5)"})

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")


def is_wrapper_folder(path: str | Path) -> bool:
    return (Path(resolve_model_path(path)) / SPEC_FILE).is_file()


def load_any_model(path: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """A model folder (`from_pretrained`) or the wrapper's folder, in `dtype`, in eval mode."""
    if is_wrapper_folder(path):
        return load_inference_model(resolve_model_path(path), dtype, trust_remote_code)
    return load_model(path, dtype, trust_remote_code)


def any_model_identity(path: str | Path) -> dict:
    """What identifies a model or a wrapper folder in fingerprints."""
    return inference_identity(resolve_model_path(path)) if is_wrapper_folder(path) else model_identity(path)


def _spec(folder: Path) -> dict:
    spec = read_json(folder / SPEC_FILE)
    if not isinstance(spec, dict) or not {"base", "reinforced", "alpha"} <= set(spec):
        raise WhpError("expected {base, reinforced, alpha}", folder / SPEC_FILE)
    return spec


def _reinforced_path(folder: Path, spec: dict) -> Path:
    return (folder / spec["reinforced"]).resolve()  # relative to the folder, or absolute


def write_inference_folder(destination: Path, base: str, reinforced: Path, alpha: float,
                           tokenizer: PreTrainedTokenizerBase, card: str) -> None:
    """The folder form, atomically: an adapter is copied in, a full model is referenced by path."""
    with atomic_folder(Path(destination)) as tmp:
        if peft_adapter.is_adapter_folder(reinforced):
            shutil.copytree(reinforced, tmp / "reinforced")
            reinforced_entry = "reinforced"
        else:
            reinforced_entry = str(Path(reinforced).resolve())
        write_json(tmp / SPEC_FILE, {"base": base, "reinforced": reinforced_entry, "alpha": alpha})
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card)


def load_inference_model(folder: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> InferenceWHP:
    """The wrapper from its folder, both passes in `dtype`, in eval mode on the CPU."""
    folder = Path(folder)
    spec = _spec(folder)
    reinforced = _reinforced_path(folder, spec)
    if not reinforced.is_dir():
        raise WhpError(f"reinforced model {reinforced} named in {SPEC_FILE} does not exist", folder)
    base = load_model(spec["base"], dtype, trust_remote_code)
    if peft_adapter.is_adapter_folder(reinforced):
        wrapped = InferenceWHP(peft_adapter.load_adapter(base, reinforced).to(dtype), None, float(spec["alpha"]))
    else:
        wrapped = InferenceWHP(load_model(reinforced, dtype, trust_remote_code), base, float(spec["alpha"]))
    return wrapped.eval()


def inference_identity(folder: str | Path) -> dict:
    """What identifies the wrapper for fingerprints: α and both models' identities."""
    folder = Path(folder)
    spec = _spec(folder)
    return {"alpha": spec["alpha"], "base": model_identity(spec["base"]),
            "reinforced": model_identity(_reinforced_path(folder, spec))}


# ---- the stage of `whp unlearn --method whp-inference` -----------------------------------------


def _portable_name(model: str) -> str:
    """How the wrapper's folder names the baseline: the demo alias and hub ids as given, a local
    folder by its absolute path."""
    return str(Path(model).resolve()) if model != DEMO_MODEL_ALIAS and Path(model).exists() else model


def run_wrap(cfg: RunConfig, out: Path, record: RunRecord) -> Path:
    """OUT/model: the folder form of `InferenceWHP` over the baseline and the reinforced model."""
    destination = out / "model"
    if destination.is_dir():
        return destination
    started = time.perf_counter()
    reinforced = reinforced_path(cfg, out)
    if not reinforced.is_dir():
        raise WhpError("no reinforced model here: run `whp reinforce` first, or pass --reinforced", reinforced)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    if (reinforced / "tokenizer.json").is_file() or (reinforced / "tokenizer_config.json").is_file():
        check_same_vocabulary(tokenizer, load_tokenizer(reinforced, cfg.trust_remote_code), cfg.model, str(reinforced))
    record.stage_done(cfg, "wrap", time.perf_counter() - started, alpha=cfg.inference.alpha)
    if distributed.is_main():
        write_inference_folder(destination, _portable_name(cfg.model), reinforced, cfg.inference.alpha, tokenizer,
                               run_card(cfg, record.data))
    distributed.barrier()
    return destination
