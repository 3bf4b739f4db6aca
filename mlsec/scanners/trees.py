"""Gradient-boosted trees saved as data: XGBoost JSON and LightGBM text models.

There is no code in these formats; the risk is in the native loaders, which index arrays with
the child and feature numbers the file gives them. Every tree is walked from its root: children
must exist, be reached once (no cycles, no shared nodes) and split on features the model has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import LimitExceeded
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec trees"


def tree_problem(left: Sequence[int], right: Sequence[int], features: Sequence[int], n_features: int, leaf: Any) -> str:
    """What is wrong with one tree given as child arrays, or ''. `leaf(child)` says a child is a leaf."""
    n = len(left)
    if len(right) != n or len(features) != n:
        return f"child and feature arrays differ in length ({n}, {len(right)}, {len(features)})"
    seen: set[int] = set()
    stack = [0] if n else []
    while stack:
        node = stack.pop()
        if node in seen:
            return f"node {node} is reached twice (a cycle or a shared child)"
        seen.add(node)
        if not 0 <= features[node] < max(n_features, 1):
            return f"node {node} splits on feature {features[node]} of {n_features}"
        for child in (left[node], right[node]):
            if leaf(child):
                continue
            if not 0 <= child < n:
                return f"node {node} has child {child} outside 0..{n - 1}"
            stack.append(child)
    return ""


class TreeModelScanner:
    name: ClassVar[str] = "trees"
    formats: ClassVar[frozenset[str]] = frozenset({"xgboost-json", "lightgbm"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        if blob.size > ctx.limits.max_member_in_memory:
            raise LimitExceeded(f"{blob.size:,}-byte tree model is over the in-memory limit", path=blob.path)
        with blob.open() as fh:
            text = fh.read().decode("utf-8", "replace")
        problems = _xgboost(text, blob, ctx) if blob.format == "xgboost-json" else _lightgbm(text, blob, ctx)
        for tree, problem in problems:
            yield ctx.finding(
                "MLSEC-GBDT-001", blob, f"tree {tree}: {problem}", facts={"tree": tree, "problem": problem}, source=_SOURCE
            )


def _xgboost(text: str, blob: Blob, ctx: ScanContext) -> list[tuple[int, str]]:
    try:
        learner = json.loads(text)["learner"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        trees = learner["gradient_booster"]["model"]["trees"]
    except (ValueError, KeyError, TypeError) as exc:
        return [(-1, f"not a readable XGBoost model: {type(exc).__name__}: {exc}")]
    ctx.describe(blob, trees=len(trees), num_feature=n_features, objective=str(learner.get("objective", {}).get("name", "")))
    problems = []
    for i, tree in enumerate(trees):
        left, right = tree.get("left_children", []), tree.get("right_children", [])
        problem = tree_problem(left, right, tree.get("split_indices", []), n_features, leaf=lambda c: c == -1)
        if not problem and str(len(left)) != str(tree.get("tree_param", {}).get("num_nodes", len(left))):
            problem = f"tree_param.num_nodes {tree['tree_param']['num_nodes']} but {len(left)} nodes"
        if problem:
            problems.append((i, problem))
    return problems


def _lightgbm(text: str, blob: Blob, ctx: ScanContext) -> list[tuple[int, str]]:
    header, _, body = text.partition("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    try:
        n_features = int(fields.get("max_feature_idx", "-1")) + 1
    except ValueError:
        return [(-1, f"max_feature_idx {fields.get('max_feature_idx')!r} is not a number")]
    blocks = ("Tree=" + body).split("\nTree=") if body else []
    ctx.describe(blob, trees=len(blocks), num_feature=n_features, objective=fields.get("objective", "").split(" ")[0])
    problems = []
    for i, block in enumerate(blocks):
        tree = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        try:
            leaves = int(tree.get("num_leaves", "1"))
            left, right, features = (_ints(tree.get(k, "")) for k in ("left_child", "right_child", "split_feature"))
        except ValueError as exc:
            problems.append((i, f"unreadable tree: {exc}"))
            continue
        if leaves > 1 and len(left) != leaves - 1:
            problems.append((i, f"num_leaves {leaves} but {len(left)} internal nodes"))
            continue
        # children < 0 are leaves, numbered ~child; they must exist too
        bad_leaf = next((c for c in (*left, *right) if c < 0 and ~c >= leaves), None)
        problem = (
            f"leaf {~bad_leaf} of {leaves}"
            if bad_leaf is not None
            else tree_problem(left, right, features, n_features, leaf=lambda c: c < 0)
        )
        if problem:
            problems.append((i, problem))
    return problems


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split()]
