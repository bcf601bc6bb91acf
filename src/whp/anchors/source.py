"""The anchored dictionary a run uses: the user's file, or one extracted from the target (as
`whp anchors` does) and kept in the run folder."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from whp.anchors.dictionary import Dictionary, keys_missing_from, load_dictionary
from whp.anchors.extract import NoCandidates, extract
from whp.anchors.review import write_review
from whp.common import fingerprint, text_hash
from whp.errors import WhpError, warn
from whp.files import read_json
from whp.models import model_identity
from whp.runs import reinforced_path

if TYPE_CHECKING:
    from whp.config import RunConfig
    from whp.runs import RunRecord

log = logging.getLogger("whp")


def run_dictionary(cfg: RunConfig, text: str, out: Path, record: RunRecord | None = None) -> Dictionary:
    """The run's dictionary ({} for the reinforcement-only ablation); says how much of it the
    target holds, and warns when most keys never occur (little to unlearn through anchors)."""
    if not cfg.labels.use_dictionary:
        return {}
    dictionary = load_dictionary(cfg.anchors) if cfg.anchors else _extracted(cfg, text, out, record)
    if not dictionary:
        return dictionary
    missing = keys_missing_from(dictionary, text)
    name = cfg.anchors or str(out / "anchors.yaml")
    if len(missing) == len(dictionary):
        warn(f"{name}: no dictionary key occurs in the target text; anchors will change nothing")
    elif len(missing) > len(dictionary) / 2:
        warn(f"{name}: {len(missing)} of {len(dictionary)} dictionary keys never occur in the target: "
             "a thin target for these anchors (more target text, or a dictionary drafted from it, forgets more)")
    else:
        log.info("%d of %d dictionary keys occur in the target", len(dictionary) - len(missing), len(dictionary))
    return dictionary


def _extracted(cfg: RunConfig, text: str, out: Path, record: RunRecord | None) -> Dictionary:
    """The dictionary `whp anchors` would draft, written to OUT/anchors.yaml (a review file) and
    reused while the model, reinforced model, target and extraction settings are unchanged.
    Without `record` (a stage that only reads labels) it must already be there."""
    path = out / "anchors.yaml"
    reinforced = reinforced_path(cfg, out) if cfg.labels.alpha > 0 else None
    key = fingerprint({"model": model_identity(cfg.model), "reinforced": model_identity(reinforced) if reinforced else None,
                       "corpus": text_hash(text), "extract": dataclasses.asdict(cfg.extract)})
    saved = record.data if record is not None else read_json(out / "run.json") if (out / "run.json").is_file() else {}
    if path.is_file() and saved.get("anchors", {}).get("fingerprint") == key:
        return load_dictionary(path)
    if record is None:
        raise WhpError("the extracted dictionary is missing or stale; run `whp labels` (or `whp unlearn`) first", path)
    log.info("no --anchors given: extracting an anchored dictionary from the target (as `whp anchors` does) into %s", path)
    try:
        entries, facts = extract(cfg.model, text, cfg.extract, reinforced=reinforced, target_name=cfg.target[0], dtype=cfg.dtype,
                                 trust_remote_code=cfg.trust_remote_code)
    except NoCandidates as exc:
        warn(f"{exc}: no anchored dictionary; generic labels come from the reinforced model alone")
        return {}
    write_review(path, entries, f"extracted by whp unlearn from {', '.join(cfg.target)}")
    record.data["anchors"] = {"fingerprint": key, **facts}
    record.save()
    return load_dictionary(path)
