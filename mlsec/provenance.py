"""Where a scanned file came from, read from the layout around it (never from the network).

- a Hugging Face cache snapshot: `.../models--ORG--NAME/snapshots/REV/...` names the repository and revision;
- a folder written by `hf download --local-dir`: `.cache/huggingface/download/FILE.metadata` holds the
  revision of each file (its first line);
- a git clone of a hub repository: `.git/HEAD` and the `origin` remote in `.git/config` (other clones
  say nothing: their HEAD does not vouch for a working tree's edits, and a hub clone's is only a claim).

The facts (`hf_repository`, `hf_revision`) go into the artifact and the ML-BOM, where they also become
the component's purl (`pkg:huggingface/ORG/NAME@REV`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from mlsec.findings import JSONScalar

_SNAPSHOT = re.compile(r"(?:^|/)(models|datasets|spaces)--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{7,64})(?:/|$)")
_HUB_URL = re.compile(
    r"^(?:https?://(?:[^/@]+@)?(?:huggingface\.co|hf\.co)/|git@hf\.co:)(?:(datasets|spaces)/)?([^/]+/[^/]+?)(?:\.git)?/?$"
)
_REV = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_CLIMB = 12


def facts_for(path: str) -> dict[str, JSONScalar]:
    """Provenance facts for the file at `path` (empty when its layout says nothing)."""
    posix = path.replace("\\", "/")
    snapshot = _SNAPSHOT.search(posix) if "snapshots/" in posix else None  # the cheap test first: most paths
    if snapshot:
        kind = "" if snapshot.group(1) == "models" else snapshot.group(1) + "/"
        return {"hf_repository": f"{kind}{snapshot.group(2)}/{snapshot.group(3)}", "hf_revision": snapshot.group(4)}
    parent = os.path.dirname(path) or "."
    known = _BY_FOLDER.get(parent)
    if known is not None:
        return dict(known)
    folder = _resolved(parent)
    local_dir = _nearest(folder, _HF_DOWNLOAD) is not None  # `hf download --local-dir`: each file has a revision
    revision = _local_dir_revision(path, folder) if local_dir else None
    if revision:
        return {"hf_revision": revision}
    facts = dict(_git_facts(_nearest(folder, ".git")))
    if not local_dir and len(_BY_FOLDER) < _MAX_RESOLVED:
        _BY_FOLDER[parent] = facts
    return dict(facts)


def begin(scan_id: str) -> None:
    """What this process learned about folders is for the scan `scan_id`: forgotten if it was learned in
    another (a checkout may have moved HEAD since). A scan's own process and the workers it forks begin it
    once; a worker that serves one scan after another (Ray's) forgets between them."""
    if scan_id != _SCAN[0]:
        forget()
        _SCAN[0] = scan_id


def forget() -> None:
    """Drop what was learned about folders (a scan starts afresh: a checkout may have moved HEAD since)."""
    _SCAN[0] = None
    _git_facts.cache_clear()
    _BY_FOLDER.clear()
    _RESOLVED.clear()
    _NEAREST.clear()
    _UNMARKED.clear()


def note_listing(folder: str, names: Iterable[str], absolute: str | None = None) -> None:
    """What a walk saw listing `folder` (whose absolute path the walk may know: `absolute`): when none of its
    names starts a marker (.git, .cache), looking for markers there needs no system call. (The walk lists
    every folder anyway; a re-scan then costs one stat per file, not three.)"""
    if absolute is not None and len(_RESOLVED) < _MAX_RESOLVED:
        _RESOLVED[folder] = absolute
    if _MARKER_ROOTS.isdisjoint(names):
        _UNMARKED.add(_resolved(folder))


def listed(paths: Iterable[str]) -> list[tuple[str, str]]:
    """The folders of `paths` whose listing this process saw hold no marker (note_listing), each with its
    absolute path: what a pool's worker is handed with its files (learn), so that finding their provenance
    costs it no system call either. (Forked before the walk reached them, it has not seen their listings.)"""
    out: dict[str, str] = {}
    for path in paths:
        folder = os.path.dirname(path) or "."
        absolute = _RESOLVED.get(folder)
        if absolute is not None and absolute in _UNMARKED:
            out[folder] = absolute
    return list(out.items())


def learn(scan_id: str, folders: Iterable[tuple[str, str]]) -> None:
    """Take what `listed` answered in the process walking the scan `scan_id`, as if this one had listed them."""
    begin(scan_id)
    for folder, absolute in folders:
        if len(_RESOLVED) < _MAX_RESOLVED:
            _RESOLVED[folder] = absolute
        _UNMARKED.add(absolute)


_SCAN: list[str | None] = [None]  # the scan this process's folder knowledge belongs to (begin)
_RESOLVED: dict[str, str] = {}
_BY_FOLDER: dict[str, dict[str, JSONScalar]] = {}  # a folder (as named) -> the facts of every file in it (no local-dir marker)
_MAX_RESOLVED = 1 << 16  # as many folders as the lru_cache this replaced kept


def _resolved(folder: str) -> str:
    """The folder's absolute path, lexically (no system call per component: a walk meets thousands)."""
    found = _RESOLVED.get(folder)
    if found is None:
        found = os.path.abspath(folder)  # asks for the working directory: once per folder, or never for walked ones
        if len(_RESOLVED) < _MAX_RESOLVED:
            _RESOLVED[folder] = found
    return found


_NEAREST: dict[tuple[str, str], tuple[str, int] | None] = {}
_MARKER_ROOTS = frozenset({".git", ".cache"})  # the first component of every marker _nearest looks for
_UNMARKED: set[str] = set()  # resolved folders whose listing holds no marker root (note_listing)


def _nearest(folder: str, marker: str) -> tuple[str, int] | None:
    """The nearest folder at or above `folder` (resolved, at most _MAX_CLIMB levels up) holding the directory
    `marker`, not through a link, and how many levels up it is. Every folder climbed through remembers its
    answer, so a tree of any shape costs one check per directory."""
    chain: list[str] = []
    current = folder
    while (current, marker) not in _NEAREST:
        if current not in _UNMARKED and _is_real_dir(os.path.join(current, marker)):
            _NEAREST[current, marker] = (current, 0)
            break
        parent = os.path.dirname(current)
        if parent == current:  # the root, without the marker
            _NEAREST[current, marker] = None
            break
        chain.append(current)
        current = parent
    found = _NEAREST[current, marker]
    for below, path in enumerate(reversed(chain), start=1):
        _NEAREST[path, marker] = (found[0], found[1] + below) if found else None
    answer = _NEAREST.get((folder, marker))
    return answer if answer and answer[1] < _MAX_CLIMB else None


_HF_DOWNLOAD = os.path.join(".cache", "huggingface", "download")


def _is_real_dir(path: str) -> bool:
    """A directory, not a link to one."""
    return os.path.isdir(path) and not os.path.islink(path)


def _local_dir_revision(file: str, folder: str) -> str | None:
    found = _nearest(folder, _HF_DOWNLOAD)
    if found is None:
        return None
    root = found[0]
    try:
        relative = Path(os.path.abspath(file)).relative_to(root)
    except ValueError:
        return None
    meta = Path(root, ".cache", "huggingface", "download", f"{relative}.metadata")
    if not meta.is_file() or meta.is_symlink():
        return None
    first = meta.read_text(errors="replace")[:128].split("\n", 1)[0].strip()
    return first if _REV.match(first) else None


@lru_cache(maxsize=256)
def _git_facts(found: tuple[str, int] | None) -> tuple[tuple[str, JSONScalar], ...]:
    """The enclosing git clone's origin and HEAD commit (cached per clone)."""
    return tuple(_read_git(Path(found[0], ".git")).items()) if found else ()


def _read_git(git: Path) -> dict[str, JSONScalar]:
    facts: dict[str, JSONScalar] = {}
    revision = _head(git)
    import configparser  # noqa: PLC0415 - only a folder inside a git clone needs it

    config = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        config.read_string((git / "config").read_text(errors="replace")[:65536])
        url = config.get('remote "origin"', "url", fallback="")
    except (OSError, configparser.Error):
        url = ""
    hub = _HUB_URL.match(url.strip())
    if hub:
        facts["hf_repository"] = (f"{hub.group(1)}/" if hub.group(1) else "") + hub.group(2)
        if revision:
            facts["hf_revision"] = revision
    return facts


def _head(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text(errors="replace")[:256].strip()
        if _REV.match(head):
            return head
        ref = head.removeprefix("ref: ").strip()
        if not ref.startswith("refs/") or ".." in ref:
            return None
        loose = git / ref
        if loose.is_file():
            value = loose.read_text(errors="replace")[:128].strip()
            return value if _REV.match(value) else None
        for line in (git / "packed-refs").read_text(errors="replace").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _REV.match(sha):
                return sha
    except OSError:
        pass
    return None
