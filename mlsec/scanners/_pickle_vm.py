"""A symbolic pickle machine: follows every opcode the way the unpickler would, never calls anything.

It records each global the stream imports (GLOBAL, STACK_GLOBAL, INST, extension codes) with the
opcode and offset, follows memoized and computed names, reads joblib's inline array data and
nested object-array pickles the way joblib's unpickler does, and keeps going over concatenated
pickles (legacy torch.save files hold five). A truncated or malformed stream is analysed up to
the failing opcode, which is what a loader would have executed.
"""

from __future__ import annotations

import pickletools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

from mlsec.errors import LimitExceeded
from mlsec.limits import ScanLimits

_BIG = 1 << 20  # literals larger than this are skipped, not kept
_KEEP_ITEMS = 4096  # container items tracked per container
_PROTO = 0x80


class Malformed(Exception):
    """The stream stops being a valid pickle at `offset`."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Mark:
    __slots__ = ()


MARK = _Mark()


@dataclass(slots=True)
class Opaque:
    """A value the analysis does not track (large literal, persistent id, buffer)."""

    what: str = "value"


@dataclass(slots=True)
class GlobalRef:
    module: str
    name: str


@dataclass(slots=True)
class Instance:
    """What a call (REDUCE, NEWOBJ, INST, OBJ) would have produced."""

    func: Any
    args: Any
    state: Any = None


@dataclass(frozen=True, slots=True)
class ImportEvent:
    module: str
    name: str
    opcode: str
    offset: int
    pickle_index: int


@dataclass(slots=True)
class PickleAnalysis:
    imports: list[ImportEvent] = field(default_factory=list)
    computed_globals: list[tuple[int, str]] = field(default_factory=list)
    extensions: list[tuple[int, int]] = field(default_factory=list)
    calls: int = 0
    opcodes: int = 0
    protocol: int = 0
    pickles: int = 0
    nested_pickles: int = 0
    persistent_ids: int = 0
    joblib_arrays: int = 0
    trailing_bytes: int = 0
    error: str | None = None
    error_offset: int | None = None


class _Stream:
    """Position-tracking reads that raise Malformed at EOF; skips large arguments."""

    def __init__(self, raw: BinaryIO, base: int, max_line: int) -> None:
        self.raw = raw
        self.pos = base
        self.max_line = max_line
        self.seekable = raw.seekable()

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        if len(data) != n:
            raise Malformed(f"truncated: wanted {n} bytes, got {len(data)}", self.pos)
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if self.seekable:
            here = self.raw.tell()
            end = self.raw.seek(0, 2)
            if end - here < n:
                raise Malformed(f"truncated: argument of {n} bytes runs past the end", self.pos)
            self.raw.seek(here + n)
            self.pos += n
            return
        left = n
        while left:
            chunk = self.raw.read(min(left, _BIG))
            if not chunk:
                raise Malformed(f"truncated: argument of {n} bytes runs past the end", self.pos)
            left -= len(chunk)
            self.pos += len(chunk)

    def readline(self) -> bytes:
        line = self.raw.readline(self.max_line + 1)
        if len(line) > self.max_line:
            raise Malformed(f"text argument longer than {self.max_line} bytes", self.pos)
        if not line.endswith(b"\n"):
            raise Malformed("truncated: text argument has no newline", self.pos)
        self.pos += len(line)
        return line

    def peek(self, n: int) -> bytes:
        if self.seekable:
            here = self.raw.tell()
            data = self.raw.read(n)
            self.raw.seek(here)
            return data
        peek = getattr(self.raw, "peek", None)
        return peek(n)[:n] if peek else b""


_COUNTED = {  # arg name -> (length struct, kind)
    "string1": (struct.Struct("<B"), "str"),
    "string4": (struct.Struct("<i"), "str"),
    "bytes1": (struct.Struct("<B"), "bytes"),
    "bytes4": (struct.Struct("<I"), "bytes"),
    "bytes8": (struct.Struct("<Q"), "bytes"),
    "bytearray8": (struct.Struct("<Q"), "bytes"),
    "unicodestring1": (struct.Struct("<B"), "unicode"),
    "unicodestring4": (struct.Struct("<I"), "unicode"),
    "unicodestring8": (struct.Struct("<Q"), "unicode"),
    "long4": (struct.Struct("<i"), "long"),
}
_FIXED = {name: struct.Struct(fmt) for name, fmt in
          {"uint1": "<B", "uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q", "float8": ">d"}.items()}  # fmt: skip
_NL_READERS = {
    "stringnl": pickletools.read_stringnl,
    "stringnl_noescape": pickletools.read_stringnl_noescape,
    "stringnl_noescape_pair": pickletools.read_stringnl_noescape_pair,
    "decimalnl_short": pickletools.read_decimalnl_short,
    "decimalnl_long": pickletools.read_decimalnl_long,
    "floatnl": pickletools.read_floatnl,
    "unicodestringnl": pickletools.read_unicodestringnl,
}


def _counted_reader(argname: str, length: struct.Struct, kind: str) -> Callable[[_Stream], Any]:
    """What reads a length-prefixed argument (`argname`): its length, then that many bytes, decoded as `kind`."""
    size, unpack = length.size, length.unpack

    def read_counted(stream: _Stream) -> Any:
        (n,) = unpack(stream.read(size))
        if n < 0:
            raise Malformed(f"negative length {n}", stream.pos)
        if n > _BIG:
            stream.skip(n)
            return Opaque(f"{kind} of {n} bytes")
        data = stream.read(n)
        if kind == "unicode":  # as the unpickler decodes it; bytes it cannot decode stop a real load here
            try:
                return data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise Malformed(f"{argname} is not UTF-8 ({exc.reason} at byte {exc.start})", stream.pos) from None
        if kind == "str":
            return data.decode("latin-1")
        if kind == "long":
            return int.from_bytes(data, "little", signed=True) if n <= 64 else Opaque("long")
        return data

    return read_counted


def _read_arg(stream: _Stream, argname: str) -> Any:
    """LONG1's argument and the newline-terminated ones of protocol 0."""
    if argname == "long1":
        n = stream.read(1)[0]
        return int.from_bytes(stream.read(n), "little", signed=True)
    reader = _NL_READERS[argname]
    try:
        return reader(stream)  # type: ignore[arg-type]
    except ValueError as exc:
        raise Malformed(str(exc), stream.pos) from None


