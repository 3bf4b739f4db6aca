"""The same evaluation of a PyTorch model on the CPU and on a GPU: the metrics must agree, and each is timed. One run.

    python benchmarks/bench_evaluations_gpu.py [--sample 200] [--suites adversarial,backdoor]

Trains (seeded) the digits CNN the tests use (fixtures/evaluations/digits_cnn.py) on scikit-learn's digits,
then runs `mlsec.evaluations.evaluate()` on it, static scan and sandboxed child included, once with
`device="cpu"` and once with `device="cuda"`. Prints each metric for both devices and each run's seconds,
and checks that each robust accuracy on the GPU lies within the CPU's 95% Wilson interval (the attacks
draw random starts, so the two need not be equal) and that every result names the device it ran on.
Exits 1 when a check fails, 2 when torch sees no GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
FACTORY = HERE.parent / "fixtures" / "evaluations"


def _train(folder: Path) -> tuple[Path, Path]:
    """The CNN's state dict and the held-out rows as CSV (inputs in [0, 1]), as the tests make them."""
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    sys.dont_write_bytecode = True  # leave fixtures/ as committed
    sys.path.insert(0, str(FACTORY))
    import digits_cnn

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split((x / 16.0).astype(np.float32), y, test_size=0.3, random_state=0)
    torch.save(digits_cnn.train(x_train, y_train).state_dict(), folder / "cnn.pt")
    frame = pd.DataFrame(x_test, columns=[f"px{i}" for i in range(64)])
    frame["y"] = y_test
    frame.to_csv(folder / "digits_test.csv", index=False)
    return folder / "cnn.pt", folder / "digits_test.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--suites", default="adversarial,backdoor")
    args = parser.parse_args()
    import torch

    from mlsec.evaluations import evaluate
    from mlsec.evaluations.adversarial import wilson

    if not torch.cuda.is_available():
        print("torch sees no GPU here")
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        weights, data = _train(Path(tmp))
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            report = evaluate(
                weights, data, label_column="y", suites=tuple(args.suites.split(",")), factory="digits_cnn:make",
                factory_path=FACTORY, input_shape=(1, 8, 8), sample=args.sample, device=device,
            )  # fmt: skip
            seconds[device] = time.perf_counter() - start
            results[device] = {e.name: e for e in report.evaluations}
    failures = []
    for name in sorted(results["cpu"]):
        cpu, gpu = results["cpu"][name], results["cuda"].get(name)
        if gpu is None or cpu.status != "completed" or gpu.status != "completed":
            failures.append(f"{name}: cpu {cpu.status}, cuda {gpu.status if gpu else 'missing'}")
            continue
        for device, result in (("cpu", cpu), ("cuda", gpu)):
            if result.parameters.get("device") != device:  # every result names where its model ran
                failures.append(f"{name} on {device} says it ran on {result.parameters.get('device')}")
        print(f"{name} (device parameter: cpu {cpu.parameters.get('device')}, cuda {gpu.parameters.get('device')})")
        for metric in sorted(cpu.metrics):
            left, right = cpu.metrics[metric], gpu.metrics.get(metric)
            print(f"  {metric:40} cpu {left!s:>22}  cuda {right!s:>22}")
            if metric.startswith("robust_accuracy") and isinstance(left, float) and isinstance(right, float):
                low, high = wilson(left, args.sample)
                if not low <= right <= high:
                    failures.append(f"{name}.{metric}: cuda {right:.3f} outside cpu's interval [{low:.3f}, {high:.3f}]")
    print(f"seconds: cpu {seconds['cpu']:.1f}, cuda {seconds['cuda']:.1f} (each: static scan, sandboxed child, imports)")
    for failure in failures:
        print(f"FAIL {failure}")
    print("PASS" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
