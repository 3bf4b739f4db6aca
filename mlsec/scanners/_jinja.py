"""Chat templates (Jinja) read as syntax trees, never rendered: the constructs template injection needs.

Server-side template injection walks from any object to Python's internals through underscore
attributes (`().__class__.__base__.__subclasses__()`), reaches module globals through helpers
(`lipsum.__globals__`, `cycler.__init__`), or loads other templates. Chat templates need none
of these: HF's own templates use `messages`, `namespace`, filters and string methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import Environment, TemplateSyntaxError, nodes

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

# Names whose only use in a template is as a door to Python globals (Jinja's and Flask's helpers).
_DOOR_NAMES = frozenset({"lipsum", "cycler", "joiner", "self", "config", "request", "url_for", "get_flashed_messages"})


@dataclass(frozen=True, slots=True)
class Construct:
    what: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


class TemplateSyntax(ValueError):
    """The template does not parse; `line` says where."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def injection_constructs(source: str) -> list[Construct]:
    """Every construct in `source` that template injection uses, in source order; parsing only."""
    try:
        tree = Environment().parse(source)
        found = list(_walk(tree))
    except TemplateSyntaxError as exc:
        raise TemplateSyntax(exc.message or str(exc), exc.lineno) from None
    except RecursionError:  # Jinja's parser and node walk recurse once per nesting level (fuzz/run.py gguf)
        raise TemplateSyntax("nested too deeply to parse", None) from None
    return sorted(set(found), key=lambda c: (c.line, c.what))


def _walk(tree: nodes.Template) -> Iterator[Construct]:
    n = nodes
    for node in tree.find_all(n.Node):
        line = getattr(node, "lineno", 0) or 0
        if isinstance(node, n.Getattr) and node.attr.startswith("_"):
            yield Construct(f"underscore attribute .{node.attr}", line)
        elif isinstance(node, n.Getitem) and isinstance(node.arg, n.Const) and _underscored(node.arg.value):
            yield Construct(f"underscore item [{node.arg.value!r}]", line)
        elif isinstance(node, n.Const) and isinstance(node.value, str) and "__" in node.value:
            yield Construct(f"string naming a dunder {node.value[:40]!r}", line)
        elif isinstance(node, n.Filter) and node.name == "attr":
            yield Construct("attr filter (attribute access by computed name)", line)
        elif isinstance(node, n.Name) and node.name in _DOOR_NAMES:
            yield Construct(f"global {node.name!r}, a path to Python internals", line)
        elif isinstance(node, (n.Include, n.Import, n.FromImport, n.Extends)):
            yield Construct(f"{type(node).__name__.lower()} of another template", line)


def _underscored(value: object) -> bool:
    return isinstance(value, str) and value.startswith("_")


def template_findings(
    key: str, value: object, blob: Blob, ctx: ScanContext, *, rules: tuple[str, str], source: str
) -> Iterator[Finding]:
    """The findings for one chat template: `rules` are (injection constructs, does not parse)."""
    if not isinstance(value, str):
        return
    injection, syntax = rules
    try:
        constructs = injection_constructs(value)
    except TemplateSyntax as exc:
        facts = {"key": key, "line": exc.line, "error": str(exc)}
        where = f" (line {exc.line})" if exc.line else ""
        yield ctx.finding(syntax, blob, f"{key} does not parse{where}: {exc}", facts=facts, source=source)
        return
    if constructs:
        yield ctx.finding(
            injection, blob, f"{key} uses {len(constructs)} template-injection construct(s): {'; '.join(map(str, constructs[:5]))}",
            facts={"key": key, "constructs": "; ".join(map(str, constructs)), "template_chars": len(value)}, source=source,
        )  # fmt: skip
