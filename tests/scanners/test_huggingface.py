"""Hugging Face repositories: remote code, chat templates, and the cache / clone layouts that name a revision."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlsec import scan
from mlsec.outputs.mlbom import render
from tests.conftest import fixture

REV = "3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a"
SNAPSHOT = Path(fixture(f"huggingface/models--acme--tiny-llm/snapshots/{REV}"))


def _symlinked_cache(root: Path) -> Path:
    """The layout huggingface_hub writes: snapshot files are relative links to content-addressed blobs/."""
    repo = root / "models--acme--tiny-llm"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    for source in sorted(SNAPSHOT.iterdir()):
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / source.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return repo


def test_remote_code_names_the_classes_and_hashes_the_code_present() -> None:
    (finding,) = scan([str(SNAPSHOT / "config.json")]).findings
    assert finding.rule_id == "MLSEC-HF-001"
    facts = finding.evidence.facts
    assert facts["classes"] == "configuration_tiny.TinyConfig, modeling_tiny.TinyModel"
    code = hashlib.sha256((SNAPSHOT / "modeling_tiny.py").read_bytes()).hexdigest()
    assert facts["python_files"] == f"modeling_tiny.py (sha256 {code})"
    assert facts["missing_python_files"] == "configuration_tiny.py"


def test_code_from_another_repository_is_named() -> None:
    (finding,) = scan([fixture("huggingface/plain-repo/config.json")]).findings
    assert finding.evidence.facts["other_repositories"] == "other-org/shared-code"
    assert "fetched at load time: modeling_shared.py" in finding.evidence.summary


def test_chat_templates_in_every_file_that_carries_one() -> None:
    report = scan([fixture("huggingface/plain-repo")])
    by_file = {Path(f.location.path).name: f for f in report.findings}
    assert by_file["chat_template.jinja"].rule_id == "MLSEC-HF-002"
    assert "__subclasses__" in by_file["chat_template.jinja"].evidence.facts["constructs"]
    assert by_file["chat_template.json"].rule_id == "MLSEC-HF-003"
    assert by_file["chat_template.json"].evidence.facts["key"] == "chat_template[tool_use]"


def test_snapshot_files_carry_repository_and_revision() -> None:
    report = scan([str(SNAPSHOT)])
    weights = next(a for a in report.artifacts if a.path.endswith("model.safetensors"))
    assert (weights.facts["hf_repository"], weights.facts["hf_revision"]) == ("acme/tiny-llm", REV)
    bom = json.loads(render(report))
    purls = {c.get("purl") for c in bom["components"] if c["type"] == "machine-learning-model"}
    assert purls == {f"pkg:huggingface/acme/tiny-llm@{REV}"}


def test_symlinked_cache_is_scanned_under_snapshot_names_once(tmp_path: Path) -> None:
    repo = _symlinked_cache(tmp_path / "hub")
    orphan = repo / "blobs" / "0rphan"
    shutil.copyfile(fixture("models/malicious/gguf_chat_template_ssti.gguf"), orphan)
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (repo / "snapshots" / REV / "escape.json").symlink_to(outside)

    report = scan([str(tmp_path / "hub")])
    scanned = sorted(Path(a.path).relative_to(repo).as_posix() for a in report.artifacts if a.member is None)
    names = sorted(f"snapshots/{REV}/{p.name}" for p in SNAPSHOT.iterdir())
    assert scanned == sorted([*names, "blobs/0rphan", "refs/main"])  # each blob once, the orphan too
    assert {f.rule_id for f in report.findings} == {"MLSEC-HF-001", "MLSEC-HF-002", "MLSEC-GGUF-002"}
    config = next(a for a in report.artifacts if a.path.endswith("config.json"))
    assert config.facts["hf_revision"] == REV
    assert [s.path for s in report.skipped if "symbolic link" in s.reason] == [str(repo / "snapshots" / REV / "escape.json")]


def test_a_snapshot_named_directly_follows_its_links_into_blobs(tmp_path: Path) -> None:
    repo = _symlinked_cache(tmp_path)
    report = scan([str(repo / "snapshots" / REV)])
    assert {f.rule_id for f in report.findings} == {"MLSEC-HF-001", "MLSEC-HF-002"}
    assert not [s for s in report.skipped if "symbolic link" in s.reason]


def test_links_out_of_an_unrelated_folder_are_still_not_followed(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "config.json").symlink_to(SNAPSHOT / "config.json")
    report = scan([str(tmp_path / "repo")])
    assert report.findings == ()
    assert [s.reason for s in report.skipped] == ["symbolic link not followed"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_clone_of_a_hub_repository_names_origin_and_head(tmp_path: Path) -> None:
    clone = tmp_path / "tiny-llm"
    shutil.copytree(SNAPSHOT, clone)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=clone, env=env, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("remote", "add", "origin", "https://user:hf_secret@huggingface.co/acme/tiny-llm")
    git("add", ".")
    git("commit", "-q", "-m", "weights")
    git("pack-refs", "--all")  # the ref now lives in packed-refs, as after a fresh clone
    head = git("rev-parse", "HEAD")
    report = scan([str(clone / "model.safetensors")])
    assert report.artifacts[0].facts["hf_repository"] == "acme/tiny-llm"
    assert report.artifacts[0].facts["hf_revision"] == head
    assert "hf_secret" not in json.dumps(dict(report.artifacts[0].facts))


def test_hf_download_local_dir_metadata_names_the_revision(tmp_path: Path) -> None:
    shutil.copytree(SNAPSHOT, tmp_path / "model")
    meta = tmp_path / "model" / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "model.safetensors.metadata").write_text(f'{REV}\n"etag"\n1732300000.0\n')
    report = scan([str(tmp_path / "model" / "model.safetensors")])
    assert report.artifacts[0].facts["hf_revision"] == REV


def test_each_file_of_a_local_dir_has_its_own_revision_and_a_plain_folder_shares_one(tmp_path: Path) -> None:
    """Facts are remembered per folder only where they are the folder's (a git clone's), never a local dir's."""
    shutil.copytree(SNAPSHOT, tmp_path / "model")
    meta = tmp_path / "model" / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    other = "0" * 40
    (meta / "model.safetensors.metadata").write_text(f"{REV}\n")
    (meta / "config.json.metadata").write_text(f"{other}\n")
    facts = {Path(a.path).name: dict(a.facts) for a in scan([str(tmp_path / "model")]).artifacts if not a.member}
    assert facts["model.safetensors"].get("hf_revision") == REV
    assert facts["config.json"].get("hf_revision") == other
    assert [f for f in facts.values() if "hf_revision" not in f]  # a file without metadata says nothing
