"""Label issues in a dataset, run in the evaluation child: rows whose label disagrees with what the model
family predicts for them out of fold (cleanlab's confident learning on cross-validated probabilities).
Random or targeted label flips are the simplest poisoning; the rows found are evidence to review."""

from __future__ import annotations

import time
from typing import Any

MAX_ROWS_LISTED = 10_000


def run(model: Any, x: Any, y: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
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
    return [
        {
            "name": "poisoning/label-issues",
            "status": "completed",
            "parameters": {"method": "cleanlab.find_label_issues", "folds": folds, "seed": int(request["seed"]),
                           "classes": len(classes), "estimator": estimator_name},
            "metrics": {"rows": len(y), "label_issues": len(rows), "label_issue_fraction": round(fraction, 4)},
            "summary": f"{len(rows)} of {len(y)} rows ({fraction:.1%}) carry a label the model family, trained out of fold, "
                       f"confidently disagrees with",
            "facts": {"rows_with_label_issues": listed, "rows_listed": min(len(rows), MAX_ROWS_LISTED)},
            "seconds": round(time.perf_counter() - started, 3),
        }
    ]  # fmt: skip
