"""Evaluations (issue 7, first stage): adversarial robustness of a scikit-learn model, in a sandboxed child,
only after a clean static scan."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, fixture

pytest.importorskip("art", reason="the eval extra is not installed")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A logistic regression on scikit-learn's digits (inputs scaled to [0, 1]) and its held-out set as CSV."""
    import joblib
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.3, random_state=0)
    folder = tmp_path_factory.mktemp("digits")
    joblib.dump(LogisticRegression(max_iter=1000).fit(x_train, y_train), folder / "logreg.joblib")
    frame = pd.DataFrame(x_test, columns=[f"px{i}" for i in range(64)])
    frame["y"] = y_test
    frame.to_csv(folder / "digits_test.csv", index=False)
    return folder / "logreg.joblib", folder / "digits_test.csv"


def _mlsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlsec", *args], capture_output=True, text=True, check=False, timeout=600)


def test_robust_accuracy_is_what_an_independent_art_run_measures(digits: tuple[Path, Path]) -> None:
    import joblib
    import numpy as np
    import pandas as pd
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import SklearnClassifier

    from mlsec.evaluations import evaluate
    from mlsec.evaluations.adversarial import wilson

    model_path, data_path = digits
    report = evaluate(model_path, data_path, label_column="y", epsilons=(0.1,), sample=200, seed=0)
    (result,) = report.evaluations
    assert result.status == "completed"
    assert result.metrics["n"] == 200
    assert result.metrics["clean_accuracy"] > 0.9
    # the same sample, attacks and seeds, run here with ART directly (the test trained this model itself)
    frame = pd.read_csv(data_path)
    x, y = frame.drop(columns=["y"]).to_numpy().astype(np.float32), frame["y"].to_numpy()
    pick = np.sort(np.random.default_rng(0).choice(len(x), size=200, replace=False))
    x, y = x[pick], y[pick]
    estimator = SklearnClassifier(model=joblib.load(model_path), clip_values=(float(x.min()), float(x.max())))
    robust = []
    for attack in (
        FastGradientMethod(estimator, norm=np.inf, eps=0.1),
        ProjectedGradientDescent(estimator, norm=np.inf, eps=0.1, eps_step=0.025, max_iter=40, verbose=False),
    ):
        np.random.seed(0)
        robust.append(float(np.mean(np.argmax(estimator.predict(attack.generate(x=x)), axis=1) == y)))
    independent = min(robust)
    white_box = min(result.metrics["robust_accuracy_fgsm"], result.metrics["robust_accuracy_pgd"])
    assert wilson(white_box, 200)[0] <= independent <= wilson(white_box, 200)[1]
    assert independent < result.metrics["clean_accuracy"]  # the attacks really bite
    attacks = [v for k, v in result.metrics.items() if k.startswith("robust_accuracy_")]
    assert "robust_accuracy_hopskipjump" in result.metrics  # black-box too, on any model
    assert result.metrics["robust_accuracy"] == min(attacks)
    assert result.evidence.facts["version_adversarial-robustness-toolbox"]
    assert result.artifact_sha256 == next(a.sha256 for a in report.artifacts if a.path == str(model_path))


