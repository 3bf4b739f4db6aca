"""Writing outputs: atomically, and never over an input."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlsec.errors import OutputError


def write_atomic(target: str, text: str, inputs: Sequence[str]) -> None:
    """Write `text` to `target` through a temporary file and a rename; refuse to replace an input."""
    path = Path(target)
    resolved = path.resolve()
    for given in inputs:
        src = Path(given).resolve()
        if resolved == src or (src.is_dir() and resolved.is_relative_to(src) and resolved.exists()):
            raise OutputError("refusing to write an output over an input", path=target)
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
