"""A candidate trigger, tested on the model (in the evaluation child): its attack success rate, and STRIP.

`--trigger "R0:R1,C0:C1=V"` stamps value V on rows R0..R1-1 and columns C0..C1-1 of every image (the last
two axes of --input-shape; for flat rows, "C0:C1=V" sets those features). The attack success rate is the
share of held-out samples not already of the target class that the stamp sends to it (the target is
--trigger-target, else the class stamped inputs are most often sent to).

STRIP (Gao et al., 2019), computed as the paper does: each input is superimposed (added, then clipped to the
data range) on N random clean inputs, and its score is the mean Shannon entropy, over the class axis, of
the N predictions. A trojaned input keeps its target class under any blend, so its entropy is low. The
detection rate is the share of stamped inputs below the 1st percentile of clean inputs' entropy (a 1%
false rejection rate). ART's STRIP takes the entropy over the wrong axis (DECISIONS.md), hence this one."""

from __future__ import annotations

import time
from typing import Any

BLENDS = 20


def parse(spec: str) -> tuple[tuple[int, int] | None, tuple[int, int], float]:
    """ "R0:R1,C0:C1=V" or "C0:C1=V" → (rows or None, columns, value)."""
    where, _, value = spec.partition("=")
    if not value:
        raise ValueError(f"trigger {spec!r}: expected R0:R1,C0:C1=VALUE (or C0:C1=VALUE for flat rows)")
    spans = [tuple(int(v) for v in part.split(":")) for part in where.split(",")]
    if any(len(span) != 2 or span[0] >= span[1] or span[0] < 0 for span in spans) or len(spans) not in (1, 2):
        raise ValueError(f"trigger {spec!r}: each span is START:END with 0 <= START < END")
    rows = spans[0] if len(spans) == 2 else None
    return rows, spans[-1], float(value)  # type: ignore[return-value]


def run(blackbox: Any, x: Any, y: Any, truth: Any, request: dict[str, Any], rng: Any) -> dict[str, Any]:
    """`blackbox` predicts class probabilities for inputs shaped like `x` (see adversarial._black_box)."""
    import numpy as np  # noqa: PLC0415

    started = time.perf_counter()
    rows, cols, value = parse(request["trigger"])
    stamped = x.copy()
    if rows is None:
        stamped.reshape(len(x), -1)[:, cols[0] : cols[1]] = value
    else:
        stamped[..., rows[0] : rows[1], cols[0] : cols[1]] = value
    predicted = np.argmax(blackbox.predict(stamped), axis=1)
    target = request.get("trigger_target")
    target = int(target) if target is not None else int(np.bincount(predicted).argmax())
    others = truth != target
    success = float(np.mean(predicted[others] == target)) if others.any() else 0.0
    low, high = float(x.min()), float(x.max())
    clean_entropy = _strip(blackbox, x, x, low, high, rng)
    triggered_entropy = _strip(blackbox, stamped[others], x, low, high, rng)
    boundary = float(np.percentile(clean_entropy, 1))
    detected = float(np.mean(triggered_entropy < boundary)) if len(triggered_entropy) else 0.0
    return {
        "name": "backdoor/trigger",
        "status": "completed",
        "parameters": {"trigger": request["trigger"], "target": target, "n": len(x), "strip_blends": BLENDS,
                       "seed": int(request["seed"])},
        "metrics": {
            "backdoor_success_rate": round(success, 4), "strip_detection_rate": round(detected, 4),
            "strip_entropy_clean_mean": round(float(clean_entropy.mean()), 4),
            "strip_entropy_triggered_mean": round(float(triggered_entropy.mean()), 4) if len(triggered_entropy) else 0.0,
            "strip_boundary": round(boundary, 4), "n": len(x),
        },
        "summary": f"the trigger {request['trigger']} sends {success:.1%} of other-class samples to class {target}; STRIP "
                   f"flags {detected:.1%} of stamped inputs at a 1% false-rejection rate (mean entropy "
                   f"{triggered_entropy.mean() if len(triggered_entropy) else 0:.2f} against {clean_entropy.mean():.2f} clean)",
        "facts": {"target_class": target},
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip


def _strip(blackbox: Any, inputs: Any, pool: Any, low: float, high: float, rng: Any) -> Any:
    """Mean entropy (bits, over the class axis) of each input's predictions when superimposed on clean inputs."""
    import numpy as np  # noqa: PLC0415

    if len(inputs) == 0:
        return np.zeros(0)
    partners = pool[rng.integers(0, len(pool), size=(len(inputs), BLENDS))]  # (n, BLENDS, *shape)
    blended = np.clip(inputs[:, None] + partners, low, high).reshape((-1, *inputs.shape[1:]))
    probs = np.clip(blackbox.predict(blended.astype(np.float32)), 1e-12, 1.0).reshape(len(inputs), BLENDS, -1)
    entropy = -(probs * np.log2(probs)).sum(axis=2)  # over classes, per blend
    return entropy.mean(axis=1)
