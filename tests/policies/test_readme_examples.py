"""The README's policy examples are real: they load, their tests pass, and they decide as described."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from mlsec.cli import main
from mlsec.gate import gate
from mlsec.policy_engines import PolicySet, open_engine
from tests.conftest import ROOT
from tests.policies.conftest import gate_input, report

BLOCKS = re.findall(r"```rego\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def _write_examples(directory: Path) -> list[str]:
    packages = []
    for i, block in enumerate(BLOCKS):
        package = re.search(r"^package ([\w.]+)", block, re.MULTILINE).group(1)
        name = package.rsplit(".", 1)[-1]
        (directory / f"{i}_{name}.rego").write_text(block)  # a test package's file ends in _test.rego
        packages.append(package)
    return packages


def test_readme_has_three_gates_and_a_test() -> None:
    assert len(BLOCKS) == 4


def test_readme_examples_load_lint_and_pass_their_tests(tmp_path: Path) -> None:
    packages = _write_examples(tmp_path)
    assert "mlsec.gates.acme_no_pickles_test" in packages
    result = CliRunner().invoke(main, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "2 passed, 0 failed"


def test_readme_example_gates_decide_as_described(tmp_path: Path) -> None:
    _write_examples(tmp_path)
    policies = PolicySet.load([tmp_path])
    engine = open_engine(policies)
    pickle_model = {
        "path": "m.pkl",
        "member": None,
        "kind": "model",
        "format": "pickle",
        "sha256": "a" * 64,
        "size": 1,
        "parent_sha256": None,
        "facts": {},
    }
    decision = gate(gate_input(report(artifacts=(pickle_model,)), stage="serve"), engine, gate_ids=policies.gate_ids)
    assert any(d.gate_id == "ACME-001" for d in decision.denies)
    assert gate(gate_input(report(artifacts=(pickle_model,)), stage="pr"), engine, gate_ids=policies.gate_ids).allowed
