"""User-facing errors: one line naming the file and the problem, printed without a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("whp")


class WhpError(Exception):
    """A problem with the user's input or environment, reported as one line by the CLI."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def warn(message: str) -> None:
    log.warning(message)