_LITERAL_OPS = frozenset(
    [
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
    ]
)
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
# The groups most pickles spend their opcodes in, tested first as small integers; other opcodes go by name.
_PUSH, _PUT, _MEMOIZE, _GET, _CONSTANT, _OTHER = range(6)
_GROUPS = {
    **dict.fromkeys(_LITERAL_OPS, _PUSH),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), _PUT),
    "MEMOIZE": _MEMOIZE,
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _GET),
    **dict.fromkeys(_CONSTANTS, _CONSTANT),
}


_Op = tuple[str, int, int, Callable[[bytes], tuple[Any, ...]] | None, Callable[[_Stream], Any] | None]


def _op(opcode: pickletools.OpcodeInfo) -> _Op:
    """An opcode as the machine reads it: name, group, then its argument's size and unpacker when that is fixed
    (read in the machine's loop, without a call), else what reads it (None: no argument)."""
    group = _GROUPS.get(opcode.name, _OTHER)
    argname = opcode.arg.name if opcode.arg else None
    if argname is None:
        return opcode.name, group, 0, None, None
    if argname in _FIXED:
        return opcode.name, group, _FIXED[argname].size, _FIXED[argname].unpack, None
    if argname in _COUNTED:
        return opcode.name, group, 0, None, _counted_reader(argname, *_COUNTED[argname])
    return opcode.name, group, 0, None, partial(_read_arg, argname=argname)


# every opcode by its byte (one list index per opcode read)
_OPCODES: list[_Op | None] = [None] * 256
for _code in pickletools.opcodes:
    _OPCODES[ord(_code.code)] = _op(_code)
_DTYPE_RE = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)$")


