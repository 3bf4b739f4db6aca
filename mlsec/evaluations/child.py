"""The evaluation child: `python -m mlsec.evaluations.child`, started only by sandbox.py.

This is the one place in mlsec that loads a model, and it runs only on artifacts whose static scan
passed, inside the sandbox's limits. It reads one JSON request on standard input and writes one JSON
answer on standard output; nothing else crosses (no pickle)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from mlsec.evaluations._common import optional_torch, torch_of


def main() -> int:
    request = json.loads(sys.stdin.read())
    started = time.perf_counter()
    answer: dict[str, Any] = {"results": [], "versions": {}, "network_isolated": request.get("network_isolated", False)}
    import numpy as np  # noqa: PLC0415 - the evaluation stack loads only here

    features, labels = load_dataset(Path(request["data"]), request.get("label_column"))
    if request.get("threads"):
        _torch_threads(int(request["threads"]))
    request["device"] = _device(request.get("device") or "auto")
    model = load_model(Path(request["model"]), request)
    answer["load_seconds"] = round(time.perf_counter() - started, 3)
    answer["versions"] = _versions()
    answer["device"] = request["device"] if torch_of(model) is not None else "cpu"  # onnxruntime, scikit-learn: the CPU
    from mlsec.evaluations import adversarial  # noqa: PLC0415

    if "poisoning" in request["suites"]:
        from mlsec.evaluations import poisoning  # noqa: PLC0415

        answer["results"] += poisoning.run(model, features.astype(np.float32), labels, request)
    if "backdoor" in request["suites"]:
        from mlsec.evaluations import backdoor  # noqa: PLC0415

        answer["results"] += backdoor.run_if_torch(model, features.astype(np.float32), labels, request)
    if "adversarial" in request["suites"] or (request.get("trigger") and "backdoor" in request["suites"]):
        answer["results"] += adversarial.run(
            model, features.astype(np.float32), labels, request, np.random.default_rng(request["seed"])
        )
    sys.stdout.write(json.dumps(answer))
    return 0


def load_dataset(path: Path, label_column: str | None) -> tuple[Any, Any]:
    """Features (every column but the label) and labels, read as the dataset scanner reads them: the format
    from the bytes, the rows through datasets.reading (bounded lines), the label by the same names."""
    import pandas as pd  # noqa: PLC0415

    from mlsec import formats  # noqa: PLC0415
    from mlsec.datasets import LABEL_NAMES  # noqa: PLC0415
    from mlsec.datasets.reading import chunks  # noqa: PLC0415

    with path.open("rb") as fh:
        head = fh.read(4096)
        fh.seek(0)
        fmt = formats.sniff(head, name=str(path))
        if fmt not in formats.DATASET_FORMATS:
            raise SystemExit(f"{path.name}: {fmt!r} is not a dataset format mlsec reads")
        frame = pd.concat(list(chunks(fmt, fh)), ignore_index=True)
    column = label_column or next((c for c in frame.columns if str(c).lower() in LABEL_NAMES), None)
    if column is None or column not in frame.columns:
        raise SystemExit(f"no label column {label_column or '(' + ', '.join(LABEL_NAMES) + ')'} in {path.name}")
    return frame.drop(columns=[column]).to_numpy(), frame[column].to_numpy()


def load_model(path: Path, request: dict[str, Any]) -> Any:
    """The model: a PyTorch state dict given to the `--model-factory MODULE:FUNCTION` it names (read with
    weights_only=True), an ONNX model (onnxruntime), a TorchScript archive, or a scikit-learn model saved
    with joblib or pickle."""
    factory = request.get("factory")
    if factory:
        import importlib  # noqa: PLC0415

        import torch  # noqa: PLC0415

        _importable_from(request)
        module, _, name = factory.partition(":")
        model = getattr(importlib.import_module(module), name)()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval().to(request["device"])
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path)
    kind = _torch_zip_kind(path)
    if kind == "torchscript":
        import torch  # noqa: PLC0415

        return torch.jit.load(str(path), map_location="cpu").eval().to(request["device"])
    if kind == "pickle":
        return _whole_module(path, request).eval().to(request["device"])
    import joblib  # noqa: PLC0415

    return joblib.load(path)


def _whole_module(path: Path, request: dict[str, Any]) -> Any:
    """A `torch.nn.Module` saved whole (`torch.save(model)`): its pickle names the module's classes, so it is
    unpickled with weights_only=False, only here, after the static scan cleared every import it makes, with
    --factory-path (default: the current directory) where those classes are found. A state dict without
    --model-factory is the user's error, said plainly."""
    import torch  # noqa: PLC0415

    _importable_from(request)
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(
            f"{path.name} holds a {type(model).__name__}, not a torch.nn.Module: a state dict needs "
            f"--model-factory MODULE:FUNCTION to build the module it loads into"
        )
    return model


def _importable_from(request: dict[str, Any]) -> None:
    """The user's model code is imported from --factory-path; an evaluation writes nothing into that folder."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, request["factory_path"])


def _device(wanted: str) -> str:
    """'cuda' when asked for, or when 'auto' and torch sees a GPU; else 'cpu'. No torch: 'cpu'."""
    if wanted == "cpu":
        return "cpu"
    torch = optional_torch()
    available = torch is not None and torch.cuda.is_available()
    if wanted == "cuda" and not available:
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    return "cuda" if available else "cpu"


class OnnxModel:
    """An ONNX model through onnxruntime (CPU), seen as a function from rows to class probabilities: the first
    output of shape [batch, classes]; scores that are not probabilities are put through a softmax."""

    def __init__(self, path: Path) -> None:
        import onnxruntime  # noqa: PLC0415

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]

    def predict_proba(self, rows: Any) -> Any:
        import numpy as np  # noqa: PLC0415

        shape = [d if isinstance(d, int) else -1 for d in self.input.shape]
        batch = np.asarray(rows, dtype=np.float32).reshape([len(rows), *shape[1:]] if len(shape) > 1 else [-1])
        outputs = [o for o in self.session.run(None, {self.input.name: batch}) if getattr(o, "ndim", 0) == 2]
        if not outputs:
            raise SystemExit("the ONNX model has no output of shape [batch, classes]")
        scores = outputs[0].astype(np.float64)
        if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
            return scores
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def _torch_zip_kind(path: Path) -> str | None:
    """What torch wrote: "torchscript" (a code/ folder), "pickle" (torch.save's data.pkl: a module or a state
    dict), or None (not a torch zip)."""
    import zipfile  # noqa: PLC0415

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        inside = [name.split("/", 1)[-1] for name in archive.namelist()]
    if any(name.startswith("code/") for name in inside):
        return "torchscript"
    return "pickle" if "data.pkl" in inside else None


def _torch_threads(threads: int) -> None:
    torch = optional_torch()
    if torch is not None:
        torch.set_num_threads(threads)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    found = {}
    for name in ("adversarial-robustness-toolbox", "cleanlab", "onnxruntime", "scikit-learn", "numpy", "torch"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


if __name__ == "__main__":
    sys.exit(main())
