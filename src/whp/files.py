"""Atomic file and folder writes, so an interrupted run never leaves something that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import yaml


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `final` in one rename."""
    final = Path(final)
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, yaml.safe_dump(obj, sort_keys=False).encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_utf8(path: Path, kind: str = "file") -> str:
    """The text of a UTF-8 file; a missing or undecodable file is a one-line WhpError naming it."""
    from whp.errors import WhpError

    path = Path(path)
    if not path.is_file():
        raise WhpError(f"{kind} does not exist", path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WhpError(f"not UTF-8 text (byte {exc.start})", path) from exc
