"""Neural Cleanse for PyTorch models, run in the evaluation child (ART's accepts only Keras).

For each class, optimise the smallest mask and pattern that send every sample to that class:
x' = (1 - m) * x + m * p, minimising cross-entropy to the class plus lambda * |m|_1. A backdoored class
needs a far smaller mask than the others; the anomaly index of the smallest mask norm (its distance below
the median in units of 1.4826 * MAD) above max_anomaly_index (rules/evaluations.toml; 2 in the paper, Wang
et al., 2019) flags it, when that norm is also under max_trigger_norm_ratio of the median.

Why the second condition: with ten classes the MAD rests on five values and collapses when they happen to
cluster. On 8x8 digits, clean CNNs (four seeds, three training recipes, samples of 100 and 200) scored
1.0 to 3.3, and one 6.6 from a MAD of 0.3, while their smallest trigger was 0.74 to 0.89 of the median;
backdoored ones scored 3.9 to 9.8 with a ratio of 0.33 to 0.48. The ratio carries the paper's idea (one
class far easier to reach) without resting on the spread of the others."""

from __future__ import annotations

import time
from typing import Any

from mlsec.evaluations._common import robust_z, row_shape, torch_of

# The reverse engineering's own budget, not a threshold (a gate never reads it): Adam steps per class, and the
# weight of the mask's L1 norm against the cross-entropy. The thresholds in rules/evaluations.toml were
# measured with these values.
NC_STEPS = 200
NC_LAMBDA = 0.05


def run(model: Any, x: Any, y: Any, request: dict[str, Any], rng: Any) -> list[dict[str, Any]]:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    started = time.perf_counter()
    shape = row_shape(request, x)
    classes = len(set(y.tolist()))
    n = min(int(request.get("sample", 200)), len(x))
    pick = np.sort(rng.choice(len(x), size=n, replace=False))
    device = next(model.parameters(), torch.zeros(0)).device
    inputs = torch.tensor(x[pick].reshape((n, *shape)), dtype=torch.float32, device=device)
    low, high = float(inputs.min()), float(inputs.max())
    for parameter in model.parameters():  # only the mask and pattern are optimised
        parameter.requires_grad_(False)
    torch.manual_seed(int(request["seed"]))
    norms, success = [], []
    for target in range(classes):
        norm, rate = _reverse_engineer(model, inputs, target, shape, low, high, NC_STEPS, NC_LAMBDA)
        norms.append(norm)
        success.append(rate)
    values = np.array(norms)
    median = float(np.median(values))
    suspect = int(np.argmin(values))
    index = 0.0 - robust_z(dict(enumerate(norms)))[suspect]  # how far below the median, in robust units (never -0.0)
    ratio = float(values[suspect] / median) if median > 0 else 1.0
    # both thresholds come from rules/evaluations.toml, sent by the parent
    threshold, max_ratio = float(request["max_anomaly_index"]), float(request["max_trigger_norm_ratio"])
    flagged = index > threshold and ratio < max_ratio
    sizes = f"class {suspect} is reached by a trigger of L1 norm {values[suspect]:.2f}, {ratio:.2f} of the median {median:.2f}"
    summary = (
        f"Neural Cleanse anomaly index {index:.2f} above {threshold:g}: {sizes} (under {max_ratio:g}) — a likely backdoor target"
        if flagged else
        f"Neural Cleanse anomaly index {index:.2f} (flag above {threshold:g} with a norm ratio under {max_ratio:g}): "
        f"no class stands out; the smallest trigger: {sizes}"
    )  # fmt: skip
    return [
        {
            "name": "backdoor/neural-cleanse",
            "status": "completed",
            "parameters": {"method": "neural-cleanse", "n": n, "steps": NC_STEPS, "lambda": NC_LAMBDA, "seed": int(request["seed"]),
                           "device": str(device)},
            "metrics": {
                "anomaly_index": round(index, 4), "trigger_norm_ratio": round(ratio, 4), "suspect_class": suspect,
                "backdoor_flagged": float(flagged),
                "min_trigger_norm": round(float(values[suspect]), 4), "median_trigger_norm": round(median, 4),
            },
            "summary": summary,
            "facts": {
                "trigger_norms": ",".join(f"{v:.3f}" for v in values),
                "trigger_success_rates": ",".join(f"{r:.3f}" for r in success),
            },
            "seconds": round(time.perf_counter() - started, 3),
        }
    ]  # fmt: skip


def run_if_torch(model: Any, x: Any, y: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Neural Cleanse on a torch module; for any other model, a skipped result that says why."""
    import numpy as np  # noqa: PLC0415

    if torch_of(model) is None:
        return [
            {
                "name": "backdoor/neural-cleanse", "status": "skipped", "parameters": {"method": "neural-cleanse"},
                "metrics": {}, "summary": "Neural Cleanse needs a PyTorch model (gradients with respect to the input)",
                "facts": {}, "seconds": 0.0,
            }
        ]  # fmt: skip
    return run(model, x, y, request, np.random.default_rng(int(request["seed"])))


def _reverse_engineer(
    model: Any, inputs: Any, target: int, shape: tuple[int, ...], low: float, high: float, steps: int, lam: float
) -> tuple[float, float]:
    """The L1 norm of the smallest mask found that sends the inputs to `target`, and its success rate."""
    import torch  # noqa: PLC0415

    mask_shape = shape[1:] if len(shape) == 3 else shape  # one mask over the pixels, shared by the channels
    mask_param = torch.full(mask_shape, -2.0, requires_grad=True, device=inputs.device)
    pattern_param = torch.zeros(shape, requires_grad=True, device=inputs.device)
    optimiser = torch.optim.Adam([mask_param, pattern_param], lr=0.1)
    labels = torch.full((len(inputs),), target, dtype=torch.long, device=inputs.device)
    for _ in range(steps):
        mask = torch.sigmoid(mask_param)
        pattern = torch.sigmoid(pattern_param) * (high - low) + low
        stamped = (1 - mask) * inputs + mask * pattern
        loss = torch.nn.functional.cross_entropy(model(stamped), labels) + lam * mask.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        mask = torch.sigmoid(mask_param)
        pattern = torch.sigmoid(pattern_param) * (high - low) + low
        rate = float((model((1 - mask) * inputs + mask * pattern).argmax(1) == target).float().mean())
        return float(mask.sum()), rate
