"""The model registry: versions of a model, aliases that point at one version each.

Two backends behind one interface, chosen by `registry_uri` in one place
(`open_registry`): the Vertex AI Model Registry (`vertex`), and on this machine a
folder with the same semantics (any other value is that folder's path).

Semantics shared by both:
- `register` adds a new version (1, 2, ...) with its lineage metadata.
- An alias names exactly one version of a model; setting it on a version moves it.
- The very first registered version also becomes `champion`, since there is
  nothing to compare it with; later ones arrive as `challenger` only and are
  promoted by the deploy step.
- A model name holds one input contract (features and their dtypes, the
  exported `input_spec.json`): its versions take turns behind one endpoint, so a
  version trained on other inputs is refused (`require_same_inputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from contract.model_inputs import InputSpec
from storage import uri as storage_uri
from storage.local_files import file_lock, write_json_atomically

if TYPE_CHECKING:
    from contract.dataset import DatasetConfig

CHAMPION = "champion"
CHALLENGER = "challenger"
VERTEX = "vertex"
_ALIAS_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")  # Vertex's rule for version aliases
# Safe as a folder name here and as a Vertex display name (at most 128 characters) there.
_MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Where a registered version's lineage records the inputs it was trained on.
INPUT_CONTRACT_KEY = "input_contract"


class RegistryError(RuntimeError):
    pass


class InputContractMismatch(RegistryError):
    """The candidate takes other inputs than a version already registered under its model name."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: str
    uri: str  # where the SavedModel lives
    aliases: tuple[str, ...]
    metadata: dict


class ModelRegistry(Protocol):
    def get(self, model_name: str, alias: str) -> ModelVersion | None: ...
    def versions(self, model_name: str) -> list[ModelVersion]: ...
    def register(self, model_name: str, model_uri: str, metadata: dict,
                 aliases: tuple[str, ...]) -> ModelVersion: ...
    def set_alias(self, model_name: str, version: str, alias: str) -> None: ...


def check_model_name(model_name: str, source: str = "model name") -> None:
    if not isinstance(model_name, str) or not _MODEL_NAME_PATTERN.fullmatch(model_name):
        raise RegistryError(f"{source} {model_name!r} is not valid; expected up to 128 letters, digits, '-', "
                            "'_' or '.', starting with a letter or digit")


def resolve_model_name(parameter: str, config: DatasetConfig) -> str:
    """The run's model name: the data set config's `model_name`, unless the
    pipeline parameter `model_name` overrides it. Resolved once per run."""
    if parameter:
        check_model_name(parameter, "pipeline parameter model_name")
        return parameter
    check_model_name(config.model_name, f"model_name in {config.source}")
    return config.model_name


def check_alias(alias: str) -> None:
    if not _ALIAS_PATTERN.match(alias) or alias.isdigit():
        raise RegistryError(f"alias {alias!r} is not valid; expected [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9]")


