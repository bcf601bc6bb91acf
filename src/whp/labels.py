"""Stage 2, generic labels (DESIGN §2.4): for every target block, the anchored translation, the
baseline on it, the reinforced model on the original, their combination (whp.generic) at the
aligned positions, written to disk in resumable shards (whp.shards).

    label[t+1] = argmax v_generic[t]

Labels follow the Hugging Face convention (the model shifts them): the label computed at
position t is stored at t+1; ignored positions hold IGNORE. Soft targets keep the top-k generic
log-probabilities at position t itself (a next-token distribution, like the model's own logits),
not renormalised over the k tokens, so the tail's mass stays the tail's. Retain text gets the
baseline's own predictions (the same code with α = 0 and no translation).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from tqdm.auto import tqdm

from whp import distributed
from whp.anchors.dictionary import AnchorMatcher, Dictionary, draw_alternatives
from whp.anchors.source import run_dictionary
from whp.common import IGNORE, fingerprint, text_hash
from whp.corpus import Block, load_blocks, read_text
from whp.errors import WhpError
from whp.generic import ROWS_PER_CHUNK, combine_, lower_forbidden_, lower_to_mean_
from whp.models import load_tokenizer, model_identity
from whp.passes import Head, ModelPass, identity, label_passes, load_pair
from whp.precision import dtype_name
from whp.runs import RunRecord, reinforced_path, run_dtype
from whp.shards import (
    is_complete,
    mark_complete,
    n_shards,
    pad_right,
    shard_path,
    write_shard,
)
from whp.translate import AlignedBlock, align_block

if TYPE_CHECKING:
    from whp.config import RunConfig

log = logging.getLogger("whp")

HEAD_ROWS = 512  # positions per LM-head call: logits (512, V) per model at a time, never (T, V) (the CPU also runs this GEMM faster than at 32 or 2048 rows)


@dataclass
class LabelsConfig:
    """Generic-label computation."""

    alpha: float = field(default=5.0, metadata={"help": "weight of ReLU(v_R - v_B); 0 = anchors only (no reinforced pass)"})
    use_dictionary: bool = field(default=True, metadata={"help": "translate anchors; false = reinforcement only (the paper's ablation)"})
    top_k: int = field(default=0, metadata={"help": "also store the top-k generic log-probabilities per position (soft labels); 0 = hard labels only"})
    pin_k: int = field(default=0, metadata={"help": "soft labels: also store, at each position, the pin_k tokens the reinforced model ranks highest (the baseline's, without a reinforced pass) with their generic log-probabilities. The soft loss pins each stored token to its generic probability and only the rest of the vocabulary's total; without pins, the mass the generic distribution leaves outside its top_k may fall on exactly the tokens it pushed down ('Conan' -> 'Doyle'). 0 = the top_k alone"})
    anchor_interiors: str = field(default="ignore", metadata={"help": "positions inside a multi-token anchor, which predict the anchor's next token ('A Study in' -> 'Scarlet'): 'ignore' them (the paper's rule), or 'words': label a position that ends one word of a multi-word anchor from the matching word end of its alternative when both have as many words ('Red-Headed' of 'Red-Headed League' from 'Copper-Haired' of 'Copper-Haired Club'), the anchor's next token lowered to the mean logit in v_B unless the alternative goes on with the same token"})
    seed: int = field(default=0, metadata={"help": "seed for drawing one dictionary alternative per key per block"})
    batch_size: int = field(default=4, metadata={"help": "blocks per forward pass"})
    shard_blocks: int = field(default=16, metadata={"help": "blocks per label shard on disk (the unit of resume)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the two models' bodies: a one-time compilation (135M model, 2 CPU cores: ~110 s, ~30 s with a warm compile cache), then 1.4x the tokens/s there; pays from a few hundred thousand target tokens"})

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.top_k < 0 or self.batch_size < 1 or self.shard_blocks < 1:
            raise ValueError("top_k must be >= 0, batch_size and shard_blocks >= 1")
        if self.pin_k < 0 or self.pin_k and not self.top_k:
            raise ValueError(f"pin_k must be >= 0 and needs soft labels (top_k > 0), got pin_k={self.pin_k}, top_k={self.top_k}")
        if self.anchor_interiors not in ("ignore", "words"):
            raise ValueError(f"anchor_interiors must be ignore or words, got {self.anchor_interiors!r}")


# ---- one block -------------------------------------------------------------------------------


@dataclass
class BlockLabels:
    labels: torch.Tensor  # (T,) int64, IGNORE where no label; label of position t at t+1
    top_values: torch.Tensor | None  # (T, k + pin_k) float32 generic log-probabilities (over the whole vocabulary) at t
    top_indices: torch.Tensor | None  # (T, k + pin_k) int64: the generic top k, then the pinned tokens


def block_labels(aligned: AlignedBlock, v_reinforced: torch.Tensor | None, v_baseline: torch.Tensor, cfg: LabelsConfig,
                 head_reinforced: Head = identity, head_baseline: Head = identity) -> BlockLabels:
    """Labels of one block: v_reinforced (T, ·) on the original, v_baseline (T', ·) on the
    translation, each either logits (T, V) or hidden states (T, H) with its model's LM head.
    Logits are made HEAD_ROWS aligned positions at a time and combined ROWS_PER_CHUNK at a time,
    fix 2 applied first. With `cfg.anchor_interiors == "words"`, the block's `interior_word_pairs`
    are labelled like aligned positions, the anchor's next token lowered (`_own_next`). With
    `cfg.pin_k`, each position also stores its pin_k pinned tokens (`_pins`)."""
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
            _store(labels, values, indices, rows_s, combine_(v_gen, v_r, cfg.alpha), pins)
    if not top_k:
        return BlockLabels(labels.cpu(), None, None)
    return BlockLabels(labels.cpu(), values.cpu(), indices.cpu())


def _own_next(aligned: AlignedBlock, t: int, s: int) -> int:
    """The anchor's next token at word pair (t, s), to be lowered, unless the alternative goes on
    with the same token ("The Sign of" -> " the" as "The Mark of" -> " the"): then -1."""
    token = aligned.original_ids[t + 1]
    return -1 if aligned.translated_ids[s + 1] == token else token


def _lower_own_next_(v_gen: torch.Tensor, own_next: torch.Tensor) -> None:
    """At a word end inside an anchor, v_gen (c, V) row i's logit of own_next[i] (c,), the
    anchor's next token, lowered to the row's mean, in place; -1 = no such token."""
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


# ---- batches and shards ------------------------------------------------------------------------


@torch.inference_mode()
def batch_labels(blocks: Sequence[AlignedBlock], reinforced: ModelPass | None, baseline: ModelPass, cfg: LabelsConfig,
                 pad_id: int) -> list[BlockLabels]:
    """The two models' bodies over a batch of blocks, then per-block labels (logits a few
    positions at a time). The batches are right-padded, and under causal attention no real
    position sees a later pad, so the bodies run without an attention mask: the fast causal
    kernel instead of a masked one (14 % less time per body on the CPU), the same hidden states
    at real positions (tested)."""
    h_baseline = baseline.body(pad_right([b.translated_ids for b in blocks], pad_id)[0])  # (B, T', H)
    uses_reinforced = reinforced is not None and cfg.alpha > 0
    h_reinforced, head_reinforced = (None, identity)
    if uses_reinforced:
        h_reinforced, head_reinforced = reinforced.body(pad_right([b.original_ids for b in blocks], pad_id)[0]), reinforced.head  # (B, T, H)
    return [block_labels(block, None if h_reinforced is None else h_reinforced[i], h_baseline[i], cfg, head_reinforced, baseline.head)
            for i, block in enumerate(blocks)]


def compute_labels(folder: Path, n_blocks: int, align: Callable[[int], AlignedBlock], reinforced: ModelPass | None,
                   baseline: ModelPass, cfg: LabelsConfig, pad_id: int, prefix: str = "shard", rank: int = 0,
                   world_size: int = 1) -> dict:
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
            write_shard(shard_path(folder, shard, prefix), [a.original_ids for a in aligned], labels, indices, pad_id)
            stats["blocks"] += len(aligned)
            stats["labelled_positions"] += sum(len(a.source_positions) for a in aligned)
            stats["anchors"] += sum(len(a.occurrences) for a in aligned)
    stats["compute_seconds"] = round(time.perf_counter() - started, 3)
    return stats


def identity_alignment(ids: Sequence[int]) -> AlignedBlock:
    """A block compared with itself: every position keeps its own counterpart (retain text)."""
    positions = list(range(len(ids) - 1))
    return AlignedBlock(list(ids), list(ids), positions, list(positions), [], [])


# ---- the stage -------------------------------------------------------------------------------


def labels_folder(cfg: RunConfig, out: Path, text: str, dictionary: Dictionary) -> Path:
    """OUT/labels/<fingerprint of everything the labels depend on>."""
    uses_reinforced = cfg.labels.alpha > 0
    settings = {k: v for k, v in dataclasses.asdict(cfg.labels).items() if k not in ("batch_size", "shard_blocks", "compile")}
    parts = {
        "model": model_identity(cfg.model),
        "reinforced": model_identity(reinforced_path(cfg, out)) if uses_reinforced else None,
        "corpus": text_hash(text),
        "retain": text_hash(read_text(cfg.retain)) if cfg.retain else None,
        "dictionary": text_hash(json.dumps(dictionary, sort_keys=True)),
        "block_size": cfg.corpus.block_size,
        "keep_tail": cfg.corpus.keep_tail,
        "labels": settings,
        "dtype": dtype_name(run_dtype(cfg)),
        "shard_blocks": cfg.labels.shard_blocks,
        "format": 2,  # soft targets stored as full-vocabulary log-probabilities
    }
    return out / "labels" / fingerprint(parts)


def _aligner(blocks: list[Block], dictionary: Dictionary, tokenizer, seed: int) -> Callable[[int], AlignedBlock]:
    matcher = AnchorMatcher(dictionary)

    def align(i: int) -> AlignedBlock:
        block = blocks[i]
        choice = draw_alternatives(dictionary, seed, block.index)
        return align_block(block.text, block.ids, block.offsets, tokenizer, matcher, choice)

    return align


def run_labels(cfg: RunConfig, out: Path, record: RunRecord) -> Path:
    """Compute generic labels for every target block (and the retain text's), in shards (resumable)."""
    text = read_text(cfg.target)
    dictionary = run_dictionary(cfg, text, out, record)
    if cfg.labels.alpha == 0 and not dictionary:
        raise WhpError("nothing to unlearn: labels.alpha is 0 and there is no anchored dictionary")
    folder = labels_folder(cfg, out, text, dictionary)
    if is_complete(folder):
        return folder
    started = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    blocks = load_blocks(cfg.target, tokenizer, cfg.corpus)
    device = distributed.device()
    pair = load_pair(cfg.model, reinforced_path(cfg, out) if cfg.labels.alpha > 0 else None, run_dtype(cfg), device,
                     cfg.trust_remote_code)
    reinforced, baseline = label_passes(pair, device, cfg.labels.compile)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    share = {"rank": distributed.rank(), "world_size": distributed.world_size()}  # this process's shards
    stats = compute_labels(folder, len(blocks), _aligner(blocks, dictionary, tokenizer, cfg.labels.seed), reinforced,
                           baseline, cfg.labels, pad_id, **share)
    if cfg.retain:
        retain_blocks = load_blocks(cfg.retain, tokenizer, cfg.corpus)
        own_predictions = dataclasses.replace(cfg.labels, alpha=0.0)
        retain_stats = compute_labels(folder, len(retain_blocks), lambda i: identity_alignment(retain_blocks[i].ids),
                                      None, baseline, own_predictions, pad_id, prefix="retain", **share)
        stats.update(retain_blocks=retain_stats["blocks"], retain_seconds=retain_stats["compute_seconds"])
    stats = _summed_over_processes(stats)
    distributed.barrier()  # every shard is on disk
    tokens = sum(len(b.ids) for b in blocks)
    retain_tokens = sum(len(b.ids) for b in retain_blocks) if cfg.retain else 0
    forward = tokens * (2 if reinforced is not None and cfg.labels.alpha > 0 else 1) + retain_tokens
    record.stage_done(cfg, "labels", time.perf_counter() - started, folder=folder.name, tokens=tokens, tokens_forward=forward,
                      dictionary_keys=len(dictionary), processes=distributed.world_size(), **stats)
    log.info("labels: %d anchor occurrences and %d labelled positions in %d target tokens", stats["anchors"],
             stats["labelled_positions"], tokens)
    if distributed.is_main():
        mark_complete(folder, len(blocks), cfg.labels.shard_blocks)
    distributed.barrier()
    return folder


def _summed_over_processes(stats: dict) -> dict:
    """Counts summed over the processes; seconds are the slowest process's."""
    every = distributed.gather(stats)
    return {key: (max if key.endswith("seconds") else sum)(s[key] for s in every) for key in stats}


def finished_labels(cfg: RunConfig, out: Path) -> Path:
    """The labels folder of a run whose label stage is done (for `whp finetune` alone)."""
    text = read_text(cfg.target)
    folder = labels_folder(cfg, out, text, run_dictionary(cfg, text, out))
    if not is_complete(folder):
        raise WhpError("generic labels are not computed yet; run `whp labels` (or `whp unlearn`) first", folder)
    return folder
