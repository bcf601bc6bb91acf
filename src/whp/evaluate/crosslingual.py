"""Cross-lingual familiarity: the familiarity prompts translated into other languages. Unlearning
done on English text may leave the knowledge reachable in French, Spanish or German. Each
language file holds one translation of every English prompt (`source`: its line in the English
prompts); value = the mean over languages."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from whp.errors import WhpError
from whp.evaluate.prompts import load_sources
from whp.evaluate.robust import PromptKind, measure_variants


def check_sources(path: str, sources: Sequence[tuple[int, int]], base_count: int, base_files: Sequence[str]) -> None:
    """A translated file must hold exactly one prompt per English prompt: as many lines, each
    `source` a line of the English prompts (0-based over `base_files` in order), none twice."""
    base = ", ".join(base_files)
    if len(sources) != base_count:
        raise WhpError(f"{len(sources)} prompts for the {base_count} of the English prompts ({base})", path)
    seen: dict[int, int] = {}
    for line, source in sources:
        if source >= base_count:
            raise WhpError(f"line {line}: source {source} is not a line of the English prompts ({base}: lines 0 to "
                           f"{base_count - 1})", path)
        if source in seen:
            raise WhpError(f"line {line}: source {source} is already translated on line {seen[source]}", path)
        seen[source] = line


def language(path: str) -> str:
    """A translated file's name in the record: its file name without the extension."""
    return Path(path).stem


def measure(model, tokenizer, cfg, path: str, kind: PromptKind, files: str) -> dict:
    """The `kind` familiarity on each translated file of setting `files`, each checked against the
    English prompts of `kind`; value = the mean over files, each under "languages"."""
    base_count = len(kind.prompts(cfg))
    variants = {}
    for translated in getattr(cfg, files):
        check_sources(translated, load_sources(translated), base_count, getattr(cfg, kind.files))
        variants[language(translated)] = kind.load(translated)
    if not variants:
        raise WhpError(f"no translated prompt files (setting {files})")
    return measure_variants(kind, model, tokenizer, cfg, variants, "languages")
