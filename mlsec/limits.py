"""ScanLimits: every bound a scan applies to hostile input, as one frozen value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Bounds on what one scan reads. Hitting one is a finding or an error, never a crash or a hang."""

    max_file_bytes: int = 64 * 1024 * MiB  # a single file or member
    max_member_in_memory: int = 128 * MiB  # archive members are read into memory up to this size
    max_total_unpacked: int = 8 * 1024 * MiB  # all members of one top-level input together
    max_members: int = 100_000  # members of one archive
    max_depth: int = 6  # archives inside archives
    max_ratio: int = 200  # uncompressed / compressed, for members over `ratio_floor` bytes
    ratio_floor: int = 16 * MiB
    max_pickle_opcodes: int = 50_000_000
    max_pickle_memo: int = 1_000_000
    max_pickle_line: int = 1 * MiB  # text arguments of protocol-0 opcodes
    max_nested_pickles: int = 64
    max_header_bytes: int = 100_000_000  # a safetensors header or a GGUF string (the reference loaders' bound)
    max_onnx_nodes: int = 1_000_000  # nodes of an ONNX model, subgraphs and functions included
    max_line_bytes: int = 16 * MiB  # datasets: one line of CSV, TSV or JSON Lines
    max_row_fields: int = 100_000  # datasets: fields in one CSV/TSV line
    max_seconds: float = 120.0  # all scanners together, on one artifact (main thread only)

    def with_overrides(self, pairs: Iterable[str]) -> ScanLimits:
        """These limits with `NAME=VALUE` pairs applied (`--limit max_seconds=30`); ValueError says what is wrong."""
        known = {f.name: f.type for f in fields(self)}
        changes: dict[str, int | float] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise ValueError(f"{pair!r}: expected NAME=VALUE with NAME one of {', '.join(known)}")
            try:
                number = float(value) if known[name] in (float, "float") else int(value.replace("_", ""))
            except ValueError:
                raise ValueError(f"{pair!r}: {value!r} is not a number") from None
            if number <= 0:
                raise ValueError(f"{pair!r}: limits are positive")
            changes[name] = number
        return replace(self, **changes)
