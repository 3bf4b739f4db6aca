"""Container images without a daemon: `docker save` archives, OCI image archives and OCI layout directories.

Layers are streamed from the top one down, never extracted: a file a higher layer replaced or
deleted (`.wh.` whiteouts, opaque directories) is not in the final file system and is not scanned,
unless `all_layers` asks for every layer's files. Every blob's sha256 is checked against its name,
and every layer's uncompressed sha256 against the config's `rootfs.diff_ids`. Files that matter
(models, archives, dependency manifests, dpkg's status) become Blobs whose member chain names the
layer; the image configuration itself is judged by rules/images.toml.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mlsec import formats
from mlsec.artifacts import Blob
from mlsec.inputs.events import Anomaly, printable
from mlsec.inputs.tar import TAR_ERRORS
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, Skipped

_HEAD = 4096
_DPKG_PYTHON = "usr/lib/python3/dist-packages/"  # where Debian's python3-* packages install


@dataclass(frozen=True, slots=True)
class ImageOptions:
    platform: str | None = None  # "linux/amd64": only that platform of a multi-arch index
    all_layers: bool = False  # scan files that later layers replaced or deleted, too


@dataclass
class _Layer:
    path: str  # inside the archive or layout
    digest: str | None  # sha256 of the stored blob (OCI); docker-save names layers by id
    diff_id: str | None  # sha256 of the uncompressed tar, from the config
    index: int


@dataclass
class _Image:
    label: str  # "nginx:1.2" or "linux/amd64" or the manifest digest
    config_path: str
    config_digest: str | None
    layers: list[_Layer] = field(default_factory=list)


class _Source:
    """Blobs of a tar archive or a layout directory, by name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dir = Path(path) if Path(path).is_dir() else None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if self.dir is None:
            self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by close()
            try:
                self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isreg()}
            except BaseException:
                self._tar.close()
                raise

    def names(self) -> set[str]:
        if self.dir is not None:
            return {str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file()}
        return set(self._members)

    def open(self, name: str) -> BinaryIO:
        name = _inside(name)
        if self.dir is not None:
            path = self.dir / name
            if path.is_symlink() or not path.is_file():
                raise FileNotFoundError(f"{name} is not a regular file of the layout")
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        assert self._tar is not None
        info = self._members.get(name)
        stream = self._tar.extractfile(info) if info else None
        if stream is None:
            raise FileNotFoundError(name)
        return stream

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def is_image(path: str) -> bool:
    """An OCI layout directory, or a tar archive with an OCI layout or docker's manifest.json at its top."""
    if os.path.isdir(path):
        return is_oci_layout(path)
    try:
        with tarfile.open(path, mode="r:") as tf:
            for count, info in enumerate(tf):
                if info.name.removeprefix("./") in ("manifest.json", "oci-layout"):
                    return True
                if count > 10_000:
                    return False
    except TAR_ERRORS:
        return False
    return False


OCI_LAYOUT_FILES = ("oci-layout", "index.json")  # the files that make a folder an OCI image layout


