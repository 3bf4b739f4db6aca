"""Datasets (CSV/TSV, JSON Lines, Parquet, Arrow): hidden code, cells that attack spreadsheets,
secrets and personal data, schema problems, poisoning signals, and drift against a reference.

Read in chunks (mlsec/datasets/reading.py); thresholds are data (rules/datasets.toml). Evidence
gives counts and (row, column) locations, never the values.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import InputError, LimitExceeded
from mlsec.findings import Finding
from mlsec.formats import DATASET_FORMATS
from mlsec.scanners.base import ScanContext

if TYPE_CHECKING:
    from mlsec.datasets import reading
    from mlsec.datasets.checks import CellFindings
    from mlsec.datasets.profile import Profile

_SOURCE = "mlsec datasets"
FORMATS = DATASET_FORMATS
_PII_KINDS = ("email", "phone", "us-ssn", "card")


class DatasetScanner:
    name: ClassVar[str] = "dataset"
    formats: ClassVar[frozenset[str]] = FORMATS

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        from mlsec.datasets import reading  # noqa: PLC0415 - numpy, pandas and pyarrow load only for datasets

        with blob.open() as fh:
            try:
                meta = reading.metadata(blob.format, fh)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid and friends
                raise InputError(f"not a readable {blob.format} file: {exc}", path=blob.path, member=blob.member_name) from None
        yield from _metadata_code(meta, blob, ctx)
        profile, cells = _profile(blob, ctx)
        yield from _cells(cells, blob, ctx)
        yield from _schema(profile, blob, ctx)
        yield from _poisoning(profile, blob, ctx)
        yield from _drift(profile, blob, ctx)
        ctx.describe(
            blob,
            rows=profile.rows,
            columns=len(profile.columns),
            schema=", ".join(
                f"{c}:{'number' if profile.numeric[c] >= 0.9 * max(profile.filled[c], 1) else 'text'}" for c in profile.columns
            )[:2000],
            label_column=profile.label_column or "",
            label_distribution=", ".join(f"{k}={v}" for k, v in sorted(profile.labels.items(), key=lambda kv: str(kv[0])))[:2000],
        )


def _profile(blob: Blob, ctx: ScanContext) -> tuple[Profile, CellFindings]:
    from mlsec.datasets import reading  # noqa: PLC0415
    from mlsec.datasets.checks import CellFindings, scan_cells  # noqa: PLC0415
    from mlsec.datasets.profile import Profile  # noqa: PLC0415

    patterns = ctx.ruleset.list("image_secret_patterns")
    prefilter = [p.lower() for p in patterns["prefilter"]]
    regexes = [re.compile(r) for r in patterns["regexes"]]
    profile, cells = Profile(ctx.label_column), CellFindings()
    with blob.open() as fh:
        try:
            for frame in reading.chunks(blob.format, fh, ctx.limits):
                scan_cells(frame, profile.rows, cells, prefilter, regexes)
                profile.add(frame)
        except LimitExceeded as exc:
            exc.path, exc.member = blob.path, blob.member_name
            raise
        except (ValueError, OSError, UnicodeError) as exc:
            raise InputError(
                f"{blob.format} stops being readable after {profile.rows} rows: {exc}", path=blob.path, member=blob.member_name
            ) from None
    return profile, cells


def _metadata_code(meta: reading.SchemaMetadata, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    for key, value in meta.entries:
        if key.endswith("ARROW:extension:name") and value in (b"arrow.py_extension_type", b"arrow.py_extension"):
            yield ctx.finding(
                "MLSEC-DATA-001",
                blob,
                f"{key} is {value.decode()}: readers unpickle its metadata (CVE-2023-47248)",
                facts={"key": key},
                source=_SOURCE,
            )
        elif _pickled(value):
            yield ctx.finding(
                "MLSEC-DATA-001",
                blob,
                f"schema metadata {key!r} holds a pickle ({len(value):,} bytes)",
                facts={"key": key},
                source=_SOURCE,
            )


def _pickled(value: bytes) -> bool:
    candidates = [value]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    return any(len(c) > 3 and c[0] == 0x80 and 2 <= c[1] <= 5 and c.rstrip().endswith(b".") for c in candidates)


def _samples(cells: CellFindings, kind: str) -> str:
    return ", ".join(f"row {row} column {column!r}" for row, column in cells.samples.get(kind, []))


def _cells(cells: CellFindings, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    for kind, rule_id, what in (
        ("formula", "MLSEC-DATA-002", "a spreadsheet would run as formulas"),
        ("secret", "MLSEC-DATA-003", "match secret patterns (values not shown)"),
    ):
        n = cells.counts[kind]
        if n:
            where = _samples(cells, kind)
            yield ctx.finding(rule_id, blob, f"{n} cell(s) {what}: {where}", facts={"cells": n, "samples": where}, source=_SOURCE)
    pii = {k: cells.counts[k] for k in _PII_KINDS if cells.counts[k]}
    if pii:
        where = "; ".join(f"{k}: {_samples(cells, k)}" for k in pii)
        yield ctx.finding(
            "MLSEC-DATA-004",
            blob,
            f"personal data patterns: {', '.join(f'{n} {k}' for k, n in pii.items())} (values not shown)",
            facts={**{f"{k}_cells": n for k, n in pii.items()}, "samples": where[:500]},
            source=_SOURCE,
        )


def _schema(profile: Profile, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    problems = []
    for column in profile.columns:
        filled, numeric = profile.filled[column], profile.numeric[column]
        if profile.rows and filled == 0:
            problems.append(f"{column!r} is empty in every row")
        elif filled and 0.05 * filled < numeric < 0.95 * filled:
            problems.append(f"{column!r} mixes numbers ({numeric}) and text ({filled - numeric})")
    for column, repeated in profile.duplicated_ids().items():
        problems.append(f"id column {column!r} repeats {repeated} value(s)")
    if problems:
        yield ctx.finding("MLSEC-DATA-005", blob, "; ".join(problems[:10]), facts={"problems": len(problems)}, source=_SOURCE)


def _poisoning(profile: Profile, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    if not profile.label_column or not profile.rows:
        return
    limits = ctx.ruleset.list("dataset_poisoning")
    exact, near = profile.conflicting_duplicates(), profile.conflicting_duplicates(near=True)
    floor = max(limits["min_conflicting_rows"], limits["min_conflicting_fraction"] * profile.rows)
    if max(exact, near) >= floor:
        how = f"{exact} exactly" + (f", {near} to 2 significant digits" if near > exact else "")
        yield ctx.finding(
            "MLSEC-DATA-006", blob, f"rows repeat another row's features with a different {profile.label_column!r}: {how}",
            facts={"rows": exact, "near_rows": near, "fraction": round(max(exact, near) / profile.rows, 4), "label_column": profile.label_column},
            source=_SOURCE,
        )  # fmt: skip
    outliers = profile.class_outliers(limits["outlier_z"], limits["outlier_min_features"])
    if outliers:
        worst = ", ".join(f"{o['features']} features (z up to {o['z']}) in class {o['label']!r}" for o in outliers[:3])
        yield ctx.finding(
            "MLSEC-DATA-010", blob, f"{len(outliers)} sampled row(s) lie far outside their own class: {worst}",
            facts={"rows": len(outliers), "sampled_rows": len(profile.sample), "worst_z": outliers[0]["z"]}, source=_SOURCE,
        )  # fmt: skip
    for candidate in profile.trigger_candidates(
        limits["trigger_min_support"], limits["trigger_min_purity"], limits["trigger_max_base_rate"]
    )[:5]:
        yield ctx.finding(
            "MLSEC-DATA-007", blob,
            f"{candidate['column']!r} = {candidate['value'][:20]!r} in {candidate['rows']} rows, {candidate['purity']:.0%} labelled {candidate['label']!r} (base rate {candidate['label_base_rate']:.0%})",
            facts={k: (str(v)[:40] if k == "value" else v) for k, v in candidate.items()}, source=_SOURCE,
        )  # fmt: skip


def _drift(profile: Profile, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    if ctx.reference_path is None or profile.sample is None:
        return
    reference = ctx.resource(f"dataset-reference:{ctx.reference_path}", lambda: _reference(Path(ctx.reference_path), ctx))
    from mlsec.datasets.drift import table_drift  # noqa: PLC0415

    drifts = table_drift(reference.sample, profile.sample)
    if not drifts:
        return
    limits = ctx.ruleset.list("dataset_drift")
    worst = drifts[0]
    rule_id = "MLSEC-DATA-009" if worst.psi > limits["psi_high"] else "MLSEC-DATA-008" if worst.psi > limits["psi_warn"] else None
    ctx.describe(blob, drift_score=round(worst.psi, 4), drift_reference=str(ctx.reference_path))
    if rule_id is None:
        return
    shifted = [d for d in drifts if d.psi > limits["psi_warn"]]
    facts: dict[str, Any] = {
        "drift_score": round(worst.psi, 4),
        "reference": str(ctx.reference_path),
        "columns_drifted": len(shifted),
    }
    for d in shifted[:10]:
        facts[f"psi:{d.column}"] = round(d.psi, 4)
        facts[f"js:{d.column}"] = round(d.js, 4)
        if d.ks is not None:
            facts[f"ks:{d.column}"] = round(d.ks, 4)
    top = ", ".join(f"{d.column} PSI {d.psi:.2f}" for d in shifted[:5])
    yield ctx.finding(
        rule_id,
        blob,
        f"{len(shifted)} column(s) drifted from {Path(ctx.reference_path).name}: {top}",
        facts=facts,
        source=_SOURCE,
    )


def _reference(path: Path, ctx: ScanContext) -> Profile:
    from mlsec import formats  # noqa: PLC0415

    with open(path, "rb") as fh:
        fmt = formats.sniff(fh.read(4096), name=str(path))
    if fmt not in FORMATS:
        raise InputError(f"the reference is {fmt!r}, not a dataset mlsec reads", path=str(path))
    blob = Blob(path=str(path), member=(), format=fmt, size=path.stat().st_size, sha256="", opener=lambda: open(path, "rb"))  # noqa: SIM115
    return _profile(blob, ctx)[0]