def test_a_low_robust_accuracy_is_a_finding_and_blocks(digits: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, data_path = digits
    run = _mlsec("evaluate", str(model_path), "--data", str(data_path), "--eps", "0.1", "--eps", "0.3", "--sample", "100",
                 "-o", f"json={tmp_path / 'r.json'}")  # fmt: skip
    assert run.returncode == 1, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    by_eps = {e["parameters"]["eps"]: e for e in report["evaluations"]}
    assert by_eps[0.3]["metrics"]["robust_accuracy"] < 0.5 <= by_eps[0.1]["metrics"]["robust_accuracy"]
    assert {e["parameters"]["device"] for e in report["evaluations"]} == {"cpu"}  # scikit-learn: the CPU, GPU or not
    flagged = [f for f in report["findings"] if f["rule_id"] == "MLSEC-EVAL-001"]
    assert len(flagged) == 1
    assert "eps 0.3" in flagged[0]["message"]


def test_a_model_that_fails_its_static_scan_is_refused_and_never_loaded(digits: tuple[Path, Path], tmp_path: Path) -> None:
    """The payload would touch $MLSEC_SENTINEL if loaded; the session's sentinel guard fails the run if it appears."""
    evil = fixture("models/malicious/os_system_protocol2.pkl")
    run = _mlsec("evaluate", evil, "--data", str(digits[1]), "-o", f"json={tmp_path / 'r.json'}")
    assert run.returncode == 1, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [e["status"] for e in report["evaluations"]] == ["refused"]
    assert "MLSEC-PICKLE-001" in report["evaluations"][0]["evidence"]["summary"]
    assert "MLSEC-EVAL-002" in {f["rule_id"] for f in report["findings"]}


def test_a_model_missing_from_the_given_report_is_refused(digits: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, data_path = digits
    scanned = _mlsec("scan", str(data_path), "-o", f"json={tmp_path / 'data-only.json'}")
    assert scanned.returncode == 0, scanned.stderr
    run = _mlsec("evaluate", str(model_path), "--data", str(data_path), "--report", str(tmp_path / "data-only.json"),
                 "-o", "json")  # fmt: skip
    assert run.returncode == 1
    (result,) = json.loads(run.stdout)["evaluations"]
    assert result["status"] == "refused"
    assert "never statically scanned" in result["evidence"]["summary"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(["--memory-mb", "300"], "child failed"), (["--timeout", "1"], "limit and was killed")],
    ids=["memory", "time"],
)
def test_the_child_runs_within_limits(digits: tuple[Path, Path], limit: list[str], expected: str) -> None:
    """Loading ART and torch needs more than 300 MB of address space and more than a second: the child is
    stopped, the evaluation is an error (MLSEC-EVAL-003), and the exit code says incomplete."""
    model_path, data_path = digits
    run = _mlsec("evaluate", str(model_path), "--data", str(data_path), *limit, "-o", "json")
    assert run.returncode == 3, run.stderr
    report = json.loads(run.stdout)
    (result,) = report["evaluations"]
    assert result["status"] == "error"
    assert expected in result["evidence"]["summary"]
    assert "MLSEC-EVAL-003" in {f["rule_id"] for f in report["findings"]}


def test_the_child_has_no_network_where_the_kernel_allows(digits: tuple[Path, Path]) -> None:
    from mlsec.evaluations import evaluate
    from mlsec.evaluations.sandbox import network_isolation

    report = evaluate(*digits, label_column="y", sample=20)
    assert report.evaluations[0].evidence.facts["network_isolated"] is bool(network_isolation())


def test_wilson_interval() -> None:
    from mlsec.evaluations.adversarial import wilson

    low, high = wilson(0.5, 100)
    assert math.isclose(low, 0.4038, abs_tol=1e-4)
    assert math.isclose(high, 0.5962, abs_tol=1e-4)
    assert wilson(0.0, 0) == (0.0, 1.0)


def test_the_register_gate_reads_the_evaluation(digits: tuple[Path, Path], tmp_path: Path) -> None:
    """The robustness gate (MLSEC-GATE-005, policies/gates/robustness_threshold.rego) decides on the numbers
    at register (serve also wants a signature, which this model lacks)."""
    model_path, data_path = digits
    for eps, allowed in (("0.05", True), ("0.3", False)):
        report = tmp_path / f"eval-{eps}.json"
        _mlsec("evaluate", str(model_path), "--data", str(data_path), "--eps", eps, "--sample", "100", "-o", f"json={report}")
        gate = _mlsec("gate", "--report", str(report), "--stage", "register", "-o", "json")
        decision = json.loads(gate.stdout)
        assert decision["allowed"] is allowed, gate.stdout[-2000:]
        assert ("MLSEC-GATE-005" in gate.stdout) is not allowed


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[int]]:
    """All of digits with 10% of the labels flipped to another class (seeded): the file and the flipped rows."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(len(y), size=len(y) // 10, replace=False))
    noisy = y.copy()
    noisy[rows] = (y[rows] + rng.integers(1, 10, size=len(rows))) % 10
    folder = tmp_path_factory.mktemp("flipped")
    clean, dirty = folder / "digits_clean.csv", folder / "digits_flipped.csv"
    for path, labels in ((clean, y), (dirty, noisy)):
        frame = pd.DataFrame(x / 16.0, columns=[f"px{i}" for i in range(64)])
        frame["y"] = labels
        frame.to_csv(path, index=False)
    return clean, dirty, {int(r) for r in rows}


def test_label_flips_are_found_with_precision_and_recall_above_0_8(
    digits: tuple[Path, Path], flipped: tuple[Path, Path, set[int]], tmp_path: Path
) -> None:
    clean, dirty, rows = flipped
    run = _mlsec("evaluate", str(digits[0]), "--data", str(dirty), "--suite", "poisoning", "-o", f"json={tmp_path / 'r.json'}")
    report = json.loads((tmp_path / "r.json").read_text())
    result = next(e for e in report["evaluations"] if e["name"] == "poisoning/label-issues")
    found = {int(r) for r in result["evidence"]["facts"]["rows_with_label_issues"].split(",")}
    precision, recall = len(found & rows) / len(found), len(found & rows) / len(rows)
    assert precision >= 0.8, precision
    assert recall >= 0.8, recall
    assert "MLSEC-EVAL-004" in {f["rule_id"] for f in report["findings"]}
    assert run.returncode == 0  # medium: a finding to review, not a block at the default --fail-on high
    untouched = _mlsec("evaluate", str(digits[0]), "--data", str(clean), "--suite", "poisoning", "-o", "json")
    baseline = next(e for e in json.loads(untouched.stdout)["evaluations"] if e["name"] == "poisoning/label-issues")
    assert baseline["metrics"]["label_issue_fraction"] < 0.05
    assert "MLSEC-EVAL-004" not in {f["rule_id"] for f in json.loads(untouched.stdout)["findings"]}


def test_an_unknown_suite_is_a_usage_error(digits: tuple[Path, Path]) -> None:
    run = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--suite", "trojans")
    assert run.returncode == 2
    assert "unknown suite(s) trojans" in run.stderr


CNN_FACTORY = FIXTURES / "evaluations"  # digits_cnn.py: the module `--model-factory digits_cnn:make` names


def _cnn_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_cnn", CNN_FACTORY / "digits_cnn.py")
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # leave fixtures/ as committed
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


def _training_split(*, poison: bool) -> tuple[Any, Any]:
    """Digits' training split (inputs scaled to [0, 1]). With `poison`, 10% of its images get a 2x2 white
    patch in the bottom-right corner and the label 0."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split((x / 16.0).astype(np.float32), y, test_size=0.3, random_state=0)
    if poison:
        rows = np.random.default_rng(1).choice(len(x_train), size=len(x_train) // 10, replace=False)
        x_train.reshape(-1, 8, 8)[rows, 6:8, 6:8] = 1.0
        y_train = y_train.copy()
        y_train[rows] = 0
    return x_train, y_train


def _train_cnn(weights: Path, *, poison: bool) -> Path:
    """fixtures/evaluations/digits_cnn.py trained on the training split (seeded, one thread), poisoned or not,
    saved as a state dict."""
    import torch

    x_train, y_train = _training_split(poison=poison)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = _cnn_module().train(x_train, y_train)
    torch.set_num_threads(threads)
    torch.save(model.state_dict(), weights)
    return weights


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The digits CNN, trained and saved as a state dict, and the folder of the module that builds it."""
    pytest.importorskip("torch")
    return _train_cnn(tmp_path_factory.mktemp("cnn") / "cnn.pt", poison=False), CNN_FACTORY


def test_a_pytorch_cnn_is_evaluated_and_an_independent_art_run_agrees(cnn: tuple[Path, Path], digits: tuple[Path, Path]) -> None:
    import numpy as np
    import pandas as pd
    import torch
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    from mlsec.evaluations import evaluate
    from mlsec.evaluations.adversarial import wilson

    weights, folder = cnn
    report = evaluate(
        weights, digits[1], label_column="y", suites=("adversarial", "poisoning"), factory="digits_cnn:make",
        factory_path=folder, input_shape=(1, 8, 8),
    )  # fmt: skip
    robustness, suspicion, labels = sorted(report.evaluations, key=lambda e: e.name)
    assert robustness.status == suspicion.status == "completed"
    assert suspicion.parameters["representation"] == "the input of the last linear layer (Sequential)"
    assert robustness.metrics["clean_accuracy"] > 0.95
    assert labels.parameters["estimator"].startswith("LogisticRegression (stand-in")
    model = _cnn_module().make()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    frame = pd.read_csv(digits[1])
    x, y = frame.drop(columns=["y"]).to_numpy().astype(np.float32), frame["y"].to_numpy()
    pick = np.sort(np.random.default_rng(0).choice(len(x), size=200, replace=False))
    x, y = x[pick].reshape(-1, 1, 8, 8), y[pick]
    estimator = PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(float(x.min()), float(x.max())))
    robust = []
    for attack in (
        FastGradientMethod(estimator, eps=0.1),
        ProjectedGradientDescent(estimator, eps=0.1, eps_step=0.025, max_iter=40, verbose=False),
    ):
        np.random.seed(0)
        torch.manual_seed(0)
        robust.append(float(np.mean(np.argmax(estimator.predict(attack.generate(x=x)), axis=1) == y)))
    white_box = min(robustness.metrics["robust_accuracy_fgsm"], robustness.metrics["robust_accuracy_pgd"])
    low, high = wilson(white_box, 200)
    assert low <= min(robust) <= high
    assert robustness.metrics["robust_accuracy_square"] < robustness.metrics["clean_accuracy"]  # images: Square runs


def test_neural_cleanse_flags_a_backdoored_cnn_and_clears_a_clean_one(cnn: tuple[Path, Path], digits: tuple[Path, Path]) -> None:
    from mlsec.evaluations import evaluate

    clean, folder = cnn
    backdoored = _train_cnn(clean.parent / "backdoored.pt", poison=True)
    indices, triggers = {}, {}
    for weights in (clean, backdoored):
        report = evaluate(
            weights, digits[1], label_column="y", suites=("backdoor",), factory="digits_cnn:make", factory_path=folder,
            input_shape=(1, 8, 8), sample=100, trigger="6:8,6:8=1.0",  # the poison's own patch, as a candidate
        )  # fmt: skip
        by_name = {e.name: e for e in report.evaluations}
        cleanse, candidate = by_name["backdoor/neural-cleanse"], by_name["backdoor/trigger"]
        assert cleanse.status == candidate.status == "completed"
        metrics = cleanse.metrics
        indices[weights.name] = (metrics["anomaly_index"], metrics["suspect_class"], metrics["trigger_norm_ratio"])
        triggers[weights.name] = candidate.metrics
        rules = {f.rule_id for f in report.findings}
        assert ("MLSEC-EVAL-005" in rules) is (weights == backdoored), (weights.name, cleanse.evidence.summary)
        assert ("MLSEC-EVAL-006" in rules) is (weights == backdoored), (weights.name, candidate.evidence.summary)
    assert indices["cnn.pt"][0] < 2.0, indices
    assert indices["backdoored.pt"][0] > 2.0, indices
    assert indices["backdoored.pt"][1] == 0  # the poison's target class
    # the second condition: the backdoor's trigger is far smaller than the median class's, the clean one's is not
    assert indices["backdoored.pt"][2] < 0.6 < indices["cnn.pt"][2], indices
    # the trigger: it takes the backdoored model over and not the clean one; STRIP sees stamped inputs' low entropy
    assert triggers["backdoored.pt"]["backdoor_success_rate"] > 0.9 > 0.2 > triggers["cnn.pt"]["backdoor_success_rate"]
    assert triggers["backdoored.pt"]["strip_detection_rate"] > 0.8
    assert triggers["cnn.pt"]["strip_detection_rate"] < 0.1
    assert triggers["backdoored.pt"]["strip_entropy_triggered_mean"] < triggers["backdoored.pt"]["strip_entropy_clean_mean"] / 2


@pytest.mark.parametrize(
    ("index", "ratio", "flagged"),
    [(6.6, 0.85, False), (6.6, 0.46, True), (1.8, 0.46, False), (2.1, 0.59, True)],
    ids=["collapsed-spread", "backdoor", "low-index", "both-just-over"],
)
def test_neural_cleanse_flags_only_when_index_and_norm_ratio_agree(index: float, ratio: float, flagged: bool) -> None:
    """MLSEC-EVAL-005 needs both conditions of rules/evaluations.toml. The first case is a real clean CNN
    (digits, four classes' trigger norms within 0.3 of the median): index 6.6 from a collapsed MAD."""
    from mlsec.evaluations import _conditions
    from mlsec.rules import load_ruleset

    thresholds = load_ruleset().list("evaluation_thresholds")
    ((rule_id, on_data, met),) = _conditions({"anomaly_index": index, "trigger_norm_ratio": ratio}, thresholds)
    assert (rule_id, on_data) == ("MLSEC-EVAL-005", False)
    assert all(ok for ok, _ in met) is flagged
    assert [why for _, why in met] == ["max_anomaly_index is 2", "max_trigger_norm_ratio is 0.6"]


def test_poisoned_rows_make_their_class_stand_out_as_a_warning(digits: tuple[Path, Path], tmp_path: Path) -> None:
    """The backdoored CNN over its own poisoned training set: class 0 (half of it patched images) splits
    in two in the CNN's last hidden layer, so activation clustering names it, as a low warning that does
    not block; every class is scored in the evidence. The static scan already flags the patch's pixels
    (MLSEC-DATA-007, medium), which refuses the evaluation until a --rules directory moves refuse_at."""
    import pandas as pd

    pytest.importorskip("torch")
    x_train, y_train = _training_split(poison=True)
    training = tmp_path / "poisoned_train.csv"
    frame = pd.DataFrame(x_train, columns=[f"px{i}" for i in range(64)])
    frame["y"] = y_train
    frame.to_csv(training, index=False)
    weights = _train_cnn(tmp_path / "backdoored.pt", poison=True)
    args = ("evaluate", str(weights), "--data", str(training), "--suite", "poisoning", "--model-factory",
            "digits_cnn:make", "--factory-path", str(CNN_FACTORY), "--input-shape", "1,8,8", "-o", "json")  # fmt: skip
    refused = _mlsec(*args)
    assert refused.returncode == 1
    assert "MLSEC-DATA-007" in json.loads(refused.stdout)["evaluations"][0]["evidence"]["summary"]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "vouch.toml").write_text('[lists.evaluation_thresholds]\nrefuse_at = "high"\n')
    run = _mlsec(*args, "--rules", str(rules))
    assert run.returncode == 0, run.stderr  # a warning never blocks at the default --fail-on
    report = json.loads(run.stdout)
    suspicion = next(e for e in report["evaluations"] if e["name"] == "poisoning/class-suspicion")
    facts = suspicion["evidence"]["facts"]
    assert (facts["suspect_class"], facts["suspect_method"]) == ("0", "activation-clustering"), facts
    assert suspicion["metrics"]["class_suspicion_z"] > 3.0
    assert len(facts["cluster_silhouette"].split(",")) == len(facts["spectral_z"].split(",")) == 10
    (warning,) = [f for f in report["findings"] if f["rule_id"] == "MLSEC-EVAL-007"]
    assert warning["severity"] == "low"
    assert warning["location"]["path"] == str(training)  # the finding is on the dataset


def test_class_suspicion_scores_every_class_of_string_labels(digits: tuple[Path, Path]) -> None:
    """Labels read from a CSV of names arrive as an object array of str: every class is scored by name."""
    import joblib
    import numpy as np
    import pandas as pd

    from mlsec.evaluations import poisoning

    frame = pd.read_csv(digits[1])
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    names = np.array([words[v] for v in frame["y"]], dtype=object)
    result = poisoning.class_suspicion(joblib.load(digits[0]), frame.drop(columns=["y"]).to_numpy(), names, {"seed": 0})
    assert result["status"] == "completed"
    scored = dict(part.split(":") for part in result["facts"]["cluster_silhouette"].split(","))
    assert sorted(scored) == sorted(set(names))
    assert result["facts"]["suspect_class"] in set(names)


def test_suite_all_runs_every_suite(digits: tuple[Path, Path]) -> None:
    table = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--suite", "all", "--sample", "30")
    assert table.returncode == 0, table.stderr
    # the terminal table says what was measured, not only the findings
    assert "EVALUATION  adversarial/Linf/eps=0.1  completed: worst-case robust accuracy" in table.stdout
    assert "EVALUATION  backdoor/neural-cleanse  skipped: Neural Cleanse needs a PyTorch model" in table.stdout
    assert table.stdout.rstrip().endswith("4 evaluations (3 completed, 1 skipped)")
    run = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--suite", "all", "--sample", "30", "-o", "json")
    assert run.returncode == 0, run.stderr
    names = sorted(e["name"] for e in json.loads(run.stdout)["evaluations"])
    assert names == ["adversarial/Linf/eps=0.1", "backdoor/neural-cleanse", "poisoning/class-suspicion",
                     "poisoning/label-issues"]  # fmt: skip
    cleanse = next(e for e in json.loads(run.stdout)["evaluations"] if e["name"] == "backdoor/neural-cleanse")
    assert cleanse["status"] == "skipped"  # a logistic regression has no torch gradients
    suspicion = next(e for e in json.loads(run.stdout)["evaluations"] if e["name"] == "poisoning/class-suspicion")
    assert suspicion["parameters"]["representation"] == "input features"


def test_a_whole_module_loads_only_when_the_user_vouches_for_its_classes(
    cnn: tuple[Path, Path], digits: tuple[Path, Path], tmp_path: Path
) -> None:
    """`torch.save(model)` pickles the module's classes: the static scan flags each import (MLSEC-PICKLE-005),
    so the evaluation is refused, until a --rules directory allows torch.nn's modules; then the child
    unpickles the module (the digits CNN, the state dict's weights) and attacks it."""
    import torch

    module = _cnn_module().make()
    module.load_state_dict(torch.load(cnn[0], weights_only=True))
    whole = tmp_path / "whole.pt"
    torch.save(module, whole)
    args = ("evaluate", str(whole), "--data", str(digits[1]), "--input-shape", "1,8,8", "--sample", "50", "--eps", "0.02",
            "-o", "json")  # fmt: skip
    refused = _mlsec(*args)
    assert refused.returncode == 1
    (result,) = json.loads(refused.stdout)["evaluations"]
    assert result["status"] == "refused"
    assert "MLSEC-PICKLE-005" in result["evidence"]["summary"]
    assert "allow them in a --rules directory" in result["evidence"]["summary"]  # the way forward, said
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "torch_modules.toml").write_text(
        '[[lists.pickle_safe_patterns]]\nmodule = "torch.nn.modules"\nname = "^[A-Z][A-Za-z0-9]*$"\n'
    )
    vouched = _mlsec(*args, "--rules", str(rules))
    assert vouched.returncode == 0, vouched.stderr
    (result,) = json.loads(vouched.stdout)["evaluations"]
    assert result["status"] == "completed"
    assert result["metrics"]["clean_accuracy"] > 0.9
    assert "fgsm" in result["parameters"]["attacks"]  # a torch module: white-box attacks ran
    assert result["parameters"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    # a state dict without --model-factory is said plainly
    plain = _mlsec("evaluate", str(cnn[0]), "--data", str(digits[1]), "--sample", "20", "-o", "json")
    (result,) = json.loads(plain.stdout)["evaluations"]
    assert result["status"] == "error"
    assert "a state dict needs --model-factory" in result["evidence"]["summary"]


def test_a_torchscript_model_is_evaluated_once_its_medium_findings_are_vouched_for(
    cnn: tuple[Path, Path], digits: tuple[Path, Path], tmp_path: Path
) -> None:
    """A TorchScript archive's classes are its own compiled code (MLSEC-PICKLE-005, medium), so it is refused
    at the default bar; with refuse_at moved to high in a --rules directory, the child loads it with
    torch.jit.load and attacks it as a torch module (white-box)."""
    import warnings

    import torch

    module = _cnn_module().make()
    module.load_state_dict(torch.load(cnn[0], weights_only=True))
    scripted = tmp_path / "cnn_script.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; archives of it are still met
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module.eval()).save(str(scripted))
    args = ("evaluate", str(scripted), "--data", str(digits[1]), "--input-shape", "1,8,8", "--sample", "50", "--eps", "0.02",
            "-o", "json")  # fmt: skip
    refused = _mlsec(*args)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["evaluations"][0]["status"] == "refused"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "vouch.toml").write_text('[lists.evaluation_thresholds]\nrefuse_at = "high"\n')
    vouched = _mlsec(*args, "--rules", str(rules))
    assert vouched.returncode == 0, vouched.stderr
    (result,) = json.loads(vouched.stdout)["evaluations"]
    assert result["status"] == "completed"
    assert result["metrics"]["clean_accuracy"] > 0.9
    assert "fgsm" in result["parameters"]["attacks"]


