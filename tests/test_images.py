"""Container images: final file system through whiteouts, layer attribution, digests, config rules, platforms."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlsec import scan
from mlsec.dependencies.vulndb import import_records
from mlsec.inputs.images import ImageOptions
from tests.conftest import FIXTURES, fixture

IMAGES = ["images/model-server.docker.tar", "images/model-server.oci.tar", "images/multiarch-layout"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "osv.sqlite"
    import_records(FIXTURES / "advisories", path)
    return path


def _pickle_findings(report) -> list:
    return [f for f in report.findings if f.rule_id.startswith("MLSEC-PICKLE")]


@pytest.mark.parametrize("rel", IMAGES[:2])
def test_a_pickle_deleted_in_layer_3_is_not_in_the_final_file_system(rel: str) -> None:
    assert _pickle_findings(scan([fixture(rel)])) == []


@pytest.mark.parametrize("rel", IMAGES[:2])
def test_all_layers_finds_it_and_says_which_layer(rel: str) -> None:
    (finding,) = [
        f
        for f in _pickle_findings(scan([fixture(rel)], image_options=ImageOptions(all_layers=True)))
        if f.rule_id == "MLSEC-PICKLE-001"
    ]
    assert "layer 2 sha256:" in finding.location.member
    assert "(not in the final file system)" in finding.location.member
    assert finding.location.member.endswith("models/classifier.pkl")


@pytest.mark.parametrize("rel", IMAGES[:2])
def test_vulnerable_package_and_root_user_are_reported_with_layer_digests(rel: str, db: Path) -> None:
    report = scan([fixture(rel)], vulndb=db)
    vulns = [f for f in report.findings if f.evidence.facts.get("package") == "pyyaml"]
    assert {str(f.evidence.facts["advisory"]) for f in vulns} == {"PYSEC-2020-96", "PYSEC-2021-142"}
    assert all("layer 1 sha256:" in f.location.member for f in vulns)
    assert [f.rule_id for f in report.findings if f.rule_id == "MLSEC-IMAGE-003"] == ["MLSEC-IMAGE-003"]
    assert not report.errors


def test_debian_owned_python_packages_are_skipped_and_os_packages_inventoried(db: Path) -> None:
    report = scan([fixture("images/model-server.oci.tar")], vulndb=db)
    assert any("dpkg owns it" in s.reason for s in report.skipped)
    purls = {a.member for a in report.artifacts if a.kind.value == "package"}
    assert {"pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64", "pkg:pypi/pyyaml@5.3"} <= purls
    assert "pkg:deb/debian/removed-tool@1.0" not in purls


def test_tampered_layer_is_a_digest_and_diff_id_mismatch() -> None:
    rules = {f.rule_id for f in scan([fixture("images/tampered.oci.tar")]).findings}
    assert {"MLSEC-IMAGE-001", "MLSEC-IMAGE-002"} <= rules


def test_secrets_are_named_never_shown() -> None:
    (secret,) = [f for f in scan([fixture("images/model-server.docker.tar")]).findings if f.rule_id == "MLSEC-IMAGE-004"]
    assert secret.evidence.facts["where"] == "Env HF_TOKEN"
    assert "hf_" not in secret.message
    assert "Zx9" not in str(secret.evidence.facts)


def test_multi_arch_layout_scans_every_platform_or_the_one_asked(tmp_path: Path) -> None:
    every = scan([fixture("images/multiarch-layout")])
    labels = {a.member.split(" → ")[0] for a in every.artifacts if a.member and "→" in a.member}
    assert labels == {"linux/amd64", "linux/arm64"}
    one = scan([fixture("images/multiarch-layout")], image_options=ImageOptions(platform="linux/arm64"))
    assert {a.member.split(" → ")[0] for a in one.artifacts if a.member and "→" in a.member} == {"linux/arm64"}


def test_an_image_is_an_image_artifact() -> None:
    top = scan([fixture("images/model-server.docker.tar")]).artifacts[0]
    assert (top.kind.value, top.format, top.member) == ("image", "oci-image", None)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (.ci/run installs it)")
@pytest.mark.parametrize(("transport", "rel"), [("docker-archive", IMAGES[0]), ("oci-archive", IMAGES[1]), ("oci", IMAGES[2])])
def test_fixtures_are_valid_images_for_skopeo(transport: str, rel: str) -> None:
    ref = f"{transport}:{fixture(rel)}" + (":arm64" if transport == "oci" else "")
    args = ["skopeo", "inspect", "--config", ref]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"User": ""' in done.stdout or '"Env"' in done.stdout


def test_options_reach_images_found_inside_a_directory() -> None:
    report = scan([fixture("images")], image_options=ImageOptions(all_layers=True))
    deleted = [f for f in report.findings if f.rule_id == "MLSEC-PICKLE-001"]
    assert {f.location.path.rsplit("/", 1)[-1] for f in deleted} >= {
        "model-server.docker.tar",
        "model-server.oci.tar",
        "multiarch-layout",
    }
    layout = [a for a in report.artifacts if a.path.endswith("multiarch-layout") and a.member is None]
    assert [a.kind.value for a in layout] == ["image"]


def test_a_layout_inside_a_tree_is_one_image_in_walk_order(tmp_path: Path) -> None:
    """The walk tells a layout from the listing that reaches it: its files come before its subdirectories, the
    layout among them in name order, and a folder with an `oci-layout` but no `index.json` is plain files."""
    shutil.copytree(fixture("images/multiarch-layout"), tmp_path / "b-layout")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "z.txt").write_text("beside\n")
    report = scan([str(tmp_path)])
    top = [(Path(a.path).relative_to(tmp_path).as_posix(), a.kind.value) for a in report.artifacts if a.member is None]
    assert top == [("z.txt", "other"), ("a-folder/oci-layout", "other"), ("b-layout", "image")]


@pytest.mark.parametrize("digest", ["sha256:../../../etc/passwd", "md5:abc"])
def test_a_layout_cannot_point_outside_itself(tmp_path: Path, digest: str) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(fixture("images/multiarch-layout"), layout)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1}],
    }
    (layout / "index.json").write_text(__import__("json").dumps(index))
    report = scan([str(layout)])
    assert report.findings == ()
    assert "malformed digest" in report.errors[0].reason


def test_a_docker_manifest_cannot_point_outside_the_archive(tmp_path: Path) -> None:
    import io
    import json
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = json.dumps([{"Config": "../../etc/passwd", "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    path = tmp_path / "evil.tar"
    path.write_bytes(buf.getvalue())
    report = scan([str(path)])
    assert "points outside the image" in report.errors[0].reason