def is_oci_layout(folder: str) -> bool:
    """A folder holding an OCI image layout (OCI_LAYOUT_FILES)."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in OCI_LAYOUT_FILES)


def walk_image(
    path: str, sha256: str, limits: ScanLimits, options: ImageOptions, member: Callable[..., Iterator[Any]]
) -> Iterator[Any]:
    """Events for every image in `path`; `member(parent_blob, name, data)` turns a file into Blobs (and expands archives)."""
    try:
        source = _Source(path)
    except TAR_ERRORS as exc:
        yield ScanError(path, f"unreadable image archive: {exc}", None, "inputs.images", type(exc).__name__)
        return
    try:
        images, problems = _images(source, options)
        for rule_id, summary, facts in problems:
            yield Anomaly(rule_id, path, None, summary, facts, sha256)
        for image in images:
            yield from _image(source, image, sha256, limits, options, member)
    except (*TAR_ERRORS, KeyError, *_INFLATE_ERRORS) as exc:
        yield ScanError(path, f"image cannot be read: {type(exc).__name__}: {exc}", None, "inputs.images", type(exc).__name__)
    finally:
        source.close()


_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")


def _blob_name(digest: str) -> str:
    """The blob path of a digest; anything else (say `sha256:../../etc/passwd`) is refused."""
    if not _DIGEST.fullmatch(str(digest)):
        raise ValueError(f"malformed digest {str(digest)[:80]!r}")
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _inside(name: str) -> str:
    """A path named by manifest.json, refused when it would leave the image."""
    normalized = posixpath.normpath(str(name).removeprefix("./"))
    if normalized.startswith(("/", "..")) or "\\" in normalized:
        raise ValueError(f"path {str(name)[:80]!r} points outside the image")
    return normalized


def _images(source: _Source, options: ImageOptions) -> tuple[list[_Image], list[tuple[str, str, dict[str, Any]]]]:
    names = source.names()
    problems: list[tuple[str, str, dict[str, Any]]] = []
    images: list[_Image] = []
    if "index.json" in names:
        for label, manifest_digest in _leaf_manifests(source, json.loads(source.read("index.json")), options):
            raw = source.read(_blob_name(manifest_digest))
            problems += _digest_problem(manifest_digest, raw, f"manifest {label}")
            manifest = json.loads(raw)
            image = _Image(label, _blob_name(manifest["config"]["digest"]), manifest["config"]["digest"])
            image.layers = [
                _Layer(_blob_name(layer["digest"]), layer["digest"], None, i) for i, layer in enumerate(manifest["layers"])
            ]
            images.append(image)
    elif "manifest.json" in names:
        for entry in json.loads(source.read("manifest.json")):
            tags = entry.get("RepoTags") or []
            image = _Image(", ".join(tags) or entry["Config"], _inside(entry["Config"]), None)
            image.layers = [_Layer(_inside(name), _digest_from_name(name), None, i) for i, name in enumerate(entry["Layers"])]
            images.append(image)
    else:
        raise ValueError("neither index.json (OCI) nor manifest.json (docker save) at the top")
    return images, problems


def _digest_from_name(name: str) -> str | None:
    match = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", name)
    return f"sha256:{match.group(1)}" if match else None


def _leaf_manifests(source: _Source, index: dict[str, Any], options: ImageOptions, depth: int = 0) -> Iterator[tuple[str, str]]:
    for manifest in index.get("manifests", []):
        media = manifest.get("mediaType", "")
        platform = manifest.get("platform") or {}
        label = "/".join(filter(None, (platform.get("os"), platform.get("architecture"), platform.get("variant"))))
        if options.platform and label and not label.startswith(options.platform):
            continue
        if ("index" in media or "manifest.list" in media) and depth < 4:
            yield from _leaf_manifests(source, json.loads(source.read(_blob_name(manifest["digest"]))), options, depth + 1)
        elif label != "unknown/unknown":  # attestation manifests in buildx indexes
            tag = (manifest.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
            yield label or tag or manifest["digest"][:19], manifest["digest"]


def _digest_problem(digest: str | None, data: bytes, what: str) -> list[tuple[str, str, dict[str, Any]]]:
    if not digest or not digest.startswith("sha256:"):
        return []
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual == digest:
        return []
    return [
        (
            "MLSEC-IMAGE-001",
            f"{what} is named {digest[:19]}… but its bytes hash to {actual[:19]}…",
            {"expected": digest, "actual": actual},
        )
    ]


class _HashingReader(io.RawIOBase):
    """Reads through `raw`, hashing every byte; `drain()` reads what the consumer left."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.sha.update(data)
        return len(data)

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.sha.hexdigest()


try:  # ISA-L's inflate is about twice zlib's speed; the same API
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback where it has no wheel
    _zlib = zlib  # type: ignore[no-redef]
# What a corrupt layer raises while it streams (fuzz/run.py oci): inflate errors from isal or zlib.
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _zlib.error)


