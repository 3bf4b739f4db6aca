"""Keras configs: each test names the loading behaviour an attacker uses; configs are data, never loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsec import load_ruleset, scan
from tests.conftest import fixture


def _config(tmp_path: Path, *layers: dict) -> str:
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": list(layers)}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def _fn(module: str, name: str) -> dict:
    return {"module": module, "class_name": "function", "config": name, "registered_name": "function"}


def _dense(**extra: object) -> dict:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": "d", "units": 2, **extra},
        "registered_name": None,
    }


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "exec"), ("subprocess", "Popen"), ("importlib", "import_module"), ("keras.utils", "get_file")],
)
def test_callables_that_act_on_load_are_critical(tmp_path: Path, module: str, name: str) -> None:
    (finding,) = scan([_config(tmp_path, _dense(activation=_fn(module, name)))]).findings
    assert (finding.rule_id, finding.evidence.facts["callable"]) == ("MLSEC-KERAS-002", f"{module}.{name}")


def test_keras_own_functions_and_classes_are_allowed(tmp_path: Path) -> None:
    layer = _dense(
        activation=_fn("keras.activations", "relu"),
        kernel_initializer={"module": "keras.initializers", "class_name": "GlorotUniform", "config": {}},
    )
    assert scan([_config(tmp_path, layer)]).findings == ()


def test_a_lambda_function_outside_a_lambda_layer_is_found(tmp_path: Path) -> None:
    lam = {"class_name": "__lambda__", "config": {"code": "4wEAAAAA", "defaults": None, "closure": None}}
    (finding,) = scan([_config(tmp_path, _dense(activation=lam))]).findings
    assert finding.rule_id == "MLSEC-KERAS-001"


def test_allowlisting_your_package_silences_the_module_finding(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ours.toml").write_text('[lists.keras_safe_modules]\nmodules = ["acme_layers"]\n')
    target = fixture("models/suspicious/keras_foreign_module.keras")
    assert [f.rule_id for f in scan([target]).findings] == ["MLSEC-KERAS-003"]
    assert scan([target], ruleset=load_ruleset([rules])).findings == ()


def test_json_that_is_not_a_keras_config_is_skipped_not_judged(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    path.write_text(json.dumps({"name": "x", "module": "os", "class_name": "function"}))
    report = scan([str(path)])
    assert report.findings == ()


def test_legacy_h5_facts_name_the_keras_version() -> None:
    facts = scan([fixture("models/benign/keras_dense.h5")]).artifacts[0].facts
    assert facts["model_class"] == "Sequential"
    assert facts["keras_version"].startswith("3.")