class PickleMachine:
    """Runs one stream of (possibly concatenated) pickles symbolically."""

    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.result = PickleAnalysis()

    def run(self, raw: BinaryIO, base_offset: int = 0) -> PickleAnalysis:
        stream = _Stream(raw, base_offset, self.limits.max_pickle_line)
        try:
            self._one(stream, depth=0)
            while True:
                nxt = stream.peek(2)
                if not nxt:
                    break
                if not (len(nxt) == 2 and nxt[0] == _PROTO and 1 <= nxt[1] <= 5):
                    self.result.trailing_bytes = _remaining(stream)
                    break
                try:
                    self._one(stream, depth=0)
                except Malformed:
                    # Bytes after a complete pickle that merely start like one (raw tensor data
                    # in legacy torch files): what was seen is kept, the rest is trailing data.
                    break
        except Malformed as exc:
            self.result.error = str(exc)
            self.result.error_offset = exc.offset
        return self.result

    def _one(self, stream: _Stream, depth: int) -> None:
        res = self.result
        if depth:
            res.nested_pickles += 1
            if res.nested_pickles > self.limits.max_nested_pickles:
                raise LimitExceeded("nested pickles", self.limits.max_nested_pickles, res.nested_pickles)
        res.pickles += 1
        index = res.pickles
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        max_opcodes, max_memo = self.limits.max_pickle_opcodes, self.limits.max_pickle_memo

        def pop() -> Any:
            if not stack:
                raise Malformed("stack underflow", offset)
            return stack.pop()

        def pop_mark() -> list[Any]:
            nonlocal stack
            if not metastack:
                raise Malformed("MARK not found", offset)
            items = stack
            stack = metastack.pop()
            return items

        def record(module: Any, name: Any, opname: str) -> GlobalRef:
            res.imports.append(ImportEvent(str(module), str(name), opname, offset, index))
            return GlobalRef(str(module), str(name))

        read = stream.raw.read  # the opcode and a fixed-size argument are read here, not through a call to stream
        while True:
            offset = stream.pos
            code = read(1)
            if not code:
                raise Malformed("truncated: wanted 1 bytes, got 0", offset)
            op = _OPCODES[code[0]]
            if op is None:
                raise Malformed(f"invalid opcode {code!r}", offset)
            stream.pos = offset + 1
            res.opcodes += 1
            if res.opcodes > max_opcodes:
                raise LimitExceeded("pickle opcodes", max_opcodes, res.opcodes)
            name, group, size, unpack, reader = op
            if size:
                data = read(size)
                if len(data) != size:
                    raise Malformed(f"truncated: wanted {size} bytes, got {len(data)}", offset + 1)
                stream.pos = offset + 1 + size
                arg = unpack(data)[0]  # type: ignore[misc]
            else:
                arg = reader(stream) if reader is not None else None
            if group == _PUSH:
                stack.append(arg)
            elif group in (_PUT, _MEMOIZE):
                if not stack:
                    raise Malformed("stack underflow", offset)
                key = len(memo) if group == _MEMOIZE else int(arg)
                memo[key] = stack[-1]
                if len(memo) > max_memo:
                    raise LimitExceeded("pickle memo entries", max_memo, len(memo))
            elif group == _GET:
                if arg not in memo:
                    raise Malformed(f"memo key {arg} not found", offset)
                stack.append(memo[arg])
            elif group == _CONSTANT:
                stack.append(_CONSTANTS[name])
            elif name == "PROTO":
                res.protocol = max(res.protocol, int(arg))
            elif name == "FRAME":
                pass
            elif name == "STOP":
                pop()
                return
            elif name == "MARK":
                metastack.append(stack)
                stack = []
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                if not stack:
                    raise Malformed("stack underflow", offset)
                stack.append(stack[-1])
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_SET": set()}[name])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise Malformed("stack underflow", offset)
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name in ("TUPLE", "LIST", "FROZENSET"):
                items = pop_mark()
                stack.append(tuple(items) if name == "TUPLE" else items[:_KEEP_ITEMS])
            elif name == "DICT":
                items = pop_mark()
                stack.append(_to_dict(items))
            elif name == "APPEND":
                value = pop()
                _append(stack, [value], offset)
            elif name in ("APPENDS", "ADDITEMS"):
                items = pop_mark()
                _append(stack, items, offset)
            elif name == "SETITEM":
                value, key = pop(), pop()
                _setitems(stack, [key, value], offset)
            elif name == "SETITEMS":
                items = pop_mark()
                _setitems(stack, items, offset)
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(record(module, attr, name))
            elif name == "STACK_GLOBAL":
                attr, module = pop(), pop()
                if isinstance(module, str) and isinstance(attr, str):
                    stack.append(record(module, attr, name))
                else:
                    res.computed_globals.append((offset, f"{_describe(module)} . {_describe(attr)}"))
                    stack.append(Opaque("computed global"))
            elif name in ("EXT1", "EXT2", "EXT4"):
                res.extensions.append((offset, int(arg)))
                stack.append(Opaque(f"extension {arg}"))
            elif name == "INST":
                module, _, attr = str(arg).partition(" ")
                ref = record(module, attr, name)
                res.calls += 1
                args = tuple(pop_mark())
                stack.append(Instance(ref, args))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise Malformed("OBJ without a class", offset)
                res.calls += 1
                stack.append(Instance(items[0], tuple(items[1:])))
            elif name in ("REDUCE", "NEWOBJ"):
                args, func = pop(), pop()
                res.calls += 1
                stack.append(Instance(func, args))
            elif name == "NEWOBJ_EX":
                kwargs, args, cls = pop(), pop(), pop()
                res.calls += 1
                stack.append(Instance(cls, (args, kwargs)))
            elif name == "BUILD":
                state = pop()
                if not stack:
                    raise Malformed("stack underflow", offset)
                target = stack[-1]
                if isinstance(target, Instance):
                    target.state = state
                    if _is_joblib_array(target):
                        self._joblib_array(stream, target, depth, offset)
            elif name == "PERSID":
                res.persistent_ids += 1
                stack.append(Opaque("persistent id"))
            elif name == "BINPERSID":
                pop()
                res.persistent_ids += 1
                stack.append(Opaque("persistent id"))
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                if name == "NEXT_BUFFER":
                    stack.append(Opaque("out-of-band buffer"))
            else:  # pragma: no cover - every opcode of pickletools is handled above
                raise Malformed(f"unhandled opcode {name}", offset)

    def _joblib_array(self, stream: _Stream, wrapper: Instance, depth: int, offset: int) -> None:
        """joblib writes array bytes (or a nested pickle for object arrays) right after BUILD."""
        self.result.joblib_arrays += 1
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        kind, itemsize = _dtype_of(state.get("dtype"))
        if kind == "O":
            self._one(stream, depth + 1)
            return
        shape = state.get("shape")
        if itemsize is None or not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
            raise Malformed("joblib array wrapper with an unreadable dtype or shape", offset)
        count = 1
        for dim in shape:
            count *= dim
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = stream.read(1)[0]
            stream.skip(padding)
        stream.skip(count * itemsize)


