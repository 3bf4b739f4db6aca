"""Evasion attacks with ART, run in the evaluation child: clean accuracy, then robust accuracy under each
attack at each epsilon, and the worst case over attacks as the headline (DECISIONS.md: the weakest attack
differs by model). White-box FGSM and PGD where the model has gradients (logistic regression and other
models ART wraps with gradients); others are reported as not evaluated, with the reason."""

from __future__ import annotations

import math
import time
from typing import Any

from mlsec.evaluations._common import optional_torch, row_shape, torch_of

_NORMS = {"inf": math.inf, "1": 1, "2": 2}
# The attacks' own budgets, not thresholds (a gate never reads them): PGD's iterations, Square's queries and
# HopSkipJump's iterations and evaluations. The thresholds in rules/evaluations.toml were measured with these.
PGD_STEPS = 40
SQUARE_QUERIES = 1000
HSJ_ITERATIONS, HSJ_EVALUATIONS, HSJ_INITIAL_EVALUATIONS = 10, 1000, 100


def run(model: Any, x: Any, y: Any, request: dict[str, Any], rng: Any) -> list[dict[str, Any]]:
    import numpy as np  # noqa: PLC0415

    n = min(int(request.get("sample", 200)), len(x))
    pick = np.sort(rng.choice(len(x), size=n, replace=False))
    x, y = x[pick], y[pick]
    low, high = float(x.min()), float(x.max())
    estimator, x = _estimator(model, x, y, (low, high), request)
    blackbox = _black_box(model, x, y, (low, high), request)
    clean = float(np.mean(np.argmax(blackbox.predict(x), axis=1) == _indices(model, y)))
    results = []
    if request.get("trigger") and "backdoor" in request.get("suites", []):
        from mlsec.evaluations import trigger  # noqa: PLC0415

        results.append(trigger.run(blackbox, x, y, _indices(model, y), request, rng))
    if "adversarial" not in request.get("suites", ["adversarial"]):
        return results
    for norm_name in request.get("norms", ["inf"]):
        for eps in request.get("epsilons", [0.1]):
            results.append(_one((estimator, blackbox), model, x, y, clean, norm_name, float(eps), request, rng))
    return results


def _one(
    estimators: tuple[Any, Any], model: Any, x: Any, y: Any, clean: float, norm_name: str, eps: float, request: dict, rng: Any
) -> dict:
    import numpy as np  # noqa: PLC0415
    from art.attacks.evasion import FastGradientMethod, HopSkipJump, ProjectedGradientDescent, SquareAttack  # noqa: PLC0415

    estimator, blackbox = estimators
    norm = _NORMS[norm_name]
    seed = int(request["seed"])
    attacks: dict[str, Any] = {}
    if estimator is not None:  # white-box, where the model has gradients
        attacks["fgsm"] = lambda: FastGradientMethod(estimator, norm=norm, eps=eps)
        attacks["pgd"] = lambda: ProjectedGradientDescent(
            estimator, norm=norm, eps=eps, eps_step=eps / 4, max_iter=PGD_STEPS, num_random_init=1, verbose=False
        )
    # black-box attacks for any model: only its predictions are used
    if norm_name in ("inf", "2"):
        attacks["square"] = lambda: SquareAttack(
            blackbox, norm=norm, eps=eps, max_iter=SQUARE_QUERIES, nb_restarts=1, verbose=False
        )
    attacks["hopskipjump"] = lambda: _Bounded(
        HopSkipJump(
            blackbox, norm=norm, max_iter=HSJ_ITERATIONS, max_eval=HSJ_EVALUATIONS, init_eval=HSJ_INITIAL_EVALUATIONS,
            verbose=False,
        ),
        norm, eps,
    )  # fmt: skip
    truth = _indices(model, y)
    robust: dict[str, float] = {}
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, make in attacks.items():
        np.random.seed(seed)  # ART's random initialisation draws from numpy's global generator (and torch's)
        _seed_torch(seed)
        started = time.perf_counter()
        try:
            adversarial = make().generate(x=x)
        except (NotImplementedError, TypeError, AttributeError, ValueError) as exc:  # no gradients
            skipped[name] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        seconds[name] = round(time.perf_counter() - started, 3)
        robust[name] = float(np.mean(np.argmax(blackbox.predict(adversarial), axis=1) == truth))
    n = len(x)
    where = f"L{norm_name} eps {eps:g}"
    base = {
        "name": f"adversarial/L{norm_name}/eps={eps:g}",
        "parameters": {
            "norm": norm_name,
            "eps": eps,
            "n": n,
            "seed": seed,
            "pgd_steps": PGD_STEPS,
            "attacks": sorted(attacks),
            "unseeded": ["hopskipjump"] if "hopskipjump" in attacks else [],
        },
    }
    if not robust:
        return {
            **base, "status": "skipped", "metrics": {"clean_accuracy": clean, "n": n},
            "summary": f"no attack could run at {where} ({'; '.join(skipped.values())})",
            "facts": skipped, "seconds": 0.0,
        }  # fmt: skip
    worst_attack = min(robust, key=lambda a: robust[a])
    worst = robust[worst_attack]
    low, high = wilson(worst, n)
    metrics = {
        "clean_accuracy": clean, "robust_accuracy": worst, "ci95_low": low, "ci95_high": high, "n": n,
        **{f"robust_accuracy_{a}": v for a, v in robust.items()},
        **{f"seconds_per_100_{a}": round(s * 100 / n, 4) for a, s in seconds.items()},
    }  # fmt: skip
    return {
        **base, "status": "completed", "metrics": metrics,
        "summary": f"worst-case robust accuracy {worst:.3f} ({worst_attack.upper()}) against clean {clean:.3f} at {where} on {n} samples (95% CI {low:.3f}-{high:.3f})",
        "facts": {"worst_attack": worst_attack, **{f"skipped_{a}": why for a, why in skipped.items()}},
        "seconds": round(sum(seconds.values()), 3),
    }  # fmt: skip


