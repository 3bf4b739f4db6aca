"""Prediction-free drift between two samples of a table: PSI, Kolmogorov-Smirnov, Jensen-Shannon.

Numeric columns are binned at the reference's deciles; categorical columns compare category shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    column: str
    psi: float
    ks: float | None  # numeric columns only
    js: float


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return np.clip(counts / total if total else counts, _EPS, None)


def _psi(ref: np.ndarray, new: np.ndarray) -> float:
    p, q = _shares(ref), _shares(new)
    return float(np.sum((q - p) * np.log(q / p)))


def _js(ref: np.ndarray, new: np.ndarray) -> float:
    p, q = _shares(ref), _shares(new)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def _ks(ref: np.ndarray, new: np.ndarray) -> float:
    ref, new = np.sort(ref), np.sort(new)
    grid = np.concatenate([ref, new])
    cdf_ref = np.searchsorted(ref, grid, side="right") / len(ref)
    cdf_new = np.searchsorted(new, grid, side="right") / len(new)
    return float(np.max(np.abs(cdf_ref - cdf_new)))


def column_drift(column: str, ref: Any, new: Any) -> ColumnDrift | None:
    """Drift of one column between the reference and the new sample (pandas Series)."""
    import pandas as pd  # noqa: PLC0415

    ref_num = pd.to_numeric(ref, errors="coerce").dropna().to_numpy(dtype=float)
    new_num = pd.to_numeric(new, errors="coerce").dropna().to_numpy(dtype=float)
    if len(ref_num) >= 0.9 * max(len(ref.dropna()), 1) and len(ref_num) > 20 and len(new_num) > 20:
        edges = np.unique(np.quantile(ref_num, np.linspace(0, 1, 11)))
        if len(edges) > 2:
            inner = edges[1:-1]
            r = np.bincount(np.searchsorted(inner, ref_num, side="right"), minlength=len(edges) - 1)
            n = np.bincount(np.searchsorted(inner, new_num, side="right"), minlength=len(edges) - 1)
            return ColumnDrift(column, _psi(r, n), _ks(ref_num, new_num), _js(r, n))
    ref_counts, new_counts = ref.astype(str).value_counts(), new.astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(new_counts.index), key=str)
    if len(categories) < 2 or len(categories) > 1000:
        return None
    r = np.array([ref_counts.get(c, 0) for c in categories], dtype=float)
    n = np.array([new_counts.get(c, 0) for c in categories], dtype=float)
    return ColumnDrift(column, _psi(r, n), None, _js(r, n))


def table_drift(reference: Any, new: Any) -> list[ColumnDrift]:
    out = []
    for column in [c for c in new.columns if c in reference.columns]:
        drift = column_drift(str(column), reference[column], new[column])
        if drift is not None and not math.isnan(drift.psi):
            out.append(drift)
    return sorted(out, key=lambda d: -d.psi)