class LocalModelRegistry:
    """`root/<model>/versions/<n>/{model/, version.json}` and `root/<model>/aliases.json`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _model_dir(self, model_name: str) -> Path:
        check_model_name(model_name)
        return self.root / model_name

    @contextlib.contextmanager
    def _locked(self, model_name: str) -> Iterator[Path]:
        """Serializes writers (two pipeline runs may register at once)."""
        model_dir = self._model_dir(model_name)
        (model_dir / "versions").mkdir(parents=True, exist_ok=True)
        with file_lock(model_dir / ".lock"):
            yield model_dir

    def _aliases(self, model_dir: Path) -> dict[str, str]:
        path = model_dir / "aliases.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _load(self, model_name: str, version: str, aliases: dict[str, str]) -> ModelVersion:
        version_dir = self._model_dir(model_name) / "versions" / version
        record = json.loads((version_dir / "version.json").read_text())
        return ModelVersion(model_name, version, str(version_dir / "model"),
                            tuple(sorted(a for a, v in aliases.items() if v == version)), record["metadata"])

    def versions(self, model_name: str) -> list[ModelVersion]:
        model_dir = self._model_dir(model_name)
        if not (model_dir / "versions").exists():
            return []
        aliases = self._aliases(model_dir)
        numbers = sorted(int(p.name) for p in (model_dir / "versions").iterdir()
                         if p.name.isdigit() and (p / "version.json").exists())
        return [self._load(model_name, str(number), aliases) for number in numbers]

    def get(self, model_name: str, alias: str) -> ModelVersion | None:
        model_dir = self._model_dir(model_name)
        version = self._aliases(model_dir).get(alias) if model_dir.exists() else None
        return self._load(model_name, version, self._aliases(model_dir)) if version else None

    def register(self, model_name: str, model_uri: str, metadata: dict,
                 aliases: tuple[str, ...] = (CHALLENGER,)) -> ModelVersion:
        for alias in aliases:
            check_alias(alias)
        with self._locked(model_name) as model_dir:
            existing = [int(p.name) for p in (model_dir / "versions").iterdir() if p.name.isdigit()]
            version = str(max(existing, default=0) + 1)
            staging = Path(tempfile.mkdtemp(dir=model_dir / "versions", prefix=f".{version}-"))
            try:  # the model by URI: a local folder or the /gcs/ mount (copied), or gs:// (downloaded)
                source = storage_uri.local_dir(model_uri, staging / "model")
            except (FileNotFoundError, NotADirectoryError, ValueError) as error:
                shutil.rmtree(staging)
                raise RegistryError(f"model_uri {model_uri!r} is not a folder holding a SavedModel: {error}") from None
            if source != staging / "model":
                shutil.copytree(source, staging / "model")
            record = {"version": version, "source_uri": model_uri, "created": time.time(), "metadata": metadata}
            (staging / "version.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            os.replace(staging, model_dir / "versions" / version)  # the version appears whole, or not at all
            table = self._aliases(model_dir) | {alias: version for alias in aliases}
            write_json_atomically(model_dir / "aliases.json", table)
            return self._load(model_name, version, table)

    def set_alias(self, model_name: str, version: str, alias: str) -> None:
        check_alias(alias)
        with self._locked(model_name) as model_dir:
            if not (model_dir / "versions" / version / "version.json").exists():
                raise RegistryError(f"model {model_name!r} has no version {version!r}")
            write_json_atomically(model_dir / "aliases.json", self._aliases(model_dir) | {alias: version})


class VertexModelRegistry:
    """The Vertex AI Model Registry, through the aiplatform SDK (imported on use:
    it costs seconds, and only this backend needs it)."""

    def __init__(self, project: str, location: str, serving_image: str):
        if not project:
            raise RegistryError("the Vertex registry needs a project; pass the pipeline parameter 'project'")
        self.project, self.location, self.serving_image = project, location, serving_image

    def _parent(self, model_name: str):
        from google.cloud import aiplatform

        matches = aiplatform.Model.list(filter=f'display_name="{model_name}"', project=self.project,
                                        location=self.location)
        return matches[0] if matches else None

    def _version(self, model) -> ModelVersion:
        return ModelVersion(model.display_name, str(model.version_id), model.uri,
                            tuple(model.version_aliases), dict(model.labels or {}))

    def get(self, model_name: str, alias: str) -> ModelVersion | None:
        from google.api_core import exceptions
        from google.cloud import aiplatform

        parent = self._parent(model_name)
        if parent is None:
            return None
        try:
            return self._version(aiplatform.Model(f"{parent.resource_name}@{alias}"))
        except exceptions.NotFound:
            return None

    def versions(self, model_name: str) -> list[ModelVersion]:
        parent = self._parent(model_name)
        if parent is None:
            return []
        # models.listVersions returns whole Model resources (the SDK's list_versions keeps no artifact URI).
        return [self._version_resource(model_name, resource)
                for resource in parent.api_client.list_model_versions(name=parent.resource_name)]

    @staticmethod
    def _version_resource(model_name: str, resource) -> ModelVersion:
        return ModelVersion(model_name, str(resource.version_id), resource.artifact_uri,
                            tuple(resource.version_aliases), dict(resource.labels or {}))

    def register(self, model_name: str, model_uri: str, metadata: dict,
                 aliases: tuple[str, ...] = (CHALLENGER,)) -> ModelVersion:
        from google.cloud import aiplatform

        parent = self._parent(model_name)
        model = aiplatform.Model.upload(
            display_name=model_name, artifact_uri=model_uri, serving_container_image_uri=self.serving_image,
            parent_model=parent.resource_name if parent else None, is_default_version=parent is None,
            version_aliases=list(aliases), version_description=json.dumps(metadata, default=str)[:1000],
            labels={key: re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]
                    for key, value in metadata.get("labels", {}).items()},
            project=self.project, location=self.location)
        return self._version(model)

    def set_alias(self, model_name: str, version: str, alias: str) -> None:
        parent = self._parent(model_name)
        if parent is None:
            raise RegistryError(f"model {model_name!r} is not in the Vertex registry")
        parent.versioning_registry.add_version_aliases(new_aliases=[alias], version=version)


def open_registry(registry_uri: str, project: str = "", location: str = "", serving_image: str = "") -> ModelRegistry:
    """The one place that picks the backend: `vertex`, or a local folder path."""
    if registry_uri == VERTEX:
        return VertexModelRegistry(project, location, serving_image)
    if registry_uri.startswith("gs://") or "://" in registry_uri:
        raise RegistryError(f"registry_uri {registry_uri!r} is not supported; expected 'vertex' or a local folder")
    return LocalModelRegistry(registry_uri)


def require_same_inputs(model_name: str, version: str, version_uri: str, candidate: InputSpec,
                        aliases: tuple[str, ...] = ()) -> None:
    """Refuses, naming the version and each differing feature, when the version at
    `version_uri` was trained on other features or dtypes than the candidate."""
    label = f"version {version}" + (f" ({', '.join(aliases)})" if aliases else "")
    remedy = ("One model name holds one input contract: train this data set under its own model name "
              "(`model_name` in its data set config, or the pipeline parameter model_name).")
    try:
        registered = InputSpec.load(version_uri)
    except (FileNotFoundError, ValueError) as error:  # ValueError: a malformed or non-JSON spec
        raise InputContractMismatch(f"model {model_name!r} {label}: its input contract cannot be read, so "
                                    f"this candidate cannot be checked against it ({error}). {remedy}") from None
    differences = candidate.differences(registered, "the candidate", f"version {version}")
    if differences:
        raise InputContractMismatch(f"model {model_name!r} {label} was trained on other inputs than the "
                                    f"candidate: {'; '.join(differences)}. {remedy}")


def register_blessed_model(registry: ModelRegistry, model_name: str, model_uri: str, metadata: dict) -> ModelVersion:
    """A blessed model arrives as `challenger`; the very first one is also `champion`.
    Every existing version must share the candidate's input contract (read from
    the exported model), which the new version's lineage records."""
    contract = InputSpec.load(model_uri)
    for version in registry.versions(model_name):
        require_same_inputs(model_name, version.version, version.uri, contract, version.aliases)
    first = registry.get(model_name, CHAMPION) is None
    return registry.register(model_name, model_uri, metadata | {INPUT_CONTRACT_KEY: dict(contract.features)},
                             (CHALLENGER, CHAMPION) if first else (CHALLENGER,))
