"""Generic labels on disk: shards of blocks (the unit of resume), and training examples from them.

A shard `<prefix>-NNNNN.safetensors` holds, for its blocks (right-padded to the longest):
input_ids (n, T) int32, attention_mask (n, T) int8, labels (n, T) int32 (IGNORE where none; the
label of position t at t+1), block_index (n,), and with soft labels top_values (n, T, k) fp32
generic log-probabilities and top_indices (n, T, k) int32 at t. `complete.json` marks a folder
whose every shard is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from whp.common import IGNORE
from whp.files import write_json


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: ids (B, L) and attention mask (B, L)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def shard_path(folder: Path, shard: int, prefix: str = "shard") -> Path:
    return Path(folder) / f"{prefix}-{shard:05d}.safetensors"


def n_shards(n_blocks: int, shard_blocks: int) -> int:
    return -(-n_blocks // shard_blocks)


def write_shard(path: Path, original_ids: Sequence[Sequence[int]], labels, block_indices: Sequence[int], pad_id: int) -> None:
    """`labels`: one whp.labels.BlockLabels per block of `original_ids`; written atomically."""
    input_ids, mask = pad_right(original_ids, pad_id)  # (n, T)
    label_rows = torch.full_like(input_ids, IGNORE)
    for row, block in enumerate(labels):
        label_rows[row, : len(block.labels)] = block.labels
    tensors = {
        "input_ids": input_ids.to(torch.int32),
        "attention_mask": mask.to(torch.int8),
        "labels": label_rows.to(torch.int32),
        "block_index": torch.tensor(block_indices, dtype=torch.int32),
    }
    if labels[0].top_values is not None:
        width = input_ids.shape[1]
        k = labels[0].top_values.shape[1]
        values = torch.zeros((len(labels), width, k), dtype=torch.float32)
        indices = torch.zeros((len(labels), width, k), dtype=torch.int32)
        for row, block in enumerate(labels):
            values[row, : len(block.labels)] = block.top_values
            indices[row, : len(block.labels)] = block.top_indices.to(torch.int32)
        tensors.update(top_values=values, top_indices=indices)
    tmp = path.parent / f".{path.name}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def mark_complete(folder: Path, n_blocks: int, shard_blocks: int) -> None:
    write_json(Path(folder) / "complete.json", {"blocks": n_blocks, "shards": n_shards(n_blocks, shard_blocks)})


def is_complete(folder: Path) -> bool:
    return (Path(folder) / "complete.json").is_file()


def load_examples(folder: Path, prefix: str = "shard") -> list[dict[str, torch.Tensor]]:
    """Training examples from finished shards: input_ids, attention_mask, labels, is_retain
    [, top_values, top_indices]."""
    examples = []
    for path in sorted(Path(folder).glob(f"{prefix}-*.safetensors")):
        tensors = load_file(str(path))
        for row in range(tensors["input_ids"].shape[0]):
            example = {key: value[row] for key, value in tensors.items() if key != "block_index"}
            for key in ("input_ids", "attention_mask", "labels", "top_indices"):
                if key in example:
                    example[key] = example[key].long()
            example["is_retain"] = torch.tensor(prefix == "retain")
            examples.append(example)
    return examples
