"""Writing outputs: atomically, and never over an input."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mlsec.errors import OutputError


def write_atomic(target: str, text: str, inputs: Sequence[str]) -> None:
    """Write `text` to `target` through a temporary file and a rename; refuse to replace an input. A target that
    is not a regular file (a device such as /dev/null, a FIFO) is written into, never replaced."""
    path = Path(target)
    resolved = path.resolve()
    for given in inputs:
        src = Path(given).resolve()
        if resolved == src or (src.is_dir() and resolved.is_relative_to(src) and resolved.exists()):
            raise OutputError("refusing to write an output over an input", path=target)
    if resolved.exists() and not resolved.is_file():  # /dev/null, /dev/stdout, a FIFO: write into it, never replace it
        try:
            with open(resolved, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", path=target) from exc
        return
    parent = resolved.parent
    if not parent.is_dir():
        raise OutputError(f"directory {parent} does not exist", path=target)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, resolved)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write: {exc.strerror or exc}", path=target) from exc


def write_output(target: str | None, text: str, inputs: Sequence[str], stream: TextIO | None = None) -> None:
    """`text` to `stream` (default standard output) when there is no target, else atomically to `target`."""
    if target is None:
        (stream or sys.stdout).write(text)
    else:
        write_atomic(target, text, inputs)
