"""Which file a worker process was scanning when it died, and what its death says.

A pool's workers each post, in memory they share with the pool's parent (a Board), the index of the unit they
are scanning, and IDLE between batches. When a worker dies of its own doing (a crash in native code, its own
overrun timer: see its_own_doing), the parent reads the dead worker's cell once the pool has shut down and
reports that unit as an error at once. Before, it could not tell which of the units in flight had done it: it
scanned them all again in a fresh pool, then each alone, so a file stuck in C cost three overruns of twice
max_seconds of CPU, not one. A worker killed from outside (SIGKILL: the out-of-memory killer may pick any big
process) blames nothing: its units are scanned again, as before.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

IDLE = -1
BUG = 70  # a worker's exit status when mlsec itself failed in it (EX_SOFTWARE)
_SELF_INFLICTED = {"SIGPROF", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}
_POSTED: list[Any] = []  # in a pool's worker: [the board's cells, this worker's cell]


class Board:
    """Shared cells for `workers` worker processes of `context` (a multiprocessing context): a pair each, the
    worker's pid and the unit it is scanning. Handed to each worker at its start (`parts`, to join)."""

    def __init__(self, context: Any, workers: int) -> None:
        self.cells = context.Array("q", 2 * workers, lock=False)
        self.taken = context.Value("i", 0)  # how many workers have joined: the next one's pair

    @property
    def parts(self) -> tuple[Any, Any]:
        return self.cells, self.taken

    def culprits(self, processes: Iterable[Any]) -> dict[int, str]:
        """The units whose worker died of its own doing while scanning them, with how it died; `processes` are
        the pool's ended workers (multiprocessing.Process)."""
        ended = {p.pid: p.exitcode for p in processes}
        found = {}
        for pair in range(len(self.cells) // 2):
            pid, index = self.cells[2 * pair], self.cells[2 * pair + 1]
            code = ended.get(pid)
            if index != IDLE and code is not None and its_own_doing(code):
                found[index] = how_it_died(code)
        return found


def join(cells: Any, taken: Any) -> None:
    """In a worker at its start: take the board's next pair, and post this process's pid there."""
    with taken.get_lock():
        pair = taken.value
        taken.value += 1
    if 2 * pair + 1 < len(cells):
        cells[2 * pair], cells[2 * pair + 1] = os.getpid(), IDLE
        _POSTED[:] = [cells, 2 * pair + 1]


def post(index: int) -> None:
    """In a worker: it is scanning the unit `index` now (IDLE: none). A no-op outside a pool's worker."""
    if _POSTED:
        _POSTED[0][_POSTED[1]] = index


def its_own_doing(exitcode: int) -> bool:
    """Whether a worker that ended with `exitcode` (multiprocessing's: -N for signal N) ended of what it was
    running: a crash, an abort, its overrun timer, an exit of its own. Not a signal from outside (SIGKILL,
    SIGTERM), which may have picked it for another's sake."""
    if exitcode >= 0:
        return exitcode != 0
    return _signal_name(-exitcode) in _SELF_INFLICTED


def how_it_died(exitcode: int) -> str:
    """A unit's error reason for a worker that ended with `exitcode` while scanning it."""
    if exitcode < 0:
        name = _signal_name(-exitcode)
        why = {
            "SIGPROF": "native code still running at twice max_seconds of CPU",
            "SIGKILL": "killed, for example by the out-of-memory killer",
            "SIGSEGV": "a crash in native code",
            "SIGBUS": "a crash in native code",
            "SIGABRT": "native code aborted",
        }.get(name, "ended by a signal")
        return f"its worker process died while scanning it: {name} ({why})"
    if exitcode == BUG:
        return (
            "mlsec failed in its worker process while scanning it: a bug; please report it with the output of the"
            " same command run with --debug"
        )
    return f"its worker process ended with status {exitcode} while scanning it"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
