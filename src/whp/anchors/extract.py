"""`whp anchors`: build an anchored dictionary from the target text alone (and optionally an LLM).

Steps:
1. candidates above the frequency floor, with cheap signals (whp.anchors.candidates);
2. salience: the log ratio of the candidate's rate in the target to its rate in a reference
   text, or, without one, to the baseline's own probability of it out of context;
3. a first ranking on the cheap signals; the best `signal_candidates` get the reinforced signal
   (how much R raises them over B in the target's contexts, whp.anchors.signals);
4. the final ranking of every signal (whp.anchors.scoring); the top `max_entries` that are not
   made of better-ranked keys are kept (the cleaner would drop them);
5. kinds from the contexts and alternatives from the pools (whp.anchors.kinds, .alternatives);
6. optionally, entries drafted by an LLM over passages, merged in;
7. a user dictionary merged over everything (user entries win).
The result is a list of `Entry`, written as a review file (whp.anchors.review).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from whp import passes, peft_adapter, precision
from whp.anchors.alternatives import Assigner, alternatives
from whp.anchors.candidates import (
    Candidate,
    Scan,
    candidates,
    is_capitalised,
    log_rate_ratio,
)
from whp.anchors.dictionary import Entries, clean, conflicts, is_splittable
from whp.anchors.kinds import detect_kind
from whp.anchors.llm import LLMConfig, draft
from whp.anchors.scoring import ScoreWeights, combine, rank
from whp.anchors.signals import (
    ModelPair,
    model_forward,
    plan_samples,
    prior_logprobs,
    sampled_gains,
    token_span,
)
from whp.corpus import make_blocks
from whp.errors import WhpError, warn
from whp.files import atomic_folder
from whp.models import default_device, load_tokenizer
from whp.passes import shared_pair
from whp.reinforce import reinforce
from whp.train import TrainConfig, TrainOverrides

log = logging.getLogger("whp")


@dataclass
class ExtractConfig:
    """How `whp anchors` (and `whp unlearn` without --anchors) builds a dictionary."""

    min_count: int = field(default=3, metadata={"help": "frequency floor: occurrences in the target"})
    max_words: int = field(default=4, metadata={"help": "longest multi-word candidate"})
    max_entries: int = field(default=300, metadata={"help": "extracted entries kept (best first)"})
    min_score: float | None = field(default=None, metadata={"help": "also drop entries scoring below this (z units); none = keep max_entries"})
    signal_candidates: int = field(default=600, metadata={"help": "candidates (best by the cheap signals) that get the reinforced signal"})
    window: int = field(default=64, metadata={"help": "tokens per context window for the reinforced signal"})
    per_candidate: int = field(default=3, metadata={"help": "sampled occurrences per candidate"})
    min_context: int = field(default=8, metadata={"help": "tokens of context an occurrence needs in its window"})
    batch_size: int = field(default=16, metadata={"help": "windows per forward pass"})
    alternatives: int = field(default=2, metadata={"help": "alternatives per extracted key"})
    seed: int = field(default=0, metadata={"help": "seed of occurrence sampling and pool order"})
    reinforce_tokens: int = field(default=32768, metadata={"help": "without a reinforced model: train a LoRA one on this many target tokens (0 = no reinforced signal)"})
    reinforce: TrainOverrides = field(
        default_factory=lambda: TrainOverrides({"lr": 3e-4, "warmup_steps": 3, "checkpoint_every": 0}),
        metadata={"help": "training of that reinforced LoRA adapter (blocks of 256 tokens), over the training defaults"},
    )
    weights: ScoreWeights = field(default_factory=ScoreWeights, metadata={"help": "weights of the standardised signals"})
    llm: LLMConfig = field(default_factory=LLMConfig, metadata={"help": "optional LLM mode"})

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.max_entries < 1 or self.alternatives < 1:
            raise ValueError("min_count, max_entries and alternatives must be >= 1")
        if self.max_words < 1 or self.window < 2 or self.per_candidate < 1 or self.batch_size < 1:
            raise ValueError("max_words, per_candidate, batch_size must be >= 1 and window >= 2")
        if not 0 <= self.min_context < self.window:
            raise ValueError("min_context must lie in [0, window)")


class NoCandidates(WhpError):
    """No expression of the target reaches the frequency floor."""


@dataclass
class Entry:
    key: str
    alternatives: list[str]
    provenance: str  # extracted, llm, extracted+llm, user
    kind: str = ""
    score: float | None = None
    signals: dict = field(default_factory=dict)


# ---- models ----------------------------------------------------------------------------------


def load_pair(model: str, reinforced: str | Path | None, cfg: ExtractConfig, target: str, tokenizer,
              trust_remote_code: bool = False, save_reinforced: str | Path | None = None, dtype_setting: str = "auto") -> ModelPair:
    """B and R as forward functions (whp.passes.load_pair); R from a folder (adapter or full
    model), or trained here on `reinforce_tokens` of the target (and saved to `save_reinforced`
    if given), or none."""
    device = default_device()
    dtype = precision.resolve_for(dtype_setting, device)
    if reinforced is None and cfg.reinforce_tokens > 0:
        adapted = train_reinforced(model, target, tokenizer, cfg, trust_remote_code, dtype)
        if save_reinforced:
            with atomic_folder(Path(save_reinforced)) as tmp:
                adapted.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        pair = shared_pair(adapted.to(device=device, dtype=dtype))
    else:
        pair = passes.load_pair(model, reinforced, dtype, device, trust_remote_code)
    if pair.reinforced is None:
        return ModelPair(model_forward(pair.baseline, device))
    reinforced_forward = model_forward(pair.reinforced, device)
    if pair.shared:
        return ModelPair(peft_adapter.adapter_off(reinforced_forward, pair.reinforced), reinforced_forward)
    return ModelPair(model_forward(pair.baseline, device), reinforced_forward)


def train_reinforced(model: str, target: str, tokenizer, cfg: ExtractConfig, trust_remote_code: bool = False,
                     dtype: torch.dtype = torch.float32):
    """A LoRA-reinforced baseline (the reinforce stage's recipe, whp.reinforce) trained on up to
    `reinforce_tokens` target tokens (blocks of 256, evenly spread over the target), in memory."""
    from whp.config import from_dict

    blocks = make_blocks(target, tokenizer, 256, keep_tail=True)
    wanted = max(1, min(len(blocks), cfg.reinforce_tokens // 256))
    step = len(blocks) / wanted
    chosen = [blocks[int(k * step)] for k in range(wanted)]
    log.info("anchors: training a reinforced LoRA adapter on %d target tokens (no --reinforced given)",
             sum(len(b.ids) for b in chosen))
    train_cfg = from_dict(TrainConfig, {**cfg.reinforce, "lora": True}, "reinforce.")
    with tempfile.TemporaryDirectory() as work:
        adapted, _ = reinforce(model, chosen, train_cfg, dtype, Path(work), "reinforce (for anchors)", trust_remote_code)
    return adapted


# ---- signals ---------------------------------------------------------------------------------


def cheap_signals(scan: Scan, found: list[Candidate], reference: Scan | None, prior: dict[str, float] | None) -> list[dict]:
    signals = []
    for c in found:
        if reference is not None:
            salience = log_rate_ratio(c.count, scan.n_words, reference.count(c.key), reference.n_words)
        elif prior is not None:  # per word, so that long names are not salient for their length alone
            salience = math.log(c.count / scan.n_words) - prior[c.key] / c.n_words
        else:
            salience = None
        signals.append({"count": c.count, "salience": salience, "capitalised": c.capitalised,
                        "frequency": math.log(c.count), "cohesion": c.cohesion})
    return signals


def reinforced_signals(pair: ModelPair, tokenizer, scan: Scan, found: list[Candidate], cfg: ExtractConfig) -> dict:
    encoding = tokenizer(scan.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    ends = [end for _, end in offsets]
    occurrences = {}
    for c in found:
        spans = []
        for first in c.occurrences:
            span = token_span(offsets, ends, (scan.words[first].start, scan.words[first + c.n_words - 1].end))
            if span is not None:
                spans.append(span)
        occurrences[c.key] = spans
    plan = plan_samples(occurrences, cfg.window, cfg.per_candidate, cfg.min_context, cfg.seed)
    n_windows = len({s.window for samples in plan.values() for s in samples})
    log.info("anchors: model signals for %d candidates from %d windows of %d tokens", len(found), n_windows, cfg.window)
    return sampled_gains(pair, ids, cfg.window, plan, cfg.batch_size)


# ---- the whole extraction ----------------------------------------------------------------------


def extract(model: str, target: str, cfg: ExtractConfig, reference: str | None = None,
            reinforced: str | Path | None = None, user: Entries | None = None, target_name: str = "target",
            trust_remote_code: bool = False, save_reinforced: str | Path | None = None,
            dtype: str = "auto") -> tuple[list[Entry], dict]:
    """Ranked entries (user entries first) and timings/facts about the run; the models compute in
    `dtype` (a whp.precision setting)."""
    started = time.perf_counter()
    facts: dict = {}
    scan = Scan(target, cfg.max_words)
    found = candidates(scan, cfg.min_count)
    if not found:
        raise NoCandidates(f"no candidate expression occurs at least {cfg.min_count} times "
                       "(the frequency floor); give more text or lower min_count", target_name)
    facts["candidates"] = len(found)
    reference_scan = Scan(reference, cfg.max_words) if reference else None
    tokenizer = load_tokenizer(model, trust_remote_code)
    pair = load_pair(model, reinforced, cfg, target, tokenizer, trust_remote_code, save_reinforced, dtype)
    facts["seconds_models"] = round(time.perf_counter() - started, 1)
    prior = None if reference_scan else prior_logprobs(pair.baseline, tokenizer, [c.key for c in found])
    signals = cheap_signals(scan, found, reference_scan, prior)
    first = combine(signals, ScoreWeights(**{**vars(cfg.weights), "reinforced": 0.0}))
    short = rank([c.key for c in found], first)[: cfg.signal_candidates]
    found, signals = [found[i] for i in short], [signals[i] for i in short]
    gains = reinforced_signals(pair, tokenizer, scan, found, cfg)
    for c, s in zip(found, signals):
        s["reinforced"], in_context = gains[c.key]
        s["surprise"] = None if in_context is None else -in_context
    scores = combine(signals, cfg.weights)
    order = rank([c.key for c in found], scores)
    facts["seconds_signals"] = round(time.perf_counter() - started - facts["seconds_models"], 1)
    selected = _select(order, found, scores, cfg)
    user = user or []
    user_keys = {k for k, _ in user}
    forbidden = {w for c in found for w in c.key.split()} | {w.text for w in scan.words if is_capitalised(w.text)} | user_keys
    assigner = Assigner(forbidden, cfg.seed)
    assigner.reserve(a for _, alts in user for a in alts)
    assigner.reserve(w for _, alts in user for a in alts for w in a.split())
    entries = []
    for i in selected:
        c = found[i]
        if c.key in user_keys:
            continue
        kind = detect_kind(c.key, scan.words, c.occurrences)
        plural = c.key.endswith("s") and scan.unigrams[c.key.split()[-1][:-1]] > 0  # "Stapletons", "detectives"
        alts = alternatives(c.key, kind, assigner, cfg.alternatives, plural)
        if not alts:
            warn(f"anchors: no alternative left for {c.key!r} (pools exhausted); entry skipped")
            continue
        entries.append(Entry(c.key, alts, "extracted", kind.describe(), round(scores[i], 3), _rounded(signals[i])))
    if cfg.llm.url:
        entries = merge_llm(entries, draft(target, cfg.llm), user_keys, assigner, facts)
    entries = merge_user(entries, user)
    facts["entries"] = len(entries)
    facts["seconds"] = round(time.perf_counter() - started, 1)
    return entries, facts


def _select(order: list[int], found: list[Candidate], scores: list[float], cfg: ExtractConfig) -> list[int]:
    """The best `max_entries` (above `min_score`) that the cleaner keeps: none made of other kept
    keys. A key made of keys ranked below it ("Sherlock Holmes" above "Sherlock") is found only
    once those are in, so it is struck out and the selection redone until nothing changes."""
    struck: set[int] = set()
    while True:
        kept, keys = [], set()
        for i in order:
            if len(kept) >= cfg.max_entries or (cfg.min_score is not None and scores[i] < cfg.min_score):
                break
            if i in struck or is_splittable(found[i].key, keys):
                continue
            kept.append(i)
            keys.add(found[i].key)
        late = {i for i in kept if is_splittable(found[i].key, keys)}
        if not late:
            return kept
        struck |= late


def _rounded(signals: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in signals.items() if v is not None}


def merge_llm(entries: list[Entry], drafts, user_keys: set[str], assigner: Assigner, facts: dict) -> list[Entry]:
    """LLM drafts merged into the extracted entries: a key both found gets the LLM's alternatives
    (those that keep the dictionary consistent; the pool's otherwise); new keys are appended."""
    facts["llm_passages_answered"], facts["llm_passages_failed"] = drafts.answered, len(drafts.failed)
    if not drafts.entries:
        if drafts.failed:
            warn("anchor LLM gave nothing usable; the dictionary comes from extraction alone")
        return entries
    merged = clean(drafts.entries)
    keys = {e.key for e in entries} | set(merged) | user_keys
    by_key = {e.key: e for e in entries}
    for key, alts in merged.items():
        if key in user_keys:
            continue
        usable = [a for a in alts if a not in keys and a not in assigner.used]
        assigner.reserve(usable)
        if key in by_key:
            entry = by_key[key]
            entry.provenance = "extracted+llm"
            entry.alternatives = usable or entry.alternatives
        elif usable:
            entries.append(Entry(key, usable, "llm"))
    return entries


def merge_user(entries: list[Entry], user: Entries) -> list[Entry]:
    """User entries first and over any extracted or drafted entry with the same key; then the
    cleaner's rule (a key made of other keys is dropped), with a warning for user keys it drops."""
    for problem in conflicts(user):
        warn(f"user dictionary: {problem}")
    merged_user = clean(user) if user else {}
    combined = [Entry(k, list(v), "user") for k, v in merged_user.items()]
    combined += [e for e in entries if e.key not in merged_user]
    keys = {e.key for e in combined}
    kept = []
    for entry in combined:
        if is_splittable(entry.key, keys):
            if entry.provenance == "user":
                warn(f"user dictionary: key {entry.key!r} is made of other keys and is dropped (DESIGN §2.2)")
            continue
        kept.append(entry)
    return kept
