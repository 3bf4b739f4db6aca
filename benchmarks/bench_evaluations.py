"""Evaluation cost: seconds per 100 samples for each attack and suite, on scikit-learn's digits. One run.

    python benchmarks/bench_evaluations.py [--sample 200]

Trains (here, seeded) a logistic regression and a small CNN on digits scaled to [0, 1], then times,
in this process with one torch thread: FGSM, PGD (40 steps), Square (1,000 queries; image inputs only)
and HopSkipJump (10 iterations) on each model at L-inf eps 0.1, the
poisoning suite (cleanlab on 5-fold out-of-fold probabilities, and the per-class spectral-signature
and activation-clustering scores) over the whole dataset, and Neural Cleanse
(200 steps per class, 10 classes) on the CNN. Last, one whole `mlsec evaluate` of each model (static
scan, sandboxed child, imports included) as a user runs it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CNN_FACTORY = HERE.parent / "fixtures" / "evaluations"  # digits_cnn.py, as the tests train it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    import joblib
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from mlsec.evaluations import adversarial, backdoor, poisoning
    from mlsec.rules import load_ruleset

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
    work = Path(tempfile.mkdtemp(prefix="mlsec-bench-eval-"))
    sys.dont_write_bytecode = True  # leave fixtures/ as committed
    sys.path.insert(0, str(CNN_FACTORY))
    from digits_cnn import train

    logreg = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    cnn = train(x_train, y_train).eval()
    thresholds = load_ruleset().list("evaluation_thresholds")
    request = {"seed": 0, "sample": args.sample, "epsilons": [0.1], "norms": ["inf"],
               "max_anomaly_index": thresholds["max_anomaly_index"],
               "max_trigger_norm_ratio": thresholds["max_trigger_norm_ratio"]}  # fmt: skip
    rows = []
    for name, model, extra in (("logistic regression", logreg, {}), ("CNN", cnn, {"input_shape": [1, 8, 8]})):
        (result,) = adversarial.run(model, x_test, y_test, {**request, **extra}, np.random.default_rng(0))
        n = result["metrics"]["n"]
        for attack in ("fgsm", "pgd", "square", "hopskipjump"):
            if f"seconds_per_100_{attack}" in result["metrics"]:
                rows.append((name, attack.upper(), result["metrics"][f"seconds_per_100_{attack}"], n,
                             f"robust accuracy {result['metrics'][f'robust_accuracy_{attack}']:.3f}"))  # fmt: skip
    labels = poisoning.label_issues(logreg, x, y, request)
    rows.append(("logistic regression", "label issues (cleanlab)", labels["seconds"] * 100 / len(y), len(y),
                 f"{labels['metrics']['label_issues']} rows"))  # fmt: skip
    for name, model, extra in (("logistic regression", logreg, {}), ("CNN", cnn, {"input_shape": [1, 8, 8]})):
        suspicion = poisoning.class_suspicion(model, x, y, {**request, **extra})
        rows.append((name, "class suspicion (SS + AC)", suspicion["seconds"] * 100 / len(y), len(y),
                     f"highest z {suspicion['metrics']['class_suspicion_z']:.2f}"))  # fmt: skip
    (cleanse,) = backdoor.run(cnn, x_test, y_test, {**request, "input_shape": [1, 8, 8]}, np.random.default_rng(0))
    n = cleanse["parameters"]["n"]
    rows.append(("CNN", "Neural Cleanse (10 classes)", cleanse["seconds"] * 100 / n, n,
                 f"anomaly index {cleanse['metrics']['anomaly_index']:.2f}"))  # fmt: skip
    print(f"{'model':22} {'attack / suite':28} {'s per 100':>10} {'n':>6}  result")
    for model_name, attack, per100, n, what in rows:
        print(f"{model_name:22} {attack:28} {per100:10.4f} {n:6}  {what}")
    joblib.dump(logreg, work / "logreg.joblib")
    torch.save(cnn.state_dict(), work / "cnn.pt")
    frame = pd.DataFrame(x_test, columns=[f"px{i}" for i in range(64)])
    frame["y"] = y_test
    frame.to_csv(work / "test.csv", index=False)
    for name, cmd in (
        ("logistic regression", ["evaluate", str(work / "logreg.joblib")]),
        ("CNN", ["evaluate", str(work / "cnn.pt"), "--model-factory", "digits_cnn:make", "--factory-path", str(CNN_FACTORY),
                 "--input-shape", "1,8,8"]),
    ):  # fmt: skip
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlsec", *cmd, "--data", str(work / "test.csv"), "--sample", str(args.sample),
                        "-o", "json=/dev/null"],
                       capture_output=True, check=False)  # fmt: skip
        print(f"whole `mlsec evaluate` ({name}, adversarial suite, {args.sample} samples): {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
