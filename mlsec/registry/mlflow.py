"""The MLflow model registry, through MLflow's own client: list versions, fetch their artifacts into
bounded temporary storage, tag verdicts, set aliases. Any tracking URI MLflow accepts works: a SQLite
file (`sqlite:///mlflow.db`), a server (`http://127.0.0.1:5000`), Databricks.

Needs the `mlflow` extra. Fetching checks the artifact listing's sizes before anything is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsec.errors import InputError, LimitExceeded, MlsecError


class RegistryError(MlsecError):
    """The registry cannot be reached, or has no such model, version or alias."""


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    version: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class MlflowRegistry:
    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        try:
            import mlflow  # noqa: PLC0415, F401 - the extra
            from mlflow import MlflowClient  # noqa: PLC0415
        except ImportError:
            raise RegistryError("the MLflow registry needs the mlflow extra: pip install 'mlsec[mlflow]'") from None
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        self.registry_uri = registry_uri or self.tracking_uri
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def versions(self, model: str | None = None, version: str | None = None, alias: str | None = None) -> list[Version]:
        """The versions asked for: one (by number or alias), every version of `model`, or every version."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        try:
            if model and alias:
                return [self._version(self._client.get_model_version_by_alias(model, alias))]
            if model and version:
                return [self._version(self._client.get_model_version(model, version))]
            query = f"name='{model}'" if model else ""
            found = [self._version(v) for v in self._client.search_model_versions(query)]
        except MlflowException as exc:
            raise RegistryError(f"{self.tracking_uri}: {exc.message}") from None
        return sorted(found, key=lambda v: (v.name, int(v.version) if v.version.isdigit() else v.version))

    def fingerprint(self, version: Version) -> str:
        """sha256 over the sorted (path, size) listing of the version's artifacts: changes when they do."""
        listing = sorted(self._listing(self._location(version), ""))
        return hashlib.sha256("\n".join(f"{p}\t{s}" for p, s in listing).encode()).hexdigest()

    def fetch(self, version: Version, dest: Path, max_bytes: int) -> Path:
        """Download the version's artifacts under `dest`; refused before download when they exceed `max_bytes`."""
        from mlflow.artifacts import download_artifacts  # noqa: PLC0415
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        location = self._location(version)
        total = sum(size for _, size in self._listing(location, ""))
        if total > max_bytes:
            raise LimitExceeded("registry artifact bytes", max_bytes, total, path=version.uri)
        try:
            return Path(download_artifacts(artifact_uri=location, dst_path=str(dest), tracking_uri=self.tracking_uri))
        except (MlflowException, OSError) as exc:
            raise InputError(f"cannot fetch artifacts from {location}: {exc}", path=version.uri) from None

    def tag(self, version: Version, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._call(self._client.set_model_version_tag, version.name, version.version, key, value)

    def alias(self, name: str, alias: str) -> str | None:
        """The version an alias points at, or None."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        try:
            return str(self._client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def set_alias(self, version: Version, alias: str) -> None:
        self._call(self._client.set_registered_model_alias, version.name, alias, version.version)

    def _location(self, version: Version) -> str:
        """Where the version's artifacts really are (models:/ and runs:/ resolved by the registry itself)."""
        return str(self._call(self._client.get_model_version_download_uri, version.name, version.version))

    def _call(self, method: Any, *args: Any) -> Any:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        try:
            return method(*args)
        except MlflowException as exc:
            raise RegistryError(f"{self.tracking_uri}: {exc.message}") from None

    def _version(self, raw: Any) -> Version:
        return Version(str(raw.name), str(raw.version), str(raw.source), dict(raw.tags or {}), tuple(raw.aliases or ()))

    def _listing(self, uri: str, path: str, depth: int = 0) -> list[tuple[str, int]]:
        from mlflow.artifacts import list_artifacts  # noqa: PLC0415

        if depth > 32:
            raise InputError("artifact folders nested more than 32 deep", path=uri)
        out: list[tuple[str, int]] = []
        infos = self._call(list_artifacts, f"{uri.rstrip('/')}/{path}" if path else uri, None, None, self.tracking_uri)
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            child = f"{path}/{name}" if path else name
            if info.is_dir:
                out += self._listing(uri, child, depth + 1)
            else:
                out.append((child, int(info.file_size or 0)))
        return out
