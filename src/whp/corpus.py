"""Text files → token blocks of `block_size` tokens, each keeping its text and character offsets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from transformers import PreTrainedTokenizerBase

from whp.errors import WhpError
from whp.files import read_utf8


@dataclass
class CorpusConfig:
    """How target text is cut into training blocks."""

    block_size: int = field(default=512, metadata={"help": "tokens per block (paper: 512)"})
    keep_tail: bool = field(default=False, metadata={"help": "keep the last, shorter block"})

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ValueError(f"block_size must be at least 2, got {self.block_size}")


@dataclass(frozen=True)
class Block:
    """`block_size` consecutive tokens of the corpus and the characters they cover."""

    index: int
    text: str
    ids: tuple[int, ...]  # (T,)
    offsets: tuple[tuple[int, int], ...]  # (T, 2) character spans within `text`


def read_text(paths: Sequence[str | Path]) -> str:
    """Concatenate UTF-8 text files (blank line between them); a missing or empty file is an error."""
    parts = []
    for path in paths:
        text = read_utf8(Path(path), "text file")
        if not text.strip():
            raise WhpError("text file is empty", path)
        parts.append(text.strip("\n"))
    if not parts:
        raise WhpError("no target files given")
    return "\n\n".join(parts)


def make_blocks(
    text: str, tokenizer: PreTrainedTokenizerBase, block_size: int, keep_tail: bool = False
) -> list[Block]:
    """Tokenize the whole text once (no special tokens) and cut it into non-overlapping blocks.

    Block k's text runs from the end of block k-1's last token to the end of its own last
    token, so blocks partition the text and their offsets are relative to their own text.
    """
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    blocks, char_start = [], 0
    for index, first in enumerate(range(0, len(ids), block_size)):
        block_ids = ids[first : first + block_size]
        if len(block_ids) < block_size and not keep_tail:
            break
        block_offsets = offsets[first : first + block_size]
        char_end = max(end for _, end in block_offsets)
        relative = tuple((max(s - char_start, 0), max(e - char_start, 0)) for s, e in block_offsets)
        blocks.append(Block(index, text[char_start:char_end], tuple(block_ids), relative))
        char_start = char_end
    return blocks


def load_blocks(
    paths: Sequence[str | Path], tokenizer: PreTrainedTokenizerBase, cfg: CorpusConfig
) -> list[Block]:
    """Read target files and cut them into blocks; too little text is a clear error."""
    text = read_text(paths)
    blocks = make_blocks(text, tokenizer, cfg.block_size, cfg.keep_tail)
    if not blocks:
        n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        raise WhpError(
            f"target has {n_tokens} tokens, fewer than one block of {cfg.block_size}; "
            "add text, lower corpus.block_size or set corpus.keep_tail=true",
            paths[0],
        )
    return blocks