def _estimator(model: Any, x: Any, y: Any, clip: tuple[float, float], request: dict[str, Any]) -> tuple[Any, Any]:
    """ART's wrapper for the model, and the inputs in the shape it takes: a torch module gets
    PyTorchClassifier (rows reshaped to --input-shape, e.g. 1,8,8), anything else SklearnClassifier."""
    torch = torch_of(model)
    if torch is not None:
        from art.estimators.classification import PyTorchClassifier  # noqa: PLC0415

        shape = row_shape(request, x)
        classes = len(set(y.tolist()))
        wrapped = PyTorchClassifier(
            model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=shape, nb_classes=classes, clip_values=clip,
            device_type="gpu" if request.get("device") == "cuda" else "cpu",
        )  # fmt: skip
        return wrapped, x.reshape((len(x), *shape)).astype("float32")
    if not hasattr(model, "get_params"):  # an ONNX session: no gradients, black-box attacks only
        return None, x.reshape((len(x), *row_shape(request, x))).astype("float32")
    from art.estimators.classification import SklearnClassifier  # noqa: PLC0415

    wrapped = SklearnClassifier(model=model, clip_values=clip)
    has_gradients = callable(getattr(wrapped, "loss_gradient", None)) and type(wrapped).__name__ != "ScikitlearnClassifier"
    return (wrapped if has_gradients else None), x


def _black_box(model: Any, x: Any, y: Any, clip: tuple[float, float], request: dict[str, Any]) -> Any:
    """The model as ART sees a black box: a function from inputs (in x's shape) to class probabilities."""
    import numpy as np  # noqa: PLC0415
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork  # noqa: PLC0415

    shape = tuple(x.shape[1:])
    classes = len(getattr(model, "classes_", [])) or len(set(y.tolist()))
    torch = torch_of(model)
    if torch is not None:
        device = request.get("device") or "cpu"

        def predict(batch: Any) -> Any:
            with torch.no_grad():  # float32 casts: HopSkipJump hands float64 arrays (DECISIONS.md)
                rows = torch.tensor(np.asarray(batch, dtype=np.float32).reshape((-1, *shape)), device=device)
                return torch.softmax(model(rows), dim=1).cpu().numpy()
    else:

        def predict(batch: Any) -> Any:
            return np.asarray(model.predict_proba(np.asarray(batch, dtype=np.float32).reshape(len(batch), -1)))

    return BlackBoxClassifierNeuralNetwork(predict, input_shape=shape, nb_classes=classes, clip_values=clip)


class _Bounded:
    """HopSkipJump looks for the smallest adversarial example, unbounded: one further than `eps` (in the norm)
    does not count, so the sample keeps its original input."""

    def __init__(self, attack: Any, norm: float, eps: float) -> None:
        self.attack, self.norm, self.eps = attack, norm, eps

    def generate(self, x: Any) -> Any:
        import numpy as np  # noqa: PLC0415

        adversarial = self.attack.generate(x=x)
        flat = (adversarial - x).reshape(len(x), -1)
        distance = np.abs(flat).max(axis=1) if self.norm == math.inf else np.linalg.norm(flat, ord=self.norm, axis=1)
        within = (distance <= self.eps + 1e-6).reshape((-1,) + (1,) * (x.ndim - 1))
        return np.where(within, adversarial, x)


def _indices(model: Any, y: Any) -> Any:
    """Labels as the column indices of the model's predict_proba (its classes_ order)."""
    import numpy as np  # noqa: PLC0415

    classes = list(getattr(model, "classes_", sorted(set(y.tolist()))))
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(v, -1) for v in y.tolist()])


def _seed_torch(seed: int) -> None:
    torch = optional_torch()
    if torch is not None:
        torch.manual_seed(seed)


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a proportion p of n (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
