"""The review file: every entry with its alternatives, provenance, kind, score and signals (YAML).

`whp anchors --out FILE` writes it and `--anchors FILE` reads it as it is: the dictionary loader
takes each entry's `alternatives` and ignores the other fields, so a person can reorder, edit
or delete entries before a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from whp.anchors.extract import Entry
from whp.files import atomic_write_bytes

HEADER = """\
# Anchored dictionary drafted by `whp anchors` ({source}).
# Review and edit: each entry's `alternatives` are used; provenance, kind, score and signals are
# for reading only. Entries are in rank order (user entries first). Signals: count (occurrences),
# salience (log target rate / reference rate, nats), reinforced (mean gain of log p_R - log p_B
# over the expression's tokens in sampled target contexts, nats), capitalised (share of
# mid-sentence occurrences capitalised), frequency (log count), cohesion (multi-word: count / count
# of its rarest word), surprise (the baseline's -log p of the expression in those contexts, nats).
# Use it: whp unlearn --anchors THIS_FILE ...
"""


def render(entries: Sequence[Entry], source: str) -> str:
    body = {}
    for entry in entries:
        item: dict = {"alternatives": list(entry.alternatives), "provenance": entry.provenance}
        if entry.kind:
            item["kind"] = entry.kind
        if entry.score is not None:
            item["score"] = entry.score
        if entry.signals:
            item["signals"] = dict(entry.signals)
        body[entry.key] = item
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    return HEADER.format(source=source) + text


def write_review(path: str | Path, entries: Sequence[Entry], source: str) -> None:
    atomic_write_bytes(Path(path), render(entries, source).encode("utf-8"))
