"""Read dependency manifests: requirements files, pyproject (PEP 621, Poetry), lock files
(poetry.lock, uv.lock, pylock.toml, Pipfile.lock), conda environment.yml and installed METADATA."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from mlsec import formats
from mlsec.dependencies import Dependency, Manifest, canonical_name

MAX_INCLUDE_DEPTH = 8
_COMMENT = re.compile(r"(^|\s)#.*$")


def parse(fmt: str, text: str, path: str, *, on_disk: bool) -> Manifest:
    """The manifest in `text` (format name from mlsec.formats); `-r` includes are read only when `on_disk`."""
    if fmt == "requirements":
        return _requirements(text, path, on_disk=on_disk, depth=0)
    reader = _READERS[fmt]
    deps, problems = reader(text, path)
    return Manifest(path, fmt, tuple(deps), problems=tuple(problems))


def _requirements(text: str, path: str, *, on_disk: bool, depth: int) -> Manifest:
    deps: list[Dependency] = []
    problems: list[str] = []
    extra: list[str] = []
    index: str | None = None
    for line_no, line in _logical_lines(text):
        line = _COMMENT.sub("", line).strip()  # pip: "#" starts a comment only at the start or after whitespace
        if not line:
            continue
        if not line.startswith("-"):  # a requirement, then its per-requirement options (--hash=...)
            requirement, *options = re.split(r"\s+(?=--)", line)
            hashes = tuple(o.split("=", 1)[1].strip() for o in options if o.startswith("--hash="))
            dep = _requirement(requirement, path, line_no, hashes)
            if dep is None:
                problems.append(f"{path}:{line_no}: not a requirement: {requirement[:80]!r}")
            else:
                deps.append(dep)
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            problems.append(f"{path}:{line_no}: {exc}")
            continue
        option, value = _option(tokens)
        if option in ("-r", "--requirement", "-c", "--constraint"):
            if not value:
                problems.append(f"{path}:{line_no}: {option} without a file")
            elif not on_disk:
                problems.append(f"{path}:{line_no}: include {value} not followed inside an archive")
            elif depth >= MAX_INCLUDE_DEPTH:
                problems.append(f"{path}:{line_no}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
            elif not _within(Path(path).parent, value):
                problems.append(f"{path}:{line_no}: include {value} leaves the manifest's directory; not read")
            else:
                target = Path(path).parent / value
                try:
                    sub = _requirements(target.read_text(encoding="utf-8"), str(target), on_disk=True, depth=depth + 1)
                except (OSError, UnicodeDecodeError) as exc:
                    problems.append(f"{path}:{line_no}: cannot read {value}: {exc}")
                    continue
                if option in ("-r", "--requirement"):
                    deps.extend(sub.dependencies)
                extra.extend(sub.extra_index_urls)
                index = index or sub.index_url
                problems.extend(sub.problems)
            continue
        if option in ("--extra-index-url",):
            extra.append(value or "")
            continue
        if option in ("-i", "--index-url"):
            index = value
            continue
        if option in ("-e", "--editable"):
            deps.append(_direct(value or "", path, line_no))
            continue
        # other options (--find-links, --pre, --no-binary...) do not name a dependency
    return Manifest(path, "requirements", tuple(deps), tuple(extra), index, tuple(problems))


def _within(base: Path, relative: str) -> bool:
    """`-r` includes stay inside the manifest's directory: a hostile requirements file must not make
    the scan read (and quote) /etc/shadow into a report that ends up in code scanning."""
    if Path(relative).is_absolute():
        return False
    root = base.resolve()
    return (root / relative).resolve().is_relative_to(root)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with backslash continuations joined."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1] + " "
            continue
        yield start, buffer + raw
        buffer = ""
    if buffer:
        yield start, buffer


def _option(tokens: list[str]) -> tuple[str | None, str | None]:
    first = tokens[0]
    if not first.startswith("-"):
        return None, None
    if "=" in first and first.startswith("--"):
        name, value = first.split("=", 1)
        return name, value
    if len(first) > 2 and first[1] != "-":  # -rfile.txt
        return first[:2], first[2:]
    return first, tokens[1] if len(tokens) > 1 else None


def _requirement(text: str, source: str, line: int | None, hashes: tuple[str, ...] = ()) -> Dependency | None:
    text = text.strip()
    if "://" in text.split(";")[0] and "@" not in text.split("://")[0]:
        return _direct(text, source, line)
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    version = specs[0].version if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version else None
    return Dependency(
        name=canonical_name(req.name),
        specifier=str(req.specifier),
        version=version,
        source=source,
        line=line,
        url=req.url,
        markers=str(req.marker) if req.marker else "",
        hashes=hashes,
        extras=tuple(sorted(req.extras)),
    )


def _direct(url: str, source: str, line: int | None) -> Dependency:
    """A VCS, URL or local-path requirement (`-e git+https://...#egg=name`, `https://.../x.whl`)."""
    name = ""
    if "#egg=" in url:
        name = url.split("#egg=", 1)[1].split("&", 1)[0]
    elif url.endswith((".whl", ".tar.gz", ".zip")):
        name = url.rsplit("/", 1)[-1].split("-", 1)[0]
    else:
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return Dependency(canonical_name(name or "unknown"), "", None, source, line, url=url)


def _pyproject(text: str, path: str) -> tuple[list[Dependency], list[str]]:
    doc = tomllib.loads(text)
    deps: list[Dependency] = []
    problems: list[str] = []
    project = doc.get("project", {})
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    groups += list(doc.get("dependency-groups", {}).values())
    for group in groups:
        for entry in group:
            if not isinstance(entry, str):
                continue  # PEP 735 {include-group = "..."}
            dep = _requirement(entry, path, None)
            if dep is None:
                problems.append(f"{path}: not a requirement: {entry!r}")
            else:
                deps.append(dep)
    poetry = doc.get("tool", {}).get("poetry", {})
    tables = [poetry.get("dependencies", {}), poetry.get("dev-dependencies", {})]
    tables += [g.get("dependencies", {}) for g in poetry.get("group", {}).values()]
    for table in tables:
        for name, spec in table.items():
            if name.lower() == "python":
                continue
            deps.append(_poetry_dependency(name, spec, path))
    return deps, problems


def _poetry_dependency(name: str, spec: Any, path: str) -> Dependency:
    if isinstance(spec, dict):
        url = spec.get("git") or spec.get("url") or spec.get("path")
        if url:
            return Dependency(canonical_name(name), "", None, path, url=str(url))
        spec = spec.get("version", "")
    spec = str(spec).strip()
    exact = spec.lstrip("=") if spec and spec[0].isdigit() or spec.startswith("==") else None
    if exact is not None and any(c in exact for c in "*,<>^~"):
        exact = None
    return Dependency(canonical_name(name), spec, exact, path)


def _toml_packages(key: str) -> Callable[[str, str], tuple[list[Dependency], list[str]]]:
    def read(text: str, path: str) -> tuple[list[Dependency], list[str]]:
        deps = []
        for package in tomllib.loads(text).get(key, []):
            name, version = package.get("name"), package.get("version")
            source = package.get("source", {})
            if not name or (isinstance(source, dict) and (source.get("editable") or source.get("virtual"))):
                continue  # the project itself
            deps.append(Dependency(canonical_name(name), f"=={version}" if version else "", version, path))
        return deps, []

    return read


def _pipfile_lock(text: str, path: str) -> tuple[list[Dependency], list[str]]:
    doc = json.loads(text)
    deps = []
    for section in ("default", "develop"):
        for name, spec in doc.get(section, {}).items():
            version = str(spec.get("version", "")) if isinstance(spec, dict) else ""
            url = spec.get("git") or spec.get("file") if isinstance(spec, dict) else None
            pinned = version[2:] if version.startswith("==") else None
            hashes = tuple(spec.get("hashes", [])) if isinstance(spec, dict) else ()
            deps.append(Dependency(canonical_name(name), version, pinned, path, url=url, hashes=hashes))
    return deps, []


def _conda_env(text: str, path: str) -> tuple[list[Dependency], list[str]]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:  # not a ValueError: said as one, like every other manifest's syntax error
        raise ValueError(f"not YAML: {exc}") from None
    deps: list[Dependency] = []
    problems: list[str] = []
    listed = doc.get("dependencies") if isinstance(doc, dict) else None
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict):
            pip = entry.get("pip")
            for line in pip if isinstance(pip, list) else []:
                dep = _requirement(str(line), path, None)
                if dep is None:
                    problems.append(f"{path}: not a pip requirement: {line!r}")
                else:
                    deps.append(dep)
    return deps, problems  # conda packages themselves are not PyPI packages: not checked here


def _metadata(text: str, path: str) -> tuple[list[Dependency], list[str]]:
    headers = HeaderParser().parsestr(text)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return [], [f"{path}: METADATA without Name and Version"]
    return [Dependency(canonical_name(name), f"=={version}", version, path)], []


_READERS: dict[str, Callable[[str, str], tuple[list[Dependency], list[str]]]] = {
    "pyproject": _pyproject,
    "poetry-lock": _toml_packages("package"),
    "uv-lock": _toml_packages("package"),
    "pylock": _toml_packages("packages"),
    "pipfile-lock": _pipfile_lock,
    "conda-env": _conda_env,
    "python-metadata": _metadata,
}
MANIFEST_FORMATS = frozenset({"requirements", *_READERS})
assert MANIFEST_FORMATS == formats.MANIFEST_FORMATS, "mlsec.formats names the same manifests"
