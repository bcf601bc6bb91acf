"""One prepared GPU run: a randomly initialised Llama of about 1B parameters through the label
stage and 20 fine-tuning steps, printing tokens/s, model FLOPs utilisation and peak GPU memory.

Offline (nothing from a hub): the model is built from a config (Llama-3.2-1B's shape: hidden
2048, 16 layers, 32 heads, 8 KV heads, 128,256-token vocabulary, 1.24B parameters), the
tokenizer is a byte-level BPE trained here on the package's own demo corpus, which (repeated)
is also the target text, with the demo dictionary; the reinforced model is a LoRA adapter with
random weights. Timings come from the library's own label stage and training loop.

    python benchmarks/gpu_1b.py [--out DIR] [--repeat 8] [--steps 20]     # on a GPU, ~1-3 minutes
    python benchmarks/gpu_1b.py --size tiny --repeat 1 --steps 2          # smoke test, CPU, seconds

The dtype follows whp's precision policy (`--dtype auto`: bf16 on a GPU with bf16 or a CPU with
native bf16, else fp32). MFU = model FLOPs/s ÷ the GPU's bf16 dense peak (a table of known GPUs)
and ÷ the matmul rate measured here in the dtype in force (benchmarks/machine.py; 8192³ on a
GPU); FLOPs per token as in benchmarks/stages.py: forward 2N + 4·L·d·T (two per target token
in the label stage), training 6N + 12·L·d·T.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

SIZES = {  # LlamaConfig keyword arguments
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128_256, tie_word_embeddings=True, rope_theta=500_000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2_000, tie_word_embeddings=True),
}  # fmt: skip
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}  # dense


def flops_per_token(config, seq_len: int) -> dict:
    head_dim = config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    h, inner = config.hidden_size, config.intermediate_size
    layer = h * q + 2 * h * kv + q * h + 3 * h * inner
    n = config.num_hidden_layers * layer + h * config.vocab_size
    attention = 4 * config.num_hidden_layers * q * seq_len
    return {"N": n, "forward": 2 * n + attention, "train": 6 * n + 3 * attention}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def peak_memory_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def build_inputs(work: Path, size: str, repeat: int) -> dict:
    """Target text, dictionary, tokenizer + random model folder, random LoRA 'reinforced' adapter."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from whp.models import LoraConfig, add_lora

    demo = resources.files("whp") / "data" / "demo"
    corpus = "\n\n".join((demo / "corpus" / name).read_text() for name in sorted(p.name for p in (demo / "corpus").iterdir()))
    (work / "target.txt").write_text("\n\n".join([corpus] * repeat))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus.splitlines(), trainers.BpeTrainer(
        vocab_size=min(8_000, SIZES[size]["vocab_size"]), special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(**SIZES[size], max_position_embeddings=4096)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(work / "base")
    tokenizer.save_pretrained(work / "base")
    adapter = add_lora(model, LoraConfig())
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-3)
    adapter.save_pretrained(work / "lora")
    tokenizer.save_pretrained(work / "lora")
    n_params = sum(p.numel() for p in model.parameters())
    return {"config": config, "parameters": n_params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--repeat", type=int, default=8, help="copies of the demo corpus in the target (8: ~200k tokens)")
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps")
    parser.add_argument("--label-batch", type=int, default=16, help="blocks per label forward pass")
    parser.add_argument("--train-batch", type=int, default=8, help="blocks per fine-tuning step (batch_size; grad_accum 1)")
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary folder)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32 (whp.precision)")
    args = parser.parse_args()

    from machine import describe

    from whp import distributed
    from whp.baseline import trainable_baseline
    from whp.config import load_config
    from whp.methods.whp import hard_label_loss
    from whp.runs import run_dtype
    from whp.shards import load_examples
    from whp.stages import run_unlearn
    from whp.train import train

    device = distributed.device()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        facts = build_inputs(work, args.size, args.repeat)
        flops = flops_per_token(facts["config"], 512)
        report = {"machine": describe(args.dtype), "parameters": facts["parameters"], "flops_per_token": flops,
                  "setup_seconds": round(time.perf_counter() - started, 1), "bf16_peak_tflops": peak_tflops(device)}
        cfg = load_config(None, [f"dtype={args.dtype}", f"labels.batch_size={args.label_batch}", f"finetune.train.batch_size={args.train_batch}",
                                 "finetune.train.grad_accum=1", f"finetune.train.max_steps={args.steps}",
                                 "finetune.train.checkpoint_every=0"],
                          model=str(work / "base"), target=[str(work / "target.txt")],
                          anchors=str(resources.files("whp") / "data" / "demo" / "anchors.yaml"), reinforced=str(work / "lora"))
        out = work / "run"
        reset_peak(device)
        folder = run_unlearn(cfg, out, overwrite=True, stages=("labels",))
        stage = json.loads((out / "run.json").read_text())["stages"]["labels"]
        labels_tokens_per_s = stage["tokens"] / stage["compute_seconds"]
        report["labels"] = _figures(labels_tokens_per_s, 2 * flops["forward"], report, tokens=stage["tokens"],
                                    seconds=stage["compute_seconds"], peak_gpu_memory_gb=peak_memory_gb(device))

        examples = load_examples(folder)
        train_cfg = cfg.train_for("finetune")
        model = trainable_baseline(cfg.model, train_cfg)
        reset_peak(device)
        result = train(model, examples, hard_label_loss, train_cfg, desc="fine-tune (benchmark)", dtype=run_dtype(cfg))
        tokens = args.steps * args.train_batch * len(examples[0]["input_ids"])
        report["finetune"] = _figures(tokens / result.seconds, flops["train"], report, steps=result.steps, tokens=tokens,
                                      seconds=round(result.seconds, 2), first_loss=result.losses[0], last_loss=result.losses[-1],
                                      peak_gpu_memory_gb=peak_memory_gb(device))
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(report, indent=2))


def _figures(tokens_per_s: float, flops_per_token: float, report: dict, **facts) -> dict:
    achieved = tokens_per_s * flops_per_token / 1e12
    figures = {"tokens_per_s": round(tokens_per_s, 1), "model_tflops": round(achieved, 4),
               "mfu_of_measured_matmul": achieved / report["machine"]["matmul_tflops"]}
    if report["bf16_peak_tflops"]:
        figures["mfu_of_peak"] = round(achieved / report["bf16_peak_tflops"], 3)
    return {**figures, **facts}


if __name__ == "__main__":
    main()
