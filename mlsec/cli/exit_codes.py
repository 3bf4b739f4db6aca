"""The documented exit codes of every mlsec command."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # nothing at or above --fail-on; gate allowed; signature valid
    BLOCKED = 1  # findings at or above the threshold; gate denied; signature invalid
    USAGE = 2  # bad flag or argument (click's own code), invalid rules
    INCOMPLETE = 3  # some input could not be scanned, and nothing blocked
    INTERNAL = 4  # a bug: please report it
