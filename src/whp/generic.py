"""Generic predictions and labels (DESIGN §2.4), written to disk in resumable shards.

    v_generic = v_B − α · ReLU(v_R − v_B),    label[t+1] = argmax v_generic[t]

v_R: the reinforced model's logits on the original block; v_B: the baseline's logits on the
translated block, gathered at the aligned positions, with fix 2 applied. Labels follow the
Hugging Face convention (the model shifts them): the label computed at position t is stored
at t+1; ignored positions hold -100. Optional soft targets keep the top-k generic log-probabilities at
position t itself (a next-token distribution, like the model's own logits); they are not
renormalised over the k tokens, so the tail's mass stays the tail's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from whp.files import write_json
from whp.translate import AlignedBlock

log = logging.getLogger("whp")

IGNORE = -100
Head = Callable[[torch.Tensor], torch.Tensor]  # per-position states (c, H) -> logits (c, V)


def _identity(states: torch.Tensor) -> torch.Tensor:
    return states


class HeadIntoBuffer:
    """A bias-free linear LM head that writes its logits into one reused (rows, V) buffer. On the
    CPU a fresh allocation of that size per call costs page faults that can exceed the GEMM itself
    (measured: 39 ms against 16 ms for 512 × 576 × 49,152 in bf16). The returned logits are valid
    until the next call."""

    def __init__(self, head: torch.nn.Linear):
        self.weight = head.weight  # (V, H)
        self.buffer: torch.Tensor | None = None

    def __call__(self, states: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        if states.dtype != self.weight.dtype or (torch.is_grad_enabled() and self.weight.requires_grad):  # autocast, autograd
            return torch.nn.functional.linear(states, self.weight)
        rows = states.reshape(-1, states.shape[-1])  # (c, H)
        if self.buffer is None or len(self.buffer) < len(rows) or self.buffer.dtype != rows.dtype:
            self.buffer = torch.empty(len(rows), len(self.weight), dtype=rows.dtype, device=rows.device)
        logits = torch.mm(rows, self.weight.t(), out=self.buffer[: len(rows)])  # (c, V)
        return logits.view(*states.shape[:-1], len(self.weight))


@dataclass
class ModelPass:
    """One model's forward pass over a batch, split at its LM head: `body` (right-padded ids (B, T),
    run without an attention mask) -> hidden states (B, T, H); `head` turns a few positions'
    states into logits (c, V). A model whose logits are not head(body) (soft-capping, scaling)
    has the whole forward as its body, giving logits (B, T, V), and the identity as its head."""

    body: Callable[[torch.Tensor], torch.Tensor]
    head: Head = _identity


@dataclass
class LabelsConfig:
    """Generic-label computation."""

    alpha: float = field(default=5.0, metadata={"help": "weight of ReLU(v_R - v_B); 0 = anchors only (no reinforced pass)"})
    use_dictionary: bool = field(default=True, metadata={"help": "translate anchors; false = reinforcement only"})
    top_k: int = field(default=0, metadata={"help": "also store the top-k generic log-probabilities per position (soft labels); 0 = hard labels only"})
    batch_size: int = field(default=4, metadata={"help": "blocks per forward pass"})
    shard_blocks: int = field(default=16, metadata={"help": "blocks per label shard on disk (the unit of resume)"})
    seed: int = field(default=0, metadata={"help": "seed for drawing one dictionary alternative per key per block"})
    space: str = field(default="logits", metadata={"help": "combine raw logits (the paper's) or log-probabilities (log_softmax of each first)"})
    margin: float = field(default=0.0, metadata={"help": "count only raises above this: v_B - alpha*ReLU(v_R - v_B - margin); 0 = the paper's formula. A margin keeps the reinforced model's small, diffuse logit changes out of the labels"})
    anchor_interiors: str = field(default="ignore", metadata={"help": "positions inside a multi-token anchor, which predict the anchor's next token ('A Study in' -> 'Scarlet'): 'ignore' them (the paper's rule); 'words': label a position that ends one word of a multi-word anchor from the matching word end of its alternative when both have as many words ('Red-Headed' of 'Red-Headed League' from 'Copper-Haired' of 'Copper-Haired Club'), the anchor's next token lowered to the mean logit in v_B unless the alternative goes on with the same token, the other interior positions ignored; or 'suppress': label them all with the combination on the original text, v_B - alpha*ReLU(v_R - v_B), that next token first lowered to the mean logit in v_B (one more baseline pass over blocks that have such positions)"})
    pin_k: int = field(default=0, metadata={"help": "soft labels: also store, at each position, the pin_k tokens the reinforced model ranks highest (the baseline's, without a reinforced pass) with their generic log-probabilities. The soft loss pins each stored token to its generic probability and only the rest of the vocabulary's total; without pins, the mass the generic distribution leaves outside its top_k may fall on exactly the tokens it pushed down ('Conan' -> 'Doyle'). 0 = the top_k alone"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the two models' bodies: a one-time compilation (135M model, 2 CPU cores: ~110 s, ~30 s with a warm compile cache), then 1.4x the tokens/s there; pays from a few hundred thousand target tokens"})

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.top_k < 0 or self.batch_size < 1 or self.shard_blocks < 1:
            raise ValueError("top_k must be >= 0, batch_size and shard_blocks >= 1")
        if self.pin_k < 0 or self.pin_k and not self.top_k:
            raise ValueError(f"pin_k must be >= 0 and needs soft labels (top_k > 0), got pin_k={self.pin_k}, top_k={self.top_k}")
        if self.space not in ("logits", "logprobs"):
            raise ValueError(f"space must be logits or logprobs, got {self.space!r}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.anchor_interiors not in ("ignore", "words", "suppress"):
            raise ValueError(f"anchor_interiors must be ignore, words or suppress, got {self.anchor_interiors!r}")


def generic_logits(v_reinforced: torch.Tensor, v_baseline: torch.Tensor, alpha: float, margin: float = 0.0) -> torch.Tensor:
    """(K, V), (K, V) -> (K, V): push down every token the reinforced model raised (by more than `margin`)."""
    return v_baseline - alpha * torch.relu(v_reinforced - v_baseline - margin)


def lower_forbidden_(v_baseline: torch.Tensor, target_positions: torch.Tensor, forbidden: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Fix 2, in place: at positions from `start` on, lower `token`'s logit to the position's mean logit.

    v_baseline: (K, V) logits at translated positions `target_positions` (K,).
    """
    if not forbidden:
        return v_baseline
    starts = torch.tensor([start for start, _ in forbidden], device=v_baseline.device)  # (F,)
    tokens = torch.tensor([token for _, token in forbidden], device=v_baseline.device)  # (F,)
    applies = target_positions[:, None] >= starts[None, :]  # (K, F)
    rows, cols = applies.nonzero(as_tuple=True)
    if len(rows):
        lower_to_mean_(v_baseline, rows, tokens[cols])
    return v_baseline