class _Gunzip(io.RawIOBase):
    """gzip members (concatenated ones too) decompressed in large chunks: several times GzipFile's speed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.inflate = raw, _zlib.decompressobj(31)
        self.pending, self.at = memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.at >= len(self.pending):
            chunk = self.inflate.unused_data or self.raw.read(1 << 20)
            if self.inflate.eof:
                if not chunk:
                    return 0
                self.inflate = _zlib.decompressobj(31)
            elif not chunk:
                raise EOFError("gzip layer ends before its end marker")
            self.pending, self.at = memoryview(self.inflate.decompress(chunk)), 0
        n = min(len(buffer), len(self.pending) - self.at)
        buffer[:n] = self.pending[self.at : self.at + n]
        self.at += n
        return n


class _Forward(io.RawIOBase):
    """A forward-only stream that tarfile can "seek": skipping a member reads it away in large chunks."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.pos = raw, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.pos += n or 0
        return n or 0

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.pos + offset
        if target < self.pos:
            raise OSError("cannot seek backwards in a layer stream")
        while self.pos < target:
            chunk = self.raw.read(min(1 << 20, target - self.pos))
            if not chunk:
                break
            self.pos += len(chunk)
        return self.pos


def _decompressor(stream: BinaryIO, head: bytes) -> BinaryIO:
    if head.startswith(b"\x1f\x8b"):
        return _Gunzip(stream)  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        from backports import zstd  # noqa: PLC0415 - py7zr brings it

        return zstd.ZstdFile(stream)  # type: ignore[return-value]
    return stream


def _image(
    source: _Source, image: _Image, sha256: str, limits: ScanLimits, options: ImageOptions, member: Callable[..., Iterator[Any]]
) -> Iterator[Any]:
    raw_config = source.read(image.config_path)
    for rule_id, summary, facts in _digest_problem(image.config_digest, raw_config, f"config of {image.label}"):
        yield Anomaly(rule_id, source.path, image.label, summary, facts, sha256)
    config = json.loads(raw_config)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    for layer in image.layers:
        layer.diff_id = diff_ids[layer.index] if layer.index < len(diff_ids) else None
    if len(diff_ids) != len(image.layers):
        yield Anomaly(
            "MLSEC-IMAGE-002",
            source.path,
            image.label,
            f"config lists {len(diff_ids)} layers, the manifest {len(image.layers)}",
            {},
            sha256,
        )
    yield Blob(path=source.path, member=(image.label, "config.json"), format="image-config", size=len(raw_config),
               sha256=hashlib.sha256(raw_config).hexdigest(), data=raw_config, parent_sha256=sha256, depth=1)  # fmt: skip
    state = _FileSystem()
    for layer in reversed(image.layers):
        yield from _layer(source, image, layer, state, sha256, limits, options, member)
    for model, where in sorted(state.models.items()):
        writable = next((d for d in sorted(state.writable_dirs) if model.startswith(d + "/")), None)
        if writable:
            yield Anomaly("MLSEC-IMAGE-008", source.path, f"{image.label} → {where}", f"model {model} sits in world-writable directory /{writable}",
                          {"model": model, "directory": writable}, sha256)  # fmt: skip


@dataclass
class _FileSystem:
    """What higher layers decided: paths they hold, paths they deleted, directories they made opaque."""

    present: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)
    writable_dirs: set[str] = field(default_factory=set)
    models: dict[str, str] = field(default_factory=dict)  # model path -> the layer label it came from

    def hidden(self, name: str) -> bool:
        if name in self.present or name in self.deleted:
            return True
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.deleted or prefix in self.opaque:
                return True
        return False


