"""Walk files, directories and archives safely into Blobs. Never extracts to disk, never follows links
(but for a Hugging Face cache's snapshot links into its own blobs/ folder).

`walk()` yields, in a stable order, a Blob for every file and archive member (containers before
their members), an Anomaly for every container problem a rule judges, and a Skipped or ScanError
for every input that was not, or could not be, read.
"""

from __future__ import annotations

import hashlib
import mmap
import operator
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from mlsec import deadline, formats, provenance
from mlsec.artifacts import Blob
from mlsec.inputs import compressed, images, sevenzip, tar
from mlsec.inputs import zip as zip_reader
from mlsec.inputs.events import Anomaly, MemberData, printable
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, Skipped

Event = Blob | Anomaly | Skipped | ScanError
_CHUNK = 1 << 20
_READ_WHOLE = 1 << 20  # files up to this size are read into memory once; larger ones are streamed
_READERS: dict[str, Callable[[Blob, ScanLimits], Iterator[MemberData | Anomaly | ScanError]]] = {
    **{fmt: zip_reader.members for fmt in ("zip", "pytorch-zip", "numpy-npz", "keras-v3")},
    "tar": tar.members,
    "7z": sevenzip.members,
    **{fmt: compressed.members for fmt in formats.COMPRESSED},
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One independent piece of work of a scan: a regular file (and its members), or an OCI layout directory.

    Units share nothing, so any process can expand one (mlsec/executors.py); `walk()` is `plan()` with
    every unit expanded in order."""

    path: str
    kind: str = "file"  # "file" or "image" (an OCI layout directory)
    size: int = 0  # bytes, as the walk found them (0 for an image directory): executors balance work by it
    fingerprint: str | None = None  # the stat the walk took (see fingerprint()): the result cache's check

    def events(self, limits: ScanLimits, options: images.ImageOptions | None = None) -> Iterator[Event]:
        options = options or images.ImageOptions()
        if self.kind == "image":
            return _image(self.path, limits, options)
        return _file(self.path, limits, options)


def walk(paths: Sequence[str], limits: ScanLimits, image_options: images.ImageOptions | None = None) -> Iterator[Event]:
    """Every file under `paths` (in the order given, directories sorted) and every archive member.

    Container images (docker save and OCI archives, OCI layout directories) are read as images:
    their final file system, layer by layer (inputs/images.py).
    """
    for item in plan(paths):
        if isinstance(item, Unit):
            yield from item.events(limits, image_options)
        else:
            yield item


def plan(paths: Sequence[str]) -> Iterator[Unit | Skipped | ScanError]:
    """The units of work under `paths`, in walk order, without reading a byte of them; plus a Skipped or
    ScanError for every path that is not read at all (links, devices, missing files)."""
    for given in paths:
        path = Path(given)
        if path.is_symlink():
            yield Skipped(given, "symbolic link not followed; name its target instead")
        elif path.is_dir() and images.is_image(given):
            yield Unit(given, "image")
        elif path.is_dir():
            yield from _walk_dir(given, links_into=_hf_blobs_of(path))
        elif path.is_file():
            st = path.stat()
            yield Unit(given, size=st.st_size, fingerprint=fingerprint(st))
        elif path.exists():
            yield Skipped(given, "not a regular file (device, FIFO or socket)")
        else:
            yield ScanError(given, "no such file or directory", error_type="FileNotFoundError")


def walk_bytes(name: str, data: bytes, limits: ScanLimits) -> Iterator[Event]:
    """The events for bytes held in memory (fetched from a registry, or a fuzzer's input), named `name`.
    Container images need a file and are read as plain tar archives here."""
    if not data:
        yield Skipped(printable(name), "empty")
        return
    fmt = formats.sniff(data[:4096], last_byte=data[-1:], name=name)
    if fmt == "zip":
        fmt = _refine_zip(partial(BytesIO, data), name)
    blob = Blob(path=printable(name), member=(), format=fmt, size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data)
    yield blob
    yield from _expand(blob, limits, total=[0])


def _walk_dir(root: str, *, links_into: str | None = None, seen: set[str] | None = None) -> Iterator[Unit | Skipped]:
    """Files under `root`, depth first; in each directory, by name: its links to directories (skipped) and
    Hugging Face cache folders, then its files, then its subdirectories. An OCI layout directory below `root`
    is one unit (an image), told by the listing that reaches it (no system call of its own). Symbolic links are not followed, except (with `links_into`)
    file links whose target resolves inside that directory: a Hugging Face cache's snapshots link into its
    blobs/. Files whose real path is in `seen` were already scanned under another name. One stat per file,
    whose fingerprint the result cache reuses."""
    stack = [(root, os.path.abspath(root))]  # each folder with its absolute path, joined once per folder
    while stack:
        dirpath, absolute = stack.pop()
        try:
            with os.scandir(dirpath) as listing:
                entries = sorted(listing, key=_NAME)
        except OSError:
            continue  # as os.walk: a directory that cannot be listed is passed over
        if dirpath is not root and _holds_oci_layout(entries):  # one image, not a heap of blobs
            yield Unit(dirpath, "image")
            continue
        provenance.note_listing(dirpath, [e.name for e in entries], absolute)
        dirs, files = [], []
        for entry in entries:
            (dirs if _is_dir(entry) else files).append(entry)
        descend = []
        for entry in dirs:
            if entry.is_symlink():
                yield Skipped(entry.path, "symbolic link not followed")
            elif _HF_CACHE_REPO.match(entry.name) and os.path.isdir(os.path.join(entry.path, "snapshots")):
                yield from _hf_cache_repo(entry.path)
            else:
                descend.append((entry.path, os.path.join(absolute, entry.name)))
        for entry in files:
            yield from _file_unit(entry, links_into, seen)
        stack.extend(reversed(descend))


_NAME = operator.attrgetter("name")


def _holds_oci_layout(entries: list[os.DirEntry[str]]) -> bool:
    """A listing with an OCI image layout's files (images.OCI_LAYOUT_FILES), as images.is_oci_layout tells a folder."""
    found = 0
    for entry in entries:
        if entry.name in images.OCI_LAYOUT_FILES:
            try:
                found += entry.is_file()
            except OSError:
                return False
    return found == len(images.OCI_LAYOUT_FILES)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _file_unit(entry: os.DirEntry[str], links_into: str | None, seen: set[str] | None) -> Iterator[Unit | Skipped]:
    full = entry.path
    link = entry.is_symlink()
    real = os.path.realpath(full) if link or seen is not None else full
    if seen is not None and links_into is None and real in seen:
        return
    if link and not (links_into and real.startswith(links_into + os.sep) and os.path.isfile(real)):
        yield Skipped(printable(full), "symbolic link not followed")
        return
    try:
        st = entry.stat()  # the link's target, for a followed link
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        yield Skipped(printable(full), "not a regular file (device, FIFO or socket)")
        return
    if seen is not None:
        seen.add(real)
    yield Unit(full, size=st.st_size, fingerprint=fingerprint(st))


def fingerprint(st: os.stat_result) -> str:
    """What says a file is unchanged without reading it: device, inode, size, mtime and ctime in nanoseconds."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _regular_stat(path: str) -> os.stat_result | None:
    """The stat of a regular file (links followed), None for anything else or what cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


_HF_CACHE_REPO = re.compile(r"^(models|datasets|spaces)--.+")


def _hf_blobs_of(path: Path) -> str | None:
    """The blobs/ folder of the Hugging Face cache repository that `path` (a snapshot or a folder in one) is in."""
    parts = path.resolve().parts
    if "snapshots" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("snapshots")
    if at == 0 or not _HF_CACHE_REPO.match(parts[at - 1]):
        return None
    blobs = Path(*parts[:at], "blobs")
    return str(blobs) if blobs.is_dir() else None


def _hf_cache_repo(repo: str) -> Iterator[Unit | Skipped]:
    """A Hugging Face cache folder (`models--ORG--NAME`): each snapshot's files under their own names
    (their links into blobs/ followed, and only those), then whatever no snapshot names."""
    blobs = os.path.realpath(os.path.join(repo, "blobs"))
    seen: set[str] = set()
    yield from _walk_dir(os.path.join(repo, "snapshots"), links_into=blobs, seen=seen)
    for rest in sorted(os.listdir(repo)):
        full = os.path.join(repo, rest)
        if rest == "snapshots":
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            yield from _walk_dir(full, seen=seen)
        elif os.path.islink(full):
            yield Skipped(full, "symbolic link not followed")
        elif (st := _regular_stat(full)) is not None:
            yield Unit(full, size=st.st_size, fingerprint=fingerprint(st))


def _image(path: str, limits: ScanLimits, options: images.ImageOptions, blob: Blob | None = None) -> Iterator[Event]:
    if blob is None:  # a layout directory: its index.json stands for it
        index = (Path(path) / "index.json").read_bytes()
        blob = Blob(
            path=path, member=(), format="oci-image", size=len(index), sha256=hashlib.sha256(index).hexdigest(), data=index
        )
    yield blob
    total = [0]

    def member(holder: Blob, name: str, data: bytes) -> Iterator[Event]:
        yield from _member(holder, MemberData(name, data), limits, total)

    yield from images.walk_image(path, blob.sha256, limits, options, member)


def _file(path: str, limits: ScanLimits, options: images.ImageOptions) -> Iterator[Event]:
    shown = printable(path)  # what reports say; `path` is what is opened
    try:
        fd = os.open(path, _OPEN_FLAGS)  # not open(): its file objects cost 5 system calls a file more
        try:
            st = os.fstat(fd)
            size = st.st_size
            refused: Skipped | ScanError | None = None
            if not stat.S_ISREG(st.st_mode):  # replaced since the walk (O_NONBLOCK: a FIFO does not hang the open)
                refused = Skipped(shown, "not a regular file (device, FIFO or socket)")
            elif size > limits.max_file_bytes:
                refused = ScanError(
                    shown, f"file of {size} bytes exceeds the limit of {limits.max_file_bytes}", error_type="LimitExceeded"
                )
            elif size <= _READ_WHOLE:  # small: read once, hashed and scanned from memory
                data: bytes | None = _read_upto(fd, size + 1)  # its size, not 1 MiB: that allocation cost 22 us a file
                if len(data) > size:  # it grew since: as much as a small file may hold
                    data += _read_upto(fd, _READ_WHOLE - size)
                head, last, size = data[:4096], data[-1:], len(data)
            else:
                data, head = None, _read_upto(fd, 4096)
                os.lseek(fd, size - 1, os.SEEK_SET)
                last = os.read(fd, 1)
        finally:
            os.close(fd)
        if refused is not None:
            yield refused
            return
        digest = hashlib.sha256(data).hexdigest() if data is not None else hash_file(path)
    except OSError as exc:
        yield ScanError(shown, f"cannot read: {exc.strerror or exc}", error_type=type(exc).__name__)
        return
    if size == 0:
        if path.lower().endswith(formats.MODEL_SUFFIXES):
            yield ScanError(shown, "empty file where a model was expected (truncated download?)", error_type="EOFError")
        else:
            yield Skipped(shown, "empty file")
        return
    opener = partial(_open_binary, path)
    fmt = formats.sniff(head, last_byte=last, name=path)
    if fmt == "zip":
        fmt = _refine_zip(opener, path)
    if fmt == "tar" and images.is_image(path):
        yield from _image(
            path, limits, options, Blob(path=path, member=(), format="oci-image", size=size, sha256=digest, opener=opener)
        )
        return
    blob = Blob(path=shown, member=(), format=fmt, size=size, sha256=digest, data=data, opener=opener)
    yield blob
    yield from _expand(blob, limits, total=[0])


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _read_upto(fd: int, n: int) -> bytes:
    """`n` bytes from `fd`, fewer only at its end (a read may return less on some file systems)."""
    data = os.read(fd, n)
    while data and len(data) < n:
        more = os.read(fd, n - len(data))
        if not more:
            break
        data += more
    return data


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def hash_file(path: str) -> str:
    """The sha256 of a file, read in 1 MiB chunks; in a scan's worker process, mapped into memory a window
    at a time instead (no copy: 8% less time on the benchmark's 128 MiB files). A mapped file cut short while
    it is hashed ends the process (SIGBUS), which only a worker may risk: its executor reports that as the
    file's error."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        if deadline.in_worker():
            fh.seek(_hash_mapped(fh.fileno(), h))  # the rest (what grew since, or could not be mapped) is read
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _hash_mapped(fd: int, h: hashlib._Hash) -> int:
    """Feed `h` the file open as `fd` from read-only mappings of _MAPPED_WINDOW bytes, one at a time (the
    memory a worker holds stays that size, not the file's); returns the offset it got to: the end the file had,
    or where a mapping failed (no address space left)."""
    size = os.fstat(fd).st_size
    offset = 0
    while offset < size:
        length = min(_MAPPED_WINDOW, size - offset)
        try:
            window = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=offset)
        except (OSError, ValueError):
            break
        with window:
            h.update(window)
        offset += length
    return offset


_MAPPED_WINDOW = 16 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY; 4 to 64 MiB hash alike (16: +15 MiB resident)


def _refine_zip(opener: Callable[[], BinaryIO], name: str) -> str:
    try:
        with opener() as fh, zipfile.ZipFile(fh) as zf:
            return formats.refine_zip(zf.namelist(), name)
    except zip_reader.UNREADABLE:  # the zip reader reports why, with the member
        return "zip"


def _expand(blob: Blob, limits: ScanLimits, total: list[int]) -> Iterator[Event]:
    reader = _READERS.get(blob.format)
    if reader is None:
        return
    if blob.depth >= limits.max_depth:
        yield Anomaly(
            "MLSEC-ARCHIVE-006",
            blob.path,
            blob.member_name,
            f"archive nested {blob.depth + 1} levels deep; its members were not read",
            {"depth": blob.depth + 1, "limit": limits.max_depth},
            blob.sha256,
        )
        return
    for event in reader(blob, limits):
        if not isinstance(event, MemberData):
            yield event
            continue
        total[0] += len(event.data)
        if total[0] > limits.max_total_unpacked:
            yield Anomaly(
                "MLSEC-ARCHIVE-005",
                blob.path,
                blob.member_name,
                f"members expand past {limits.max_total_unpacked} bytes in all; the rest were not read",
                {"limit": limits.max_total_unpacked},
                blob.sha256,
            )
            return
        yield from _member(blob, event, limits, total)


def _member(parent: Blob, member: MemberData, limits: ScanLimits, total: list[int]) -> Iterator[Event]:
    data = member.data
    chain = (*parent.member, member.name)
    if not data:
        return
    fmt = formats.sniff(data[:4096], last_byte=data[-1:], name=member.name)
    if fmt == "zip":
        fmt = _refine_zip(partial(BytesIO, data), member.name)
    blob = Blob(
        path=parent.path,
        member=chain,
        format=fmt,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        parent_sha256=parent.sha256,
        depth=parent.depth + 1,
    )
    yield blob
    yield from _expand(blob, limits, total)