def lower_to_mean_(logits: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> None:
    """In place: logits[rows[i], tokens[i]] lowered to its row's mean logit, never raised.
    logits (K, V); rows, tokens (n,)."""
    mean = logits.mean(dim=-1)  # (K,)
    logits[rows, tokens] = torch.minimum(logits[rows, tokens], mean[rows])


@dataclass
class BlockLabels:
    labels: torch.Tensor  # (T,) int64, IGNORE where no label; label of position t at t+1
    top_values: torch.Tensor | None  # (T, k + pin_k) float32 generic log-probabilities (over the whole vocabulary) at t
    top_indices: torch.Tensor | None  # (T, k + pin_k) int64: the generic top k, then the pinned tokens


HEAD_ROWS = 512  # positions per LM-head call: logits (512, V) per model at a time, never (T, V) (the CPU also runs this GEMM faster than at 32 or 2048 rows)
ROWS_PER_CHUNK = 32  # positions combined at a time: (32, V) fp32 stays in cache, no (T, V) temporaries


def block_labels(aligned: AlignedBlock, v_reinforced: torch.Tensor | None, v_baseline: torch.Tensor, cfg: LabelsConfig,
                 head_reinforced: Head = _identity, head_baseline: Head = _identity,
                 v_baseline_original: torch.Tensor | None = None) -> BlockLabels:
    """Labels of one block: v_reinforced (T, ·) on the original, v_baseline (T', ·) on the
    translation, each either logits (T, V) or hidden states (T, H) with its model's LM head.
    Logits are made HEAD_ROWS aligned positions at a time; `generic_logits` with fix 2 is
    computed in place ROWS_PER_CHUNK positions at a time (raises up to `cfg.margin` ignored); with
    `cfg.space == "logprobs"`, both are log-softmaxed first (no per-position logit shift enters the
    ReLU). With `v_baseline_original` (T, ·), the baseline on the original text, positions inside an
    anchor are labelled too (`_label_interiors`); with `cfg.anchor_interiors == "words"`, the block's
    `interior_word_pairs` are labelled like aligned positions, the anchor's next token lowered
    (`_own_next`). With `cfg.pin_k`, each position also stores its pin_k pinned tokens (`_pins`)."""
    top_k, pin_k = cfg.top_k, cfg.pin_k
    device, length = v_baseline.device, len(aligned.original_ids)
    word_pairs = aligned.interior_word_pairs if cfg.anchor_interiors == "words" else []
    source = torch.tensor(aligned.source_positions + [t for t, _ in word_pairs], dtype=torch.long, device=device)  # (K,)
    target = torch.tensor(aligned.target_positions + [s for _, s in word_pairs], dtype=torch.long, device=device)  # (K,)
    own_next = torch.tensor([-1] * len(aligned.source_positions) + [_own_next(aligned, t, s) for t, s in word_pairs],
                            dtype=torch.long, device=device)  # (K,): the anchor's next token to lower at a word pair, else -1
    labels = torch.full((length,), IGNORE, dtype=torch.long, device=device)
    values = torch.zeros((length, top_k + pin_k), dtype=torch.float32, device=device) if top_k else None
    indices = torch.zeros((length, top_k + pin_k), dtype=torch.long, device=device) if top_k else None
    uses_reinforced = v_reinforced is not None and cfg.alpha > 0
    for start in range(0, len(source), HEAD_ROWS):
        part_s, part_t, part_own = (x[start : start + HEAD_ROWS] for x in (source, target, own_next))
        logits_b = head_baseline(v_baseline[part_t])  # (c, V), fresh rows (a repeated position is copied twice)
        logits_r = head_reinforced(v_reinforced[part_s]) if uses_reinforced else None  # (c, V)
        for first in range(0, len(part_s), ROWS_PER_CHUNK):
            rows = slice(first, first + ROWS_PER_CHUNK)
            rows_s, rows_t = part_s[rows], part_t[rows]
            v_r = logits_r[rows] if uses_reinforced else None
            pins = _pins(logits_b[rows] if v_r is None else v_r, pin_k)  # before fix 2 changes the baseline's logits
            v_gen = lower_forbidden_(logits_b[rows].float(), rows_t, aligned.forbidden)  # (c, V), changed in place
            _lower_own_next_(v_gen, part_own[rows])
            _store(labels, values, indices, rows_s, _combine_(v_gen, v_r, cfg), pins)
    if v_baseline_original is not None and aligned.interior_positions:
        _label_interiors(aligned, v_reinforced if uses_reinforced else None, v_baseline_original, head_reinforced, head_baseline,
                         cfg, labels, values, indices)
    if not top_k:
        return BlockLabels(labels.cpu(), None, None)
    return BlockLabels(labels.cpu(), values.cpu(), indices.cpu())


def _own_next(aligned: AlignedBlock, t: int, s: int) -> int:
    """The anchor's next token at word pair (t, s), to be lowered, unless the alternative goes on
    with the same token ("The Sign of" -> " the" as "The Mark of" -> " the"): then -1."""
    token = aligned.original_ids[t + 1]
    return -1 if aligned.translated_ids[s + 1] == token else token


def _lower_own_next_(v_gen: torch.Tensor, own_next: torch.Tensor) -> None:
    """Option anchor_interiors=words, in place: at a word end inside an anchor, v_gen (c, V) row i's
    logit of own_next[i] (c,), the anchor's next token, lowered to the row's mean; -1 = no such token."""
    rows = (own_next >= 0).nonzero(as_tuple=True)[0]
    if len(rows):
        lower_to_mean_(v_gen, rows, own_next[rows])


def _pins(logits: torch.Tensor, pin_k: int) -> torch.Tensor | None:
    """The pin_k tokens of highest logit, (c, V) -> (c, pin_k): the tokens a model that starts from
    these predictions would put the generic rest mass on, unless they are stored; None for 0."""
    return logits.topk(pin_k, dim=-1).indices if pin_k else None


def _store(labels: torch.Tensor, values: torch.Tensor | None, indices: torch.Tensor | None, positions: torch.Tensor,
           v_gen: torch.Tensor, pins: torch.Tensor | None = None) -> None:
    """Write the labels of `positions` (c,) from their generic logits v_gen (c, V): the argmax at t+1,
    and, when soft targets are kept, log-probabilities (over the whole vocabulary) at t: of the
    top k tokens other than the pinned ones, then of the pinned tokens `pins` (c, pin_k), so that
    no token is stored twice. v_gen is scratch (its pinned entries are overwritten)."""
    labels[positions + 1] = v_gen.argmax(dim=-1)
    if values is None:
        return
    log_normaliser = v_gen.logsumexp(dim=-1, keepdim=True)  # (c, 1)
    n_pins = 0 if pins is None else pins.shape[1]
    if n_pins:
        pinned = v_gen.gather(1, pins)  # (c, pin_k)
        v_gen.scatter_(1, pins, float("-inf"))  # out of the top k
    top = v_gen.topk(values.shape[1] - n_pins, dim=-1)
    values[positions, : top.values.shape[1]] = top.values - log_normaliser
    indices[positions, : top.values.shape[1]] = top.indices
    if n_pins:
        values[positions, top.values.shape[1] :] = pinned - log_normaliser
        indices[positions, top.values.shape[1] :] = pins


def _combine_(v_b: torch.Tensor, v_r: torch.Tensor | None, cfg: LabelsConfig) -> torch.Tensor:
    """v_B − α·ReLU(v_R − v_B − m), (c, V) fp32, computed in v_b's storage (both log-softmaxed first
    when cfg.space is "logprobs")."""
    logprobs = cfg.space == "logprobs"
    if logprobs:
        v_b = v_b.log_softmax(dim=-1)
    if v_r is not None:
        v_r = v_r.float()
        raised = (v_r.log_softmax(dim=-1) if logprobs else v_r).sub_(v_b).sub_(cfg.margin).clamp_(min=0)  # ReLU(v_R − v_B − m), (c, V)
        v_b.sub_(raised, alpha=cfg.alpha)
    return v_b


def _label_interiors(aligned: AlignedBlock, v_reinforced: torch.Tensor | None, v_baseline_original: torch.Tensor,
                     head_reinforced: Head, head_baseline: Head, cfg: LabelsConfig,
                     labels: torch.Tensor, values: torch.Tensor | None, indices: torch.Tensor | None) -> None:
    """Option anchor_interiors=suppress. A position inside an anchor has no translated counterpart
    (the paper leaves it untrained, so "A Study in" teaches nothing against "Scarlet"). Here it is
    labelled on the original text: the baseline's logits with the anchor's own next token lowered
    to the position's mean (as fix 2 lowers a repeated translation), then the same combination
    with the reinforced model's logits. v_reinforced (T, ·) and v_baseline_original (T, ·) are
    logits or hidden states for their heads."""
    device = v_baseline_original.device
    positions = torch.tensor(aligned.interior_positions, dtype=torch.long, device=device)  # (J,)
    next_tokens = torch.tensor([aligned.original_ids[t + 1] for t in aligned.interior_positions], device=device)  # (J,)
    for first in range(0, len(positions), ROWS_PER_CHUNK):
        rows = positions[first : first + ROWS_PER_CHUNK]
        tokens = next_tokens[first : first + ROWS_PER_CHUNK]
        v_b = head_baseline(v_baseline_original[rows]).float()  # (c, V): a copy, or the head's own scratch buffer
        v_r = None if v_reinforced is None else head_reinforced(v_reinforced[rows])  # (c, V)
        pins = _pins(v_b if v_r is None else v_r, cfg.pin_k)  # before the anchor's next token is lowered
        lower_to_mean_(v_b, torch.arange(len(rows), device=device), tokens)
        _store(labels, values, indices, rows, _combine_(v_b, v_r, cfg), pins)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: ids (B, L) and attention mask (B, L)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


@torch.inference_mode()
def batch_labels(blocks: Sequence[AlignedBlock], reinforced: ModelPass | None, baseline: ModelPass, cfg: LabelsConfig,
                 pad_id: int) -> list[BlockLabels]:
    """The two models' bodies over a batch of blocks, then per-block labels (logits a few
    positions at a time). The batches are right-padded, and under causal attention no real
    position sees a later pad, so the bodies run without an attention mask: the fast causal
    kernel instead of a masked one (14 % less time per body on the CPU), the same hidden states
    at real positions (tested)."""
    translated_ids, _ = _pad([b.translated_ids for b in blocks], pad_id)
    h_baseline = baseline.body(translated_ids)  # (B, T', H)
    uses_reinforced = reinforced is not None and cfg.alpha > 0
    labels_interiors = cfg.anchor_interiors == "suppress" and any(b.interior_positions for b in blocks)
    original_ids = _pad([b.original_ids for b in blocks], pad_id)[0] if uses_reinforced or labels_interiors else None  # (B, T)
    h_reinforced, head_reinforced = (reinforced.body(original_ids), reinforced.head) if uses_reinforced else (None, _identity)  # (B, T, H)
    h_baseline_original = baseline.body(original_ids) if labels_interiors else None  # (B, T, H)
    return [
        block_labels(block, None if h_reinforced is None else h_reinforced[i], h_baseline[i], cfg, head_reinforced, baseline.head,
                     None if h_baseline_original is None else h_baseline_original[i])
        for i, block in enumerate(blocks)
    ]


# ---- shards on disk --------------------------------------------------------------------------


def fingerprint(parts: dict) -> str:
    """A short stable hash of everything the labels depend on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def shard_path(folder: Path, shard: int, prefix: str = "shard") -> Path:
    return Path(folder) / f"{prefix}-{shard:05d}.safetensors"


def n_shards(n_blocks: int, shard_blocks: int) -> int:
    return -(-n_blocks // shard_blocks)


def write_shard(path: Path, blocks: Sequence[AlignedBlock], labels: Sequence[BlockLabels], block_indices: Sequence[int], pad_id: int) -> None:
    input_ids, mask = _pad([b.original_ids for b in blocks], pad_id)  # (n, T)
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


def compute_labels(
    folder: Path,
    n_blocks: int,
    align: Callable[[int], AlignedBlock],
    reinforced: ModelPass | None,
    baseline: ModelPass,
    cfg: LabelsConfig,
    pad_id: int,
    prefix: str = "shard",
    rank: int = 0,
    world_size: int = 1,
) -> dict:
    """Write every missing shard `<prefix>-NNNNN` of `folder` that falls to process `rank` of
    `world_size` (shard s goes to process s mod world_size; finished shards are skipped: resume).
    A shard's content does not depend on who computes it. `align(i)` gives block i aligned.
    Returns this process's counts for the run record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mine = range(rank, n_shards(n_blocks, cfg.shard_blocks), world_size)
    todo = [s for s in mine if not shard_path(folder, s, prefix).is_file()]
    stats = {"blocks": 0, "labelled_positions": 0, "anchors": 0}
    started = time.perf_counter()
    shard_blocks = {s: range(s * cfg.shard_blocks, min(n_blocks, (s + 1) * cfg.shard_blocks)) for s in todo}
    with tqdm(total=sum(map(len, shard_blocks.values())), desc=f"labels ({prefix})", unit="block", dynamic_ncols=True,
              **({} if rank == 0 else {"disable": True})) as bar:
        for shard, indices in shard_blocks.items():
            aligned = [align(i) for i in indices]
            labels = []
            for first in range(0, len(aligned), cfg.batch_size):
                batch = aligned[first : first + cfg.batch_size]
                labels.extend(batch_labels(batch, reinforced, baseline, cfg, pad_id))
                bar.update(len(batch))
            write_shard(shard_path(folder, shard, prefix), aligned, labels, indices, pad_id)
            stats["blocks"] += len(aligned)
            stats["labelled_positions"] += sum(len(a.source_positions) for a in aligned)
            stats["anchors"] += sum(len(a.occurrences) for a in aligned)
    stats["compute_seconds"] = round(time.perf_counter() - started, 3)
    return stats


def mark_complete(folder: Path, n_blocks: int, cfg: LabelsConfig) -> None:
    write_json(Path(folder) / "complete.json", {"blocks": n_blocks, "shards": n_shards(n_blocks, cfg.shard_blocks)})


def is_complete(folder: Path) -> bool:
    return (Path(folder) / "complete.json").is_file()


def identity_alignment(ids: Sequence[int]) -> AlignedBlock:
    """A block compared with itself: every position keeps its own counterpart (retain text)."""
    positions = list(range(len(ids) - 1))
    return AlignedBlock(list(ids), list(ids), positions, list(positions), [], [])


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