def _is_joblib_array(obj: Instance) -> bool:
    func = obj.func
    return isinstance(func, GlobalRef) and func.name == "NumpyArrayWrapper" and func.module.endswith("numpy_pickle")


def _dtype_of(value: Any) -> tuple[str | None, int | None]:
    """Kind letter and item size of a pickled numpy.dtype, read from its arguments and state."""
    if not isinstance(value, Instance) or not isinstance(value.args, tuple) or not value.args:
        return None, None
    match = _DTYPE_RE.match(str(value.args[0]))
    if not match:
        return None, None
    kind, digits = match.group(1), match.group(2)
    if kind == "O":
        return "O", None
    state = value.state if isinstance(value.state, tuple) else ()
    if len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return kind, state[5]
    if not digits:
        return kind, {"b": 1, "?": 1}.get(kind)
    size = int(digits)
    return kind, size * 4 if kind == "U" else size


def _hashable(value: Any) -> bool:
    """Whether `value` can be a dict key or set element here (a tuple holding a list cannot: fuzz/run.py)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _to_dict(items: list[Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i]
        if isinstance(key, (str, int, float, bytes, bool, type(None))) and len(out) < _KEEP_ITEMS:
            out[key] = items[i + 1]
    return out


def _append(stack: list[Any], items: list[Any], offset: int) -> None:
    if not stack:
        raise Malformed("stack underflow", offset)
    target = stack[-1]
    if isinstance(target, list) and len(target) < _KEEP_ITEMS:
        target.extend(items[: _KEEP_ITEMS - len(target)])
    elif isinstance(target, set) and len(target) < _KEEP_ITEMS:
        target.update(i for i in items if isinstance(i, (str, int, float, bytes, tuple)) and _hashable(i))


def _setitems(stack: list[Any], items: list[Any], offset: int) -> None:
    if not stack:
        raise Malformed("stack underflow", offset)
    target = stack[-1]
    if isinstance(target, dict):
        target.update(_to_dict(items))


def _describe(value: Any) -> str:
    if isinstance(value, Instance) and isinstance(value.func, GlobalRef):
        return f"<result of {value.func.module}.{value.func.name}>"
    if isinstance(value, GlobalRef):
        return f"<{value.module}.{value.name}>"
    return f"<{type(value).__name__}>"


def _remaining(stream: _Stream) -> int:
    if not stream.seekable:
        return 0
    here = stream.raw.tell()
    end = stream.raw.seek(0, 2)
    stream.raw.seek(here)
    return end - here
