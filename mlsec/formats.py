"""Name an input's format from its bytes; the file name is only a hint for formats without magic."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Containers that inputs.py opens; every other format is a leaf handed to scanners.
ARCHIVES = frozenset({"zip", "pytorch-zip", "numpy-npz", "keras-v3", "tar", "7z"})
IMAGES = frozenset({"oci-image"})
MANIFEST_FORMATS = frozenset(
    {"requirements", "pyproject", "poetry-lock", "uv-lock", "pylock", "pipfile-lock", "conda-env", "python-metadata"}
)
DATASET_FORMATS = frozenset({"csv", "tsv", "jsonl", "parquet", "arrow", "arrow-stream"})
_DATASET_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arrow": "arrow-stream",
    ".feather": "arrow",
}  # container images: inputs/images.py reads them layer by layer
COMPRESSED = frozenset({"gzip", "bz2", "xz", "lzma", "zlib", "lz4", "zstd"})

_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_PICKLE_STARTS = frozenset(b"(c]})NIJKLMFGSTUVX")
_ONNX_SUFFIXES = (".onnx", ".ort")
# Names that promise a model: an empty file by such a name is broken, not merely uninteresting.
MODEL_SUFFIXES = (
    ".pkl",
    ".pickle",
    ".joblib",
    ".dill",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".npy",
    ".npz",
    ".onnx",
    ".ort",
    ".h5",
    ".hdf5",
    ".keras",
    ".safetensors",
    ".gguf",
    ".sav",
)
_STORAGE_RE = re.compile(r"(^|/)data/\d+$")
_REQUIREMENTS_RE = re.compile(r"^(.*[-_.])?requirements([-_.].*)?\.(txt|in)$|^constraints\.txt$")
_MANIFESTS = {
    "pyproject.toml": "pyproject", "poetry.lock": "poetry-lock", "uv.lock": "uv-lock", "pylock.toml": "pylock",
    "pipfile.lock": "pipfile-lock", "environment.yml": "conda-env", "environment.yaml": "conda-env",
}  # fmt: skip
_TF_SHARD_RE = re.compile(r"\.data-\d{5}-of-\d{5}$")
# Formats whose artifacts are models (the rest are archives, data or other files).
MODEL_FORMATS = frozenset(
    {
        "pickle", "pytorch-zip", "pytorch-legacy", "numpy", "numpy-npz", "onnx", "keras-v3", "hdf5", "safetensors",
        "gguf", "tflite", "tf-savedmodel", "tf-graphdef", "xgboost-json", "xgboost-ubj", "lightgbm", "pmml",
    }
)  # fmt: skip


def sniff(head: bytes, *, last_byte: bytes = b"", name: str = "") -> str:
    """The format of a file whose first bytes are `head` (4 KiB is plenty)."""
    lower = name.lower()
    manifest = manifest_kind(lower)
    if manifest and not head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return manifest
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "pytorch-legacy"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "arrow"
    dataset = next((fmt for suffix, fmt in _DATASET_SUFFIXES.items() if lower.endswith(suffix)), None)
    if dataset and not head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return dataset
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    compressed = _compression(head)
    if compressed:
        return compressed
    if _TF_SHARD_RE.search(lower) or lower.endswith((".ckpt.index", "variables.index")):
        return "tf-checkpoint"
    if _is_pickle(head, last_byte):
        return "pickle"
    if _is_safetensors(head) or lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith(_ONNX_SUFFIXES) and head[:1] == b"\x08":
        return "onnx"
    if lower.endswith(".pb"):
        return _protobuf_kind(lower)
    if head.startswith(b"tree\nversion=v"):
        return "lightgbm"
    if lower.endswith("chat_template.jinja"):
        return "hf-chat-template"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{L") and b"learner" in stripped[:32]:
        return "xgboost-ubj"
    if stripped[:1] in (b"{", b"["):
        if b'"learner"' in stripped[:64]:
            return "xgboost-json"
        base = lower.rsplit("/", 1)[-1]
        if base in ("tokenizer_config.json", "chat_template.json"):
            return "hf-tokenizer-config"
        if base == "config.json" and any(k in head for k in (b'"model_type"', b'"architectures"', b'"auto_map"')):
            return "hf-config"
        return "json"
    if lower.endswith((".yaml", ".yml")) and b"apiVersion:" in head and b"kind:" in head:
        return "k8s-manifest"
    if stripped.startswith(b"<"):
        return "pmml" if b"<PMML" in head else "openvino-ir" if b"<net " in head else "xml"
    return "unknown"


def _protobuf_kind(lower: str) -> str:
    base = lower.rsplit("/", 1)[-1]
    if base == "saved_model.pb":
        return "tf-savedmodel"
    if base in ("fingerprint.pb", "keras_metadata.pb"):
        return "tf-metadata"
    return "tf-graphdef"


def manifest_kind(lower: str) -> str | None:
    """Python dependency manifests are known by their names (they are plain text, TOML, JSON or YAML)."""
    base = lower.rsplit("/", 1)[-1]
    parent = lower.rsplit("/", 2)[-2] if lower.count("/") >= 1 else ""
    if _REQUIREMENTS_RE.match(base):
        return "requirements"
    if base in _MANIFESTS:
        return _MANIFESTS[base]
    if base.startswith("pylock.") and base.endswith(".toml"):
        return "pylock"
    if (base == "metadata" and parent.endswith(".dist-info")) or (base == "pkg-info" and parent.endswith(".egg-info")):
        return "python-metadata"
    if lower.endswith("var/lib/dpkg/status"):
        return "dpkg-status"
    return None


def refine_zip(names: Sequence[str], name: str = "") -> str:
    """Tell the zip-based model formats apart by their member names."""
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch-zip"
    base = {n.rsplit("/", 1)[-1] for n in names}
    if "config.json" in base and "metadata.json" in base:
        return "keras-v3"
    if names and all(n.endswith(".npy") for n in names):
        return "numpy-npz"
    return "zip"


def is_torch_storage(member: str) -> bool:
    """Raw tensor bytes in a PyTorch zip (`<prefix>/data/<n>`): data, never parsed."""
    return bool(_STORAGE_RE.search(member))


def _compression(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\x5d\x00\x00") and len(head) >= 13:
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


def _is_pickle(head: bytes, last_byte: bytes) -> bool:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    # Protocols 0 and 1 have no header: a plausible first opcode and a final STOP.
    return bool(head) and head[0] in _PICKLE_STARTS and last_byte == b"." and b"\x00" not in head[:1]


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size < (100 << 20) and head[8:10] in (b'{"', b"{ ", b"{}")