def _layer(
    source: _Source,
    image: _Image,
    layer: _Layer,
    fs: _FileSystem,
    sha256: str,
    limits: ScanLimits,
    options: ImageOptions,
    member: Callable[..., Iterator[Any]],
) -> Iterator[Any]:
    label = f"layer {layer.index + 1} {(layer.digest or layer.diff_id or layer.path)[:19]}"
    parent = Blob(
        path=source.path,
        member=(image.label, label),
        format="image-layer",
        size=0,
        sha256=sha256,
        data=b"",
        parent_sha256=sha256,
        depth=1,
    )
    new_deleted: set[str] = set()
    new_opaque: set[str] = set()
    with source.open(layer.path) as raw:
        stored = _HashingReader(raw)
        buffered = io.BufferedReader(stored, 1 << 20)
        decompressed = _decompressor(buffered, buffered.peek(4)[:4])  # type: ignore[arg-type]
        # an uncompressed layer is its own diff: hash it once
        plain = _HashingReader(decompressed) if decompressed is not buffered else None
        reader = io.BufferedReader(plain, 1 << 20) if plain is not None else buffered
        with tarfile.open(fileobj=_Forward(reader), mode="r:") as tf:  # type: ignore[arg-type]
            for info in tf:
                name = printable(posixpath.normpath(info.name.removeprefix("./")).lstrip("/"))
                base = posixpath.basename(name)
                if base.startswith(".wh."):
                    directory = posixpath.dirname(name)
                    if base == ".wh..wh..opq":
                        new_opaque.add(directory)
                    else:
                        new_deleted.add(posixpath.join(directory, base[4:]))
                    continue
                if info.isdir() and info.mode & 0o002:
                    fs.writable_dirs.add(name)
                if not info.isreg():
                    continue
                hidden = fs.hidden(name)
                if hidden and not options.all_layers:
                    continue
                fs.present.add(name)
                if name.startswith(_DPKG_PYTHON) and name.endswith((".dist-info/METADATA", ".egg-info/PKG-INFO")):
                    yield Skipped(source.path, "Python package installed by a Debian package (dpkg owns it)", f"{label} → {name}")
                    continue
                for event in _file(tf, info, name, parent, label, hidden, limits, member):
                    if isinstance(event, Blob) and event.format in formats.MODEL_FORMATS and len(event.member) == 3:
                        fs.models.setdefault(name, label)
                    yield event
        plain_digest = plain.drain() if plain is not None else None
        while reader.read(1 << 20):  # the tar's end padding, so the digests cover every byte
            pass
        stored_digest = stored.drain()
        plain_digest = plain_digest or stored_digest
    fs.deleted |= new_deleted
    fs.opaque |= new_opaque
    if layer.digest and stored_digest != layer.digest:
        yield Anomaly("MLSEC-IMAGE-001", source.path, f"{image.label} → {label}", f"layer blob is named {layer.digest[:19]}… but hashes to {stored_digest[:19]}…",
                      {"expected": layer.digest, "actual": stored_digest}, sha256)  # fmt: skip
    if layer.diff_id and plain_digest != layer.diff_id:
        yield Anomaly("MLSEC-IMAGE-002", source.path, f"{image.label} → {label}", f"uncompressed layer hashes to {plain_digest[:19]}…, the config's diff_id is {layer.diff_id[:19]}…",
                      {"expected": layer.diff_id, "actual": plain_digest}, sha256)  # fmt: skip


def _file(
    tf: tarfile.TarFile,
    info: tarfile.TarInfo,
    name: str,
    parent: Blob,
    label: str,
    hidden: bool,
    limits: ScanLimits,
    member: Callable[..., Iterator[Any]],
) -> Iterator[Any]:
    stream = tf.extractfile(info)
    if stream is None or info.size == 0:
        return
    head = stream.read(_HEAD)
    fmt = formats.sniff(head, name=name)
    # by content, not by name: a raw weights.bin is not read, a pickle called weights.bin is
    interesting = fmt not in ("unknown", "json", "xml") or name == "var/lib/dpkg/status"
    if not interesting:
        return
    if info.size > limits.max_member_in_memory:
        yield ScanError(
            parent.path,
            f"{name} ({info.size} bytes) exceeds the in-memory limit",
            f"{parent.member_name} → {name}",
            "inputs.images",
            "LimitExceeded",
        )
        return
    data = head + stream.read(info.size - len(head))
    layer_label = label + (" (not in the final file system)" if hidden else "")
    holder = Blob(
        path=parent.path,
        member=(parent.member[0], layer_label),
        format="image-layer",
        size=0,
        sha256=parent.sha256,
        data=b"",
        parent_sha256=parent.sha256,
        depth=1,
    )
    yield from member(holder, name, data)
