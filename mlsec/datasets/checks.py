"""Per-cell checks on string columns: spreadsheet formulas, secrets, personal data. Counts and
locations only: a report never copies a dataset's values."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$")
_FLOAT = re.compile(r"^[+-]?(\d*\.\d+|\d+\.\d*|\d+[eE][+-]?\d+)([eE][+-]?\d+)?$")  # a measurement, not an identifier
_PII = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone": re.compile(r"(?<!\d)\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\d)"),
    "us-ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
}


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass
class CellFindings:
    """Counts and up to five sample locations (row, column) per kind."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, kind: str, row: int, column: str) -> None:
        self.counts[kind] += 1
        where = self.samples.setdefault(kind, [])
        if len(where) < 5:
            where.append((row, column))


def scan_cells(
    frame: Any, first_row: int, found: CellFindings, secret_prefilter: list[str], secret_regexes: list[re.Pattern[str]]
) -> None:
    """Look at the string cells of `frame` (rows numbered from `first_row`).

    Vectorised: cheap masks first (numbers, first characters, substrings), regexes only on the few
    cells that pass them, so a numeric CSV costs a handful of column passes, not a loop per cell.
    """
    for column in frame.columns:
        series = frame[column]
        if series.dtype != object and str(series.dtype) not in ("string", "str", "string[pyarrow]"):
            continue
        text = series.dropna().astype(str)
        text = text[text != ""]
        if text.empty:
            continue
        numeric = text.str.fullmatch(_NUMBER.pattern)
        words = text[~numeric]
        if words.empty:
            continue
        for row in words.index[words.str.match(_FORMULA.pattern)]:
            found.add("formula", first_row + int(row), str(column))
        lowered = words.str.lower()
        suspicious = (
            lowered.str.contains("|".join(map(re.escape, secret_prefilter)), regex=True)
            if secret_prefilter
            else lowered != lowered
        )
        for row, value in words[suspicious].items():
            if any(r.search(value) for r in secret_regexes):
                found.add("secret", first_row + int(row), str(column))
        for row, value in words[words.str.contains("@", regex=False)].items():
            if _PII["email"].search(value):
                found.add("email", first_row + int(row), str(column))
        digits = words[words.str.contains(r"\d{3}", regex=True) & ~words.str.fullmatch(_FLOAT.pattern)]
        for row, value in digits.items():
            if _PII["us-ssn"].search(value):
                found.add("us-ssn", first_row + int(row), str(column))
            card = _PII["card"].search(value)
            if card and _luhn(re.sub(r"\D", "", card.group())):
                found.add("card", first_row + int(row), str(column))
            elif _PII["phone"].search(value):
                found.add("phone", first_row + int(row), str(column))
