"""The GitHub Action's step, run as the runner runs it: a subprocess with real GitHub files."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlsec.signing import keygen
from tests.conftest import FIXTURES, ROOT

ACTION = ROOT / "github-action"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-2.1.0.json").read_text())
spec = importlib.util.spec_from_file_location("run_action", ACTION / "run_action.py")
run_action = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_action)


def _run(workspace: Path, tmp_path: Path, **inputs: str) -> tuple[int, str, dict[str, str], str]:
    (tmp_path / "event.json").write_text(json.dumps({"pull_request": {"number": 7}}))
    files = {name: tmp_path / name for name in ("output.txt", "summary.md")}
    for f in files.values():
        f.write_text("")
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(files["output.txt"]),
        "GITHUB_STEP_SUMMARY": str(files["summary.md"]),
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(tmp_path),
        **{"MLSEC_INPUT_" + k.upper(): v for k, v in inputs.items()},
    }
    done = subprocess.run(
        [sys.executable, str(ACTION / "run_action.py")], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    outputs = dict(re.findall(r"^([\w-]+)=(.*)$", files["output.txt"].read_text(), re.MULTILINE))
    return done.returncode, done.stdout + done.stderr, outputs, files["summary.md"].read_text()


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    workspace = tmp_path / "repo"
    shutil.copytree(FIXTURES / "examples" / "demo", workspace / "models")
    return workspace


def test_denied_case_writes_sarif_summary_annotations_outputs(demo: Path, tmp_path: Path) -> None:
    code, log, outputs, summary = _run(demo, tmp_path, PATHS="models", STAGE="pr", SARIF="mlsec.sarif")
    assert code == 1, log
    assert outputs["decision"] == "denied"
    assert json.loads(outputs["findings"])["critical"] == 1
    assert outputs["findings-blocking"] == "1"
    sarif = json.loads(Path(outputs["sarif"]).read_text())
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    assert "## mlsec gate: ❌ denied at stage `pr`" in summary
    assert "| critical | MLSEC-PICKLE-001 |" in summary
    assert "::error file=models/downloaded_model.pkl,title=MLSEC-PICKLE-001 (critical)::" in log


def test_allowed_case_exits_0(tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    shutil.copy(FIXTURES / "models" / "benign" / "mlp.onnx", workspace / "model.onnx")
    code, log, outputs, summary = _run(workspace, tmp_path, PATHS="model.onnx", STAGE="pr", SARIF="out.sarif", FAIL_ON="high")
    assert code == 0, log
    assert outputs["decision"] == "allowed"
    assert outputs["findings-blocking"] == "0"
    assert "::error" not in log
    assert "allowed at stage `pr`" in summary


def test_mlbom_and_signing_with_a_key_from_the_workspace(demo: Path, tmp_path: Path) -> None:
    keygen(demo / "ci.key", tmp_path / "ci.pub")
    code, log, outputs, _ = _run(demo, tmp_path, PATHS="models", STAGE="pr", MLBOM="mlbom.cdx.json", SIGN="ci.key")
    assert code == 1, log
    assert json.loads(Path(outputs["mlbom"]).read_text())["bomFormat"] == "CycloneDX"
    assert (demo / "mlbom.cdx.json.sigstore.json").is_file()
    assert (demo / "mlsec-report.json.sigstore.json").is_file()
    from mlsec.signing import verify

    assert verify(demo / "mlbom.cdx.json", demo / "mlbom.cdx.json.sigstore.json", key=tmp_path / "ci.pub").kind == "bom"


def test_stage_none_decides_by_fail_on_and_unused_inputs_are_reported(demo: Path, tmp_path: Path) -> None:
    code, log, outputs, summary = _run(
        demo, tmp_path, PATHS="models", STAGE="none", FAIL_ON="critical", REFERENCE_DATASET="data/ref.csv"
    )
    assert code == 1
    assert outputs["decision"] == "denied"
    assert "::warning title=mlsec::reference-dataset 'data/ref.csv' is not used yet" in log
    assert "is not used yet" in summary


def test_truncated_sarif_keeps_the_most_severe_and_says_so(tmp_path: Path) -> None:
    results = [{"ruleId": "R", "level": level, "message": {"text": "x" * 100}} for level in ["note"] * 20 + ["error"] * 5]
    path = tmp_path / "s.sarif"
    original = json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "mlsec"}}, "results": results}]})
    path.write_text(original)
    assert run_action.truncate_sarif(path, max_results=10) == 15
    doc = json.loads(path.read_text())
    assert [r["level"] for r in doc["runs"][0]["results"]][:5] == ["error"] * 5
    assert "15 of 25 results omitted" in doc["runs"][0]["invocations"][0]["toolExecutionNotifications"][-1]["message"]["text"]
    path.write_text(original)
    assert run_action.truncate_sarif(path, max_results=10, max_bytes=1500) > 15
    assert len(path.read_bytes()) <= 1500


def test_annotation_values_are_escaped() -> None:
    assert run_action.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert run_action.escape_data("50%\r\nnext") == "50%25%0D%0Anext"


ACTION_YML = yaml.safe_load((ACTION / "action.yml").read_text())


def test_every_input_is_read_passed_by_env_and_documented() -> None:
    declared = set(ACTION_YML["inputs"])
    assert declared == set(run_action.INPUTS)
    step_env = next(s for s in ACTION_YML["runs"]["steps"] if s.get("id") == "mlsec")["env"]
    for name in declared:
        assert step_env["MLSEC_INPUT_" + name.upper().replace("-", "_")] == "${{ inputs." + name + " }}"
        assert f"| `{name}` |" in (ACTION / "README.md").read_text()
    for step in ACTION_YML["runs"]["steps"]:
        assert "${{ inputs." not in step.get("run", ""), "inputs must never be interpolated into a script"
    for name in ACTION_YML["outputs"]:
        assert f"| `{name}` |" in (ACTION / "README.md").read_text()


def test_action_and_workflows_validate_and_pin_third_party_actions_by_sha() -> None:
    schemas = ROOT / "tests" / "schemas"
    jsonschema.Draft7Validator(json.loads((schemas / "github-action.json").read_text())).validate(ACTION_YML)
    workflow_schema = json.loads((schemas / "github-workflow.json").read_text())
    workflows = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
    assert len(workflows) == 3
    documents = [yaml.safe_load(w.read_text()) for w in workflows] + [ACTION_YML]
    for path, doc in zip([*workflows, ACTION / "action.yml"], documents, strict=True):
        if path.parent.name == "workflows":
            doc = {("on" if k is True else k): v for k, v in doc.items()}  # YAML 1.1 reads `on:` as True
            jsonschema.Draft7Validator(workflow_schema).validate(doc)
        for uses in re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)", path.read_text(), re.MULTILINE):
            assert uses.startswith("./") or re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), (
                f"{path.name}: {uses} is not pinned by SHA"
            )
