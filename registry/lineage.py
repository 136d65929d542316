"""A version's lineage key: what made the model (the data's version, the training parameters, the data set
config and schema, the serving image, the code), so that a run that would make the same model again is
recognised and nothing is registered or deployed twice.

A second `make run` on the same data with the same parameters used to register an identical version 2 and
deploy it as a canary (on Vertex AI: another serving node, paid for). The register step now looks for a
version whose key is the candidate's (every version of the model, whatever its aliases) and, if one
exists, names it instead of registering. The key is kept with each version: in its metadata locally, as
a label on Vertex AI (`lineage`: 16 hex digits, a valid label value).

The code is the project's packages that make the model (their source) and the versions of the libraries
that train it. A run whose data has no version (`data_version` empty: a run that did not say which bytes
it read) has no key, and is never taken for another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from contract.paths import PROJECT_ROOT
from registry.model_registry import ModelRegistry, ModelVersion

LINEAGE_KEY = "lineage"
KEY_HEX_DIGITS = 16
MODEL_PACKAGES = ("contract", "storage", "dataprep", "trainer")  # the project's code a model depends on
MODEL_LIBRARIES = ("tensorflow", "tensorflow-transform", "keras", "numpy", "pandas", "pyarrow")


def code_version() -> str:
    """The model-making source (every .py file of MODEL_PACKAGES, by path and bytes) and library versions."""
    digest = hashlib.sha256()
    for package in MODEL_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for library in MODEL_LIBRARIES:
        try:
            installed = metadata.version(library)
        except metadata.PackageNotFoundError:
            installed = "absent"
        digest.update(f"{library}=={installed}\0".encode())
    return digest.hexdigest()[:KEY_HEX_DIGITS]


def _canonical(value: Any) -> Any:
    """Whole floats as ints: KFP hands a list parameter's numbers over as floats ([64, 32] arrives as
    [64.0, 32.0]), and the same parameters must give the same key however they arrived."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _canonical(item) for key, item in value.items()}
    return value


def lineage_key(data_uri: str, data_version: str, dataset_config_text: str, schema_text: str,
                parameters: Mapping[str, Any], serving_image: str, code: str, row_filter: str = "") -> str:
    """The key, or "" when the data's version is unknown. `row_filter`: the rows of a BigQuery snapshot read."""
    if not data_version:
        return ""
    material = {"data_uri": data_uri, "data_version": data_version, "dataset_config": dataset_config_text,
                "schema": schema_text, "parameters": _canonical(dict(parameters)), "serving_image": serving_image,
                "code": code} | ({"row_filter": row_filter} if row_filter.strip() else {})
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:KEY_HEX_DIGITS]


def identical_version(registry: ModelRegistry, model_name: str, key: str) -> ModelVersion | None:
    """The registered version made from the same lineage, if any."""
    if not key:
        return None
    return next((version for version in registry.versions(model_name)
                 if version.metadata.get(LINEAGE_KEY) == key), None)