def test_device_cuda_without_a_gpu_is_an_error_that_says_so(digits: tuple[Path, Path]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--device", "cuda", "--sample", "20", "-o", "json")
    (result,) = json.loads(run.stdout)["evaluations"]
    assert result["status"] == "error"
    assert "torch sees no CUDA device" in result["evidence"]["summary"]
    assert run.returncode == 3


def test_the_gpu_benchmark_says_plainly_where_there_is_no_gpu() -> None:
    """benchmarks/bench_evaluations_gpu.py compares a GPU's evaluation with the CPU's (README: Device): CI has no
    GPU, so here it can only start, import what it uses, and say there is none (exit 2)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run the benchmark itself")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_evaluations_gpu.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert (run.returncode, run.stdout.strip()) == (2, "torch sees no GPU here"), run.stderr[-2000:]


def test_neural_cleanse_skips_a_model_without_input_gradients(digits: tuple[Path, Path]) -> None:
    from mlsec.evaluations import evaluate

    (result,) = evaluate(*digits, label_column="y", suites=("backdoor",)).evaluations
    assert result.status == "skipped"
    assert "needs a PyTorch model" in result.evidence.summary


def test_an_evaluation_is_recorded_in_the_audit_ledger(digits: tuple[Path, Path], tmp_path: Path) -> None:
    from mlsec.ledger import Ledger

    ledger = tmp_path / "audit.db"
    model_path, data_path = digits
    run = _mlsec("evaluate", str(model_path), "--data", str(data_path), "--sample", "50", "--ledger", str(ledger), "-o", "json")
    assert run.returncode == 0, run.stderr
    with Ledger(str(ledger)) as opened:
        (entry,) = opened.entries()
        assert opened.verify().ok
    assert entry.kind == "evaluate"
    (evaluation,) = entry.result["evaluations"]
    assert evaluation["status"] == "completed"
    assert 0 <= evaluation["robust_accuracy"] <= evaluation["clean_accuracy"]
    assert json.loads(run.stdout)["evaluations"][0]["artifact_sha256"] in entry.subjects.values()


def test_an_onnx_model_is_attacked_as_a_black_box(digits: tuple[Path, Path], tmp_path: Path) -> None:
    """A logistic regression written as an ONNX graph by onnx itself, run through onnxruntime in the child:
    no gradients, so Square and HopSkipJump only; both must bite, and the result must name them."""
    pytest.importorskip("onnxruntime")
    import joblib
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    fitted = joblib.load(digits[0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Add", ["z", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "logreg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        [numpy_helper.from_array(fitted.coef_.T.astype(np.float32), "W"),
         numpy_helper.from_array(fitted.intercept_.astype(np.float32), "B")],
    )  # fmt: skip
    model = tmp_path / "logreg.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    run = _mlsec("evaluate", str(model), "--data", str(digits[1]), "--input-shape", "1,8,8", "--sample", "100", "-o", "json")
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(run.stdout)["evaluations"]
    assert result["status"] == "completed"
    assert result["metrics"]["clean_accuracy"] > 0.9
    assert sorted(result["parameters"]["attacks"]) == ["hopskipjump", "square"]
    assert result["metrics"]["robust_accuracy_square"] < result["metrics"]["clean_accuracy"]
    assert result["metrics"]["robust_accuracy"] == min(result["metrics"]["robust_accuracy_square"],
                                                       result["metrics"]["robust_accuracy_hopskipjump"])  # fmt: skip


def test_a_malformed_trigger_is_a_usage_error(digits: tuple[Path, Path]) -> None:
    run = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--suite", "backdoor", "--trigger", "6:8,6:8")
    assert run.returncode == 2
    assert "expected R0:R1,C0:C1=VALUE" in run.stderr
    words = _mlsec("evaluate", str(digits[0]), "--data", str(digits[1]), "--suite", "backdoor", "--trigger", "a:b=1")
    assert words.returncode == 2
    assert "--trigger" in words.stderr  # not numbers: still the trigger's problem, not the suite's


def test_a_pipeline_stage_evaluates_before_it_gates(digits: tuple[Path, Path], tmp_path: Path) -> None:
    """mlsec.yaml's `evaluate` step: the stage's own scan clears the files, the evaluation runs in the sandbox,
    the ledger records it between the scan and the gate, and the gate decides on it."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "data").mkdir()
    shutil.copyfile(digits[0], repo / "models" / "logreg.joblib")
    shutil.copyfile(digits[1], repo / "data" / "holdout.csv")
    (repo / "mlsec.yaml").write_text(
        "version: 1\n"
        "artifacts:\n"
        "  models: [models/*.joblib]\n"
        "  data: [data/*.csv]\n"
        "stages:\n"
        "  register:\n"
        "    scan: [models, data]\n"
        "    evaluate: {models: models, data: data, label_column: y, suites: [adversarial], eps: [0.3], sample: 50}\n"
        "    gate: {stage: register}\n"
        "ledger: audit.db\n"
        "outputs: {dir: out, formats: [json, html]}\n"
    )
    run = subprocess.run([sys.executable, "-m", "mlsec", "run", "--stage", "register"], cwd=repo, capture_output=True,
                         text=True, check=False, timeout=600)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr  # eps 0.3 breaks it: the gate denies
    report = json.loads((repo / "out" / "register" / "report.json").read_text())
    (evaluation,) = report["evaluations"]
    assert evaluation["status"] == "completed"
    assert evaluation["metrics"]["robust_accuracy"] < 0.5
    decision = json.loads((repo / "out" / "register" / "decision.json").read_text())
    assert "MLSEC-GATE-005" in json.dumps(decision["denies"])
    log = subprocess.run([sys.executable, "-m", "mlsec", "audit", "log", "--ledger", "audit.db", "--json"], cwd=repo,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert [json.loads(line)["kind"] for line in log.stdout.splitlines()] == ["scan", "evaluate", "gate"]
    assert "Evaluation" in (repo / "out" / "register" / "report.html").read_text()
