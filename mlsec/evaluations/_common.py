"""What the evaluation child's suites share: torch, which users bring themselves (no extra requires it),
the shape a row takes, and robust z-scores."""

from __future__ import annotations

from typing import Any


def optional_torch() -> Any:
    """torch when it is installed, else None."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return None
    return torch


def torch_of(model: Any) -> Any:
    """torch when `model` is a torch module (TorchScript included), else None."""
    torch = optional_torch()
    return torch if torch is not None and isinstance(model, torch.nn.Module) else None


def row_shape(request: dict[str, Any], x: Any) -> tuple[int, ...]:
    """The shape one row takes: --input-shape (e.g. 1,8,8), else the dataset's flat rows."""
    return tuple(request.get("input_shape") or (x.shape[1],))


def robust_z(scores: dict[int, float]) -> dict[int, float]:
    """(score - median) / (1.4826 * MAD) per key; 0 where the scores do not spread."""
    import numpy as np  # noqa: PLC0415

    if not scores:
        return {}
    values = np.array(list(scores.values()))
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    return {key: float((value - median) / mad) if mad > 0 else 0.0 for key, value in scores.items()}
