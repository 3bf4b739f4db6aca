"""ScanLimits: every bound a scan applies to hostile input, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

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
