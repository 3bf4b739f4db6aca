"""TensorFlow SavedModel (saved_model.pb) and frozen GraphDef (.pb): the operations every graph and
function would run, read with a protobuf schema subset (no TensorFlow needed), judged by op lists.

Every SavedModel carries SaveV2/RestoreV2/MergeV2Checkpoints in its checkpoint functions; those
are how TensorFlow reads its own variables and are not flagged. What is flagged is in
rules/tensorflow.toml: ops that run Python, touch files, or read datasets from inside a model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import InputError
from mlsec.findings import Finding
from mlsec.rules import RuleSet
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec tensorflow"
_MAX_PB = 2 << 30  # protobuf's own limit


def op_verdicts(ruleset: RuleSet) -> dict[str, str]:
    """TensorFlow op name -> rule id, from every rule whose lists are tf_*_ops."""
    verdicts: dict[str, str] = {}
    for rule in ruleset.rules.values():
        for name in rule.lists:
            if name.startswith("tf_") and name.endswith("_ops"):
                verdicts.update(dict.fromkeys(ruleset.list(name)["names"], rule.id))
    return verdicts


def judge_ops(ops: Iterable[tuple[str, str]], blob: Blob, ctx: ScanContext, *, kind: str) -> Iterator[Finding]:
    """One finding per flagged op type: (op, where it appears) pairs in, with counts and places out."""
    verdicts = op_verdicts(ctx.ruleset)
    places: dict[str, list[str]] = defaultdict(list)
    for op, where in ops:
        if op in verdicts:
            places[op].append(where)
    for op, where in sorted(places.items()):
        shown = sorted(set(where))
        yield ctx.finding(
            verdicts[op],
            blob,
            f"{kind} runs op {op} ({len(where)}x, in {', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''})",
            facts={"op": op, "occurrences": len(where), "where": ", ".join(shown)},
            source=_SOURCE,
        )


class TensorFlowScanner:
    name: ClassVar[str] = "tensorflow"
    formats: ClassVar[frozenset[str]] = frozenset({"tf-savedmodel", "tf-graphdef"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        from google.protobuf.message import DecodeError  # noqa: PLC0415

        if blob.size > _MAX_PB:
            raise InputError(f"{blob.size:,} bytes is past protobuf's 2 GiB limit: not a readable graph", path=blob.path)
        with blob.open() as fh:
            data = fh.read()
        saved = blob.format == "tf-savedmodel"
        try:
            from mlsec.scanners._tf_proto import message_class  # noqa: PLC0415 - protobuf descriptors only for TF files

            parsed = message_class("SavedModel" if saved else "GraphDef").FromString(data)
        except DecodeError as exc:
            if not saved:  # any file may be called .pb: say it could not be read, do not call it bad
                raise InputError(f"not a TensorFlow GraphDef: {exc}", path=blob.path) from None
            yield ctx.finding("MLSEC-TF-004", blob, f"protobuf does not parse: {exc}", source=_SOURCE)
            return
        graphs = [(f"meta graph {i}", m.graph_def) for i, m in enumerate(parsed.meta_graphs)] if saved else [("graph", parsed)]
        if saved:
            infos = [m.meta_info_def for m in parsed.meta_graphs]
            ctx.describe(
                blob,
                meta_graphs=len(infos),
                tags="; ".join(",".join(i.tags) for i in infos),
                tensorflow_version=next((i.tensorflow_version for i in infos if i.tensorflow_version), ""),
            )
        ops = list(_ops(graphs))
        ctx.describe(blob, operations=len(ops), functions=sum(len(g.library.function) for _, g in graphs))
        yield from judge_ops(ops, blob, ctx, kind="SavedModel" if saved else "GraphDef")


def _ops(graphs: list[tuple[str, Any]]) -> Iterator[tuple[str, str]]:
    for where, graph in graphs:
        for node in graph.node:
            yield node.op, where
        for function in graph.library.function:
            for node in function.node_def:
                yield node.op, f"function {function.signature.name}"
