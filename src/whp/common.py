"""What every layer shares: the ignored-label value and content fingerprints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

IGNORE = -100  # a label position that carries no loss (Hugging Face's convention)


def fingerprint(parts: dict) -> str:
    """A short stable hash of everything a result depends on (JSON-serialisable parts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
