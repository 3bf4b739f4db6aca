"""The poisoning suite, run in the evaluation child.

Label issues: rows whose label disagrees with what the model family predicts for them out of fold
(cleanlab's confident learning on cross-validated probabilities). Random or targeted label flips are the
simplest poisoning; the rows found are evidence to review.

Class suspicion: poisoned rows of a class sit apart from its clean rows in the model's own representation
(the input of its last linear layer; a model without one is represented by its input features), so a
poisoned class has more of its variance along one direction (spectral signatures, Tran et al., 2018: the
top singular direction's share of the class's centred variance, the sum of the paper's outlier scores
over their total) and splits into two clusters more cleanly (activation clustering, Chen et al., 2018:
ART's PCA and 2-means, scored with the silhouette). Not ART's spectral scores: they project the
uncentred rows, |v . r| instead of the paper's (v . (r - mean))^2, which on clean digits gave one class a
share of 0.94 (z 13) from its mean alone. Both flag clean classes too, so each class's score becomes a
robust z-score against the other classes, and the highest is a warning (MLSEC-EVAL-007, low), never a
block."""

from __future__ import annotations

import time
from typing import Any

from mlsec.evaluations._common import robust_z, row_shape, torch_of

MAX_ROWS_LISTED = 10_000


def run(model: Any, x: Any, y: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    return [label_issues(model, x, y, request), class_suspicion(model, x, y, request)]


def label_issues(model: Any, x: Any, y: Any, request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415
    from cleanlab.filter import find_label_issues  # noqa: PLC0415
    from sklearn.base import clone  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: PLC0415

    started = time.perf_counter()
    classes, codes = np.unique(y, return_inverse=True)
    folds = max(2, min(5, int(np.bincount(codes).min())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(request["seed"]))
    # the model's own estimator, retrained from scratch on each fold: probabilities out of fold, as cleanlab needs
    try:
        family, estimator_name = clone(model), type(model).__name__
    except TypeError:  # not a scikit-learn estimator (a torch module): a linear model stands in for it
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

        family, estimator_name = LogisticRegression(max_iter=1000), "LogisticRegression (stand-in: the model cannot be refit)"
    probs = cross_val_predict(family, x, codes, cv=splitter, method="predict_proba")
    rows = np.sort(find_label_issues(labels=codes, pred_probs=probs, return_indices_ranked_by="self_confidence"))
    fraction = float(len(rows) / len(y))
    listed = ",".join(str(int(r)) for r in rows[:MAX_ROWS_LISTED])
    return {
        "name": "poisoning/label-issues",
        "status": "completed",
        "parameters": {"method": "cleanlab.find_label_issues", "folds": folds, "seed": int(request["seed"]),
                       "classes": len(classes), "estimator": estimator_name},
        "metrics": {"rows": len(y), "label_issues": len(rows), "label_issue_fraction": round(fraction, 4)},
        "summary": f"{len(rows)} of {len(y)} rows ({fraction:.1%}) carry a label the model family, trained out of fold, "
                   f"confidently disagrees with",
        "facts": {"rows_with_label_issues": listed, "rows_listed": min(len(rows), MAX_ROWS_LISTED)},
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip


def class_suspicion(model: Any, x: Any, y: Any, request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415
    from art.defences.detector.poison.activation_defence import cluster_activations  # noqa: PLC0415
    from sklearn.metrics import silhouette_score  # noqa: PLC0415

    started = time.perf_counter()
    features, where = representation(model, x, request)
    classes, codes = np.unique(y, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(len(classes))]
    usable = [c for c, rows in enumerate(members) if len(rows) >= 4]  # two clusters of two, at least
    spectral, silhouette, smaller = {}, {}, {}
    for c in usable:
        centred = features[members[c]] - features[members[c]].mean(axis=0)
        singular = np.linalg.svd(centred, compute_uv=False)
        total = float(np.square(singular).sum())
        spectral[c] = float(singular[0] ** 2) / total if total > 0 else 0.0
    np.random.seed(int(request["seed"]))  # ART's k-means takes no seed: it draws from numpy's global generator
    dims = max(1, min(10, features.shape[1], *(len(members[c]) for c in usable))) if usable else 1
    clusters, reduced = cluster_activations([features[members[c]] for c in usable], nb_clusters=2, nb_dims=dims, reduce="PCA")
    for c, labels, points in zip(usable, clusters, reduced, strict=True):
        split = len(set(labels.tolist())) == 2
        silhouette[c] = float(silhouette_score(points, labels)) if split else 0.0
        smaller[c] = float(np.bincount(labels, minlength=2).min() / len(labels))
    z_spectral = {c: round(z, 4) for c, z in robust_z(spectral).items()}
    z_silhouette = {c: round(z, 4) for c, z in robust_z(silhouette).items()}
    worst = max(
        [(z, "spectral", c) for c, z in z_spectral.items()] + [(z, "activation-clustering", c) for c, z in z_silhouette.items()],
        default=(0.0, "none", -1),
    )
    z, method, suspect = worst
    label = _plain(classes[suspect]) if suspect >= 0 else None
    return {
        "name": "poisoning/class-suspicion",
        "status": "completed" if usable else "skipped",
        "parameters": {"methods": ["spectral-signature", "activation-clustering"], "representation": where,
                       "clusters": 2, "reduce": f"PCA({dims})", "seed": int(request["seed"])},
        "metrics": {"class_suspicion_z": round(z, 4), "classes_scored": len(usable)},
        "summary": f"class {label} stands out most ({method}, robust z {z:.2f} against the other classes, in {where}); "
                   f"both methods also single out clean classes" if usable else
                   "no class has the 4 rows that clustering needs",
        "facts": {
            "spectral_concentration": _per_class(spectral, classes), "spectral_z": _per_class(z_spectral, classes),
            "cluster_silhouette": _per_class(silhouette, classes), "silhouette_z": _per_class(z_silhouette, classes),
            "smaller_cluster_share": _per_class(smaller, classes), "suspect_class": str(label), "suspect_method": method,
        },
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip


def representation(model: Any, x: Any, request: dict[str, Any]) -> tuple[Any, str]:
    """The rows as the model sees them just before it decides: the input of a torch module's last linear
    layer; for any other model (TorchScript takes no hooks; a module without a linear layer), the input
    features themselves."""
    torch = torch_of(model)
    hookable = torch is not None and not isinstance(model, torch.jit.ScriptModule)
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] if hookable else []
    if not heads:
        return x.reshape(len(x), -1), "input features"
    shape = row_shape(request, x)
    device = heads[-1].weight.device
    captured: list[Any] = []
    hook = heads[-1].register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().cpu()))
    try:
        with torch.no_grad():
            for start in range(0, len(x), 512):
                model(torch.tensor(x[start : start + 512].reshape((-1, *shape)), dtype=torch.float32, device=device))
    finally:
        hook.remove()
    return torch.cat(captured).reshape(len(x), -1).numpy(), f"the input of the last linear layer ({type(model).__name__})"


def _per_class(values: dict[int, float], classes: Any) -> str:
    return ",".join(f"{_plain(classes[c])}:{v:.3f}" for c, v in sorted(values.items()))


def _plain(label: Any) -> Any:
    """A label as Python has it: numpy scalars unwrapped; strings (object arrays hold them as str) as they are."""
    return label.item() if hasattr(label, "item") else label
