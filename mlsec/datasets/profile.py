"""A streaming profile of a table: schema, labels, duplicate rows, value-label statistics, a row sample.

Bounded memory: 16 bytes per row for duplicate detection, capped value tables per column, and a
reservoir sample of at most SAMPLE_ROWS rows for drift statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlsec.datasets import LABEL_NAMES

SAMPLE_ROWS = 20_000
MAX_DISTINCT = 256  # columns with more distinct values are not tracked value by value
MAX_TOKENS = 20_000  # (word, label) pairs kept per text column


def _rounded(frame: Any) -> Any:
    """Numeric columns rounded to 2 significant digits: noise added to dodge exact de-duplication goes away."""
    out = frame.copy()
    for column in out.columns:
        if pd_is_float(out[column]):
            values = out[column].to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                magnitude = np.where(values == 0, 0, np.floor(np.log10(np.abs(values))))
                scale = np.power(10.0, 1 - magnitude)
                out[column] = np.where(np.isfinite(values), np.round(values * scale) / scale, values)
    return out


def pd_is_float(series: Any) -> bool:
    import pandas as pd  # noqa: PLC0415

    return pd.api.types.is_float_dtype(series)


def _id_like(column: str) -> bool:
    lowered = column.lower()
    return lowered in ("id", "uuid", "guid") or lowered.endswith(("_id", "_uuid"))


def _text(value: Any) -> str:
    """A cell as text, the same whatever the chunk's inferred type: 16, 16.0 and "16" are one value."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Profile:
    label_column: str | None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    numeric: Counter[str] = field(default_factory=Counter)  # column -> cells that parse as numbers
    filled: Counter[str] = field(default_factory=Counter)  # column -> non-null cells
    labels: Counter[str] = field(default_factory=Counter)
    values: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)  # column -> (value, label) counts
    hashes: list[Any] = field(default_factory=list)  # per chunk: uint64 row hashes (features only)
    near_hashes: list[Any] = field(default_factory=list)  # the same, numbers rounded to 2 significant digits
    label_codes: list[Any] = field(default_factory=list)
    sample: Any = None  # a DataFrame of at most SAMPLE_ROWS rows
    id_hashes: dict[str, list[Any]] = field(default_factory=dict)  # id-like column -> per-chunk hashes
    tokens: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)  # text column -> (word, label) rows
    _rng: Any = field(default_factory=lambda: np.random.default_rng(0))
    _label_ids: dict[str, int] = field(default_factory=dict)

    def add(self, frame: Any) -> None:
        import pandas as pd  # noqa: PLC0415

        if not self.columns:
            self.columns = [str(c) for c in frame.columns]
            if self.label_column is None:
                self.label_column = next((c for c in self.columns if c.lower() in LABEL_NAMES), None)
        frame = frame.rename(columns=str)
        features = [c for c in self.columns if c != self.label_column and c in frame.columns]
        labels = frame[self.label_column].astype(str) if self.label_column in frame.columns else None
        for column in self.columns:
            if column not in frame.columns:
                continue
            series = frame[column]
            filled = int(series.notna().sum())
            self.filled[column] += filled
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            self.numeric[column] += filled if numeric else int(pd.to_numeric(series, errors="coerce").notna().sum())
        for column in (c for c in self.columns if _id_like(c) and c in frame.columns):
            self.id_hashes.setdefault(column, []).append(
                pd.util.hash_pandas_object(frame[column].dropna(), index=False).to_numpy()
            )
        if labels is not None:
            self.labels.update(labels.tolist())
            self.hashes.append(pd.util.hash_pandas_object(frame[features], index=False).to_numpy())
            self.near_hashes.append(pd.util.hash_pandas_object(_rounded(frame[features]), index=False).to_numpy())
            codes, uniques = pd.factorize(labels)  # int32 codes: 4 bytes a row, not a string object
            mapping = np.array([self._label_ids.setdefault(str(u), len(self._label_ids)) for u in uniques], dtype=np.int32)
            self.label_codes.append(mapping[codes] if len(mapping) else codes.astype(np.int32))
            for column in features:
                if frame[column].dtype == object or str(frame[column].dtype) in ("str", "string"):
                    self._tokens(column, frame[column], labels)
                table = self.values.setdefault(column, Counter()) if self.rows == 0 else self.values.get(column)
                if table is None:  # too many distinct values, or a column that appeared late
                    continue
                pairs = pd.DataFrame({"v": frame[column].to_numpy(), "l": labels.to_numpy()}).value_counts()
                if pairs.index.get_level_values(0).nunique() > MAX_DISTINCT:
                    self.values[column] = None  # type: ignore[assignment]
                    continue
                table.update({(_text(v), str(label)): int(n) for (v, label), n in pairs.items()})
                if len({v for v, _ in table}) > MAX_DISTINCT:
                    self.values[column] = None  # type: ignore[assignment]
        self._sample(frame)
        self.rows += len(frame)

    def _tokens(self, column: str, series: Any, labels: Any) -> None:
        """Words of a text column, once per row, counted per label (a text trigger is a rare word)."""
        import pandas as pd  # noqa: PLC0415

        words = (
            series.astype(str)
            .str.lower()
            .str.findall(r"[a-z0-9_]{3,}")
            .map(lambda w: sorted(set(w)) if isinstance(w, list) else [])
        )
        pairs = pd.DataFrame({"v": words.to_numpy(), "l": labels.to_numpy()}).explode("v").dropna().value_counts()
        table = self.tokens.setdefault(column, Counter())
        table.update({(str(v), str(label)): int(n) for (v, label), n in pairs.items()})
        if len(table) > 4 * MAX_TOKENS:  # keep the most frequent pairs: a trigger is frequent enough to matter
            self.tokens[column] = Counter(dict(table.most_common(MAX_TOKENS)))

    def _sample(self, frame: Any) -> None:
        """Reservoir sampling: row t (counting from 1) replaces a sampled row with probability SAMPLE_ROWS / t."""
        import pandas as pd  # noqa: PLC0415

        held = 0 if self.sample is None else len(self.sample)
        if held < SAMPLE_ROWS:
            taken = frame.iloc[: SAMPLE_ROWS - held]
            self.sample = taken.copy() if self.sample is None else pd.concat([self.sample, taken], ignore_index=True)
        rest = frame.iloc[SAMPLE_ROWS - held :] if held < SAMPLE_ROWS else frame
        if len(rest) == 0:
            return
        first = self.rows + (len(frame) - len(rest)) + 1
        keep = np.flatnonzero(self._rng.random(len(rest)) < SAMPLE_ROWS / (np.arange(len(rest)) + first))
        if len(keep):
            targets = self._rng.integers(0, SAMPLE_ROWS, len(keep))
            self.sample.iloc[targets] = rest.iloc[keep].to_numpy()

    def conflicting_duplicates(self, *, near: bool = False) -> int:
        """Rows whose features repeat another row's (exactly, or to 2 significant digits) while the label differs."""
        chunks = self.near_hashes if near else self.hashes
        if not chunks:
            return 0
        hashes = np.concatenate(chunks)
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        labels = np.concatenate(self.label_codes)[order]
        del order
        repeats = np.flatnonzero(hashes[1:] == hashes[:-1])  # usually few: work on those rows only
        if len(repeats) == 0:
            return 0
        rows = np.union1d(repeats, repeats + 1)
        hashes, labels = hashes[rows], labels[rows]
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        sizes = np.diff(np.r_[starts, len(hashes)])
        mixed = np.minimum.reduceat(labels, starts) != np.maximum.reduceat(labels, starts)
        return int(sizes[(sizes > 1) & mixed].sum())

    def class_outliers(self, threshold: float, min_features: int) -> list[dict[str, Any]]:
        """Sampled rows far outside their own class in several features at once: robust z-scores (median,
        MAD) over `threshold` in at least `min_features` columns. One extreme feature is common in real
        data; many at once is an injected or corrupted row."""
        import pandas as pd  # noqa: PLC0415

        if self.sample is None or not self.label_column or self.label_column not in self.sample.columns:
            return []
        numeric = self.sample.drop(columns=[self.label_column]).apply(pd.to_numeric, errors="coerce")
        numeric = numeric.loc[:, numeric.notna().mean() > 0.9].astype(float)
        out = []
        for label, rows in numeric.groupby(self.sample[self.label_column].astype(str)):
            if len(rows) < 20:
                continue
            median = rows.median()
            mad = (rows - median).abs().median().replace(0, np.nan)
            z = ((rows - median).abs() / (1.4826 * mad)).fillna(0)
            extreme = (z > threshold).sum(axis=1)
            for index in extreme.index[extreme >= min_features]:
                out.append(
                    {
                        "label": label,
                        "sample_row": int(index),
                        "features": int(extreme[index]),
                        "z": round(float(z.loc[index].max()), 1),
                    }
                )
        return sorted(out, key=lambda o: (-o["features"], -o["z"]))

    def duplicated_ids(self) -> dict[str, int]:
        """id-like column -> how many of its values repeat."""
        out = {}
        for column, chunks in self.id_hashes.items():
            values = np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=np.uint64)
            repeated = int(np.count_nonzero(values[1:] == values[:-1]))
            if repeated:
                out[column] = repeated
        return out

    def trigger_candidates(self, min_support: float, min_purity: float, max_base_rate: float) -> list[dict[str, Any]]:
        """Feature values that are rare, frequent enough, and almost always come with one label."""
        out = []
        total = sum(self.labels.values())
        if not total:
            return out
        tables = [(c, t) for c, t in self.values.items()] + [(f"{c} (word)", t) for c, t in self.tokens.items()]
        for column, table in tables:
            if not table:
                continue
            by_value: dict[str, Counter[str]] = {}
            for (value, label), n in table.items():
                by_value.setdefault(value, Counter())[label] += n
            for value, counts in by_value.items():
                n = sum(counts.values())
                label, hits = counts.most_common(1)[0]
                base = self.labels[label] / total
                if n >= max(10, min_support * total) and n <= 0.3 * total and hits / n >= min_purity and base <= max_base_rate:
                    out.append(
                        {
                            "column": column,
                            "value": value,
                            "rows": n,
                            "label": label,
                            "purity": round(hits / n, 3),
                            "label_base_rate": round(base, 3),
                        }
                    )
        return sorted(out, key=lambda c: (-c["rows"], c["column"]))
