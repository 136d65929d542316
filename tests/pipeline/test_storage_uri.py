"""Every reader by URI, each on the same files placed four ways: a local path, gs:// in the GCS emulator,
a /gcs/ mount path, and gs:// where the mount holds the object.

The mount is a temporary folder named by MLOPS_GCS_MOUNT. In both mount forms the emulator is reachable
but lacks the objects, so a reader that went past the mount would fail: a pass proves the mapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from contract.dataset import DatasetConfigError, load_dataset_config
from contract.model_inputs import InputSpec
from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from contract.schema import load_schema, write_schema
from dataprep.ingest import IngestError, find_batches, ingest
from registry.model_registry import LocalModelRegistry, RegistryError
from storage import uri as storage_uri
from tests.gcs_emulator import EMULATOR_ENV
from tests.pipeline.conftest import SAMPLE, SMALL_PARTITIONS

SHIPPED_CONFIG = PROJECT_ROOT / DEFAULT_DATASET_CONFIG
SHIPPED_SCHEMA = SHIPPED_CONFIG.with_name("chicago_taxi.schema.pbtxt")
FORMS = ("local path", "gs://", "/gcs/ mount path", "gs:// through the mount")


class Placed:
    """Files placed in one form; `uri(relative)` is how a caller names one of them."""

    def __init__(self, form: str, tmp_path: Path, request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.form = form
        self.mount = tmp_path / "mount"
        self.mount.mkdir()
        monkeypatch.setenv(storage_uri.GCS_MOUNT_ENV, str(self.mount))
        self.local_root = tmp_path / "local"
        self.gcs = None
        self.bucket = "no-bucket"
        if form != "local path":
            self.gcs = request.getfixturevalue("gcs_emulator")
            monkeypatch.setenv(EMULATOR_ENV, self.gcs.url)
            self.bucket = self.gcs.new_bucket("uri")

    def uri(self, relative: str) -> str:
        if self.form == "local path":
            return str(self.local_root / relative)
        if self.form == "/gcs/ mount path":
            return f"{self.mount}/{self.bucket}/{relative}"
        return f"gs://{self.bucket}/{relative}"

    def put(self, relative: str, data: bytes) -> str:
        if self.form == "gs://":
            return self.gcs.upload_bytes(self.uri(relative), data)
        path = (self.local_root if self.form == "local path" else self.mount / self.bucket) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.uri(relative)

    def put_tree(self, folder: Path, relative: str) -> str:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.put(f"{relative}/{path.relative_to(folder).as_posix()}", path.read_bytes())
        return self.uri(relative)


@pytest.fixture(params=FORMS)
def placed(request, tmp_path, monkeypatch) -> Placed:
    return Placed(request.param, tmp_path, request, monkeypatch)


# --- storage.uri itself ---------------------------------------------------------------------------


def test_read_exists_and_list(placed):
    text = "fare,tips\n12.5,3\n# héllo ✓\n"
    placed.put("a/b.csv", text.encode())
    placed.put("a/c/d.txt", b"deeper")
    placed.put("a-sibling/e.txt", b"shares the text prefix 'a', not the folder")

    assert storage_uri.read_text(placed.uri("a/b.csv")) == text
    assert storage_uri.exists(placed.uri("a/b.csv")) and storage_uri.exists(placed.uri("a"))
    assert not storage_uri.exists(placed.uri("a/missing.csv"))
    expected = [storage_uri.canonical(placed.uri(name)) for name in ("a/b.csv", "a/c/d.txt")]
    assert storage_uri.list_files(placed.uri("a")) == expected
    assert storage_uri.list_files(placed.uri("a/b.csv")) == expected[:1]


def test_a_missing_file_or_folder_is_named(placed):
    placed.put("here/x.txt", b"x")
    missing = placed.uri("here/nope.txt")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        storage_uri.read_text(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(placed.uri("nowhere"))):
        storage_uri.list_files(placed.uri("nowhere"))
    with pytest.raises(FileNotFoundError, match=re.escape(placed.uri("nowhere"))):
        storage_uri.local_dir(placed.uri("nowhere"))


def test_local_dir_holds_the_folder(placed, tmp_path):
    source = tmp_path / "tree"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    uri = placed.put_tree(source, "models/m")

    local = storage_uri.local_dir(uri, tmp_path / "scratch")

    assert (local / "saved_model.pb").read_bytes() == b"graph"
    assert (local / "variables" / "variables.index").read_bytes() == b"index"
    read_in_place = {"local path": Path(uri), "/gcs/ mount path": Path(uri),
                     "gs:// through the mount": placed.mount / placed.bucket / "models/m"}
    assert local == read_in_place.get(placed.form, tmp_path / "scratch")  # gs:// is downloaded where asked


# --- the readers built on it ----------------------------------------------------------------------


def test_dataset_config_and_the_schema_beside_it(placed):
    config_uri = placed.put("configs/taxi.yaml", SHIPPED_CONFIG.read_bytes())
    placed.put("configs/chicago_taxi.schema.pbtxt", SHIPPED_SCHEMA.read_bytes())

    config = load_dataset_config(config_uri)

    assert config.source == storage_uri.canonical(config_uri)
    assert config.schema_uri == storage_uri.canonical(placed.uri("configs/chicago_taxi.schema.pbtxt"))
    assert config.feature_names == load_dataset_config().feature_names
    assert load_schema(config.schema_uri) == load_schema(SHIPPED_SCHEMA)


def test_a_missing_config_names_where_it_looked(placed):
    looked_at = storage_uri.canonical(placed.uri("x.yaml"))
    with pytest.raises(DatasetConfigError, match=re.escape(f"not found: {looked_at}")):
        load_dataset_config(placed.uri("x.yaml"))


def test_input_spec_of_a_model(placed):
    spec = InputSpec({"fare": "float32", "company": "string"}, label="big_tipper")
    placed.put("model/input_spec.json", json.dumps(spec.to_dict()).encode())
    assert InputSpec.load(placed.uri("model")).features == spec.features
    with pytest.raises(FileNotFoundError, match=re.escape(placed.uri("other"))):
        InputSpec.load(placed.uri("other"))


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    from serving.testing import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("demo"))


def test_predict_reads_the_model_by_uri(placed, demo_model):
    from evaluation.gate import predict
    from serving.testing import demo_instances

    frame = pd.DataFrame(demo_instances(30, seed=3))
    uri = placed.put_tree(demo_model, "models/demo")
    assert predict(uri, frame).tolist() == predict(str(demo_model), frame).tolist()


def test_ingest_finds_and_reads_batches(placed, dataset_config, tmp_path):
    for partition in SMALL_PARTITIONS:
        placed.put(f"landing/{partition}/batch.csv", (SAMPLE / partition / "batch.csv").read_bytes())
    placed.put("landing/README.txt", b"not a batch")

    batches = find_batches(placed.uri("landing"))
    summary = ingest(placed.uri("landing"), dataset_config, tmp_path / "examples")

    assert batches == [storage_uri.canonical(placed.uri(f"landing/{p}/batch.csv")) for p in SMALL_PARTITIONS]
    expected_rows = sum(len(pd.read_csv(SAMPLE / p / "batch.csv")) for p in SMALL_PARTITIONS)
    assert summary.rows == expected_rows
    with pytest.raises(IngestError, match=re.escape(placed.uri("elsewhere"))):
        find_batches(placed.uri("elsewhere"))
    with pytest.raises(IngestError, match="scheme s3:// is not supported"):
        find_batches("s3://bucket/landing")


def test_the_local_registry_registers_a_model_by_uri(placed, tmp_path):
    source = tmp_path / "exported"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    uri = placed.put_tree(source, "runs/1/model")

    version = LocalModelRegistry(tmp_path / "registry").register("taxi", uri, {})

    assert (Path(version.uri) / "saved_model.pb").read_bytes() == b"graph"
    with pytest.raises(RegistryError, match="not a folder holding a SavedModel"):
        LocalModelRegistry(tmp_path / "registry").register("taxi", placed.uri("runs/2/model"), {})


# --- the mapping, and bad input -------------------------------------------------------------------


def test_the_mount_mapping_is_the_one_kfp_uses(monkeypatch):
    from kfp import dsl

    monkeypatch.delenv(storage_uri.GCS_MOUNT_ENV, raising=False)
    artifact = dsl.Model(uri="gs://bucket/root/job/train-model/model")
    assert artifact.path == "/gcs/bucket/root/job/train-model/model"
    assert storage_uri.canonical(artifact.path) == artifact.uri
    assert storage_uri.mounted_path(artifact.uri) == Path(artifact.path)
    assert storage_uri.canonical("/gcsx/bucket/x") == "/gcsx/bucket/x"  # only the mount itself maps


@pytest.mark.parametrize("bad, error, message", [
    ("", ValueError, "empty URI"),
    ("   ", ValueError, "empty URI"),
    ("s3://bucket/x", ValueError, "scheme s3:// is not supported"),
    ("https://storage.googleapis.com/b/x", ValueError, "scheme https:// is not supported"),
    ("gs://", ValueError, "not a Cloud Storage URI"),
    ("gs://bucket", IsADirectoryError, "names a bucket or a folder"),
    ("gs://bucket/folder/", IsADirectoryError, "names a bucket or a folder"),
])
def test_bad_uris_are_refused_by_name(bad, error, message):
    with pytest.raises(error, match=re.escape(message)):
        storage_uri.read_text(bad)


def test_a_folder_read_as_a_file_and_a_file_as_a_folder_are_named(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(IsADirectoryError, match=re.escape(f"{tmp_path} is a folder; expected a file")):
        storage_uri.read_text(tmp_path)
    with pytest.raises(NotADirectoryError, match=re.escape(f"{tmp_path / 'f.txt'} is a file; expected a folder")):
        storage_uri.local_dir(tmp_path / "f.txt")


def test_beside_resolves_relative_to_the_file_and_stays_in_the_bucket():
    assert storage_uri.beside("gs://b/configs/x.yaml", "x.schema.pbtxt") == "gs://b/configs/x.schema.pbtxt"
    assert storage_uri.beside("gs://b/configs/x.yaml", "../schemas/x.pbtxt") == "gs://b/schemas/x.pbtxt"
    assert storage_uri.beside("gs://b/configs/x.yaml", "gs://other/s.pbtxt") == "gs://other/s.pbtxt"
    assert storage_uri.beside("/srv/configs/x.yaml", "s.pbtxt") == "/srv/configs/s.pbtxt"
    assert storage_uri.beside("/srv/configs/x.yaml", "/abs/s.pbtxt") == "/abs/s.pbtxt"
    with pytest.raises(ValueError, match="leaves the bucket"):
        storage_uri.beside("gs://b/x.yaml", "../../s.pbtxt")


@pytest.mark.parametrize("location, message", [
    ("", "dataset_config: empty URI"),
    ("s3://bucket/x.yaml", "scheme s3:// is not supported"),
    ("data/datasets", "is a folder; expected a YAML file"),
])
def test_bad_dataset_config_locations_are_named(location, message):
    with pytest.raises(DatasetConfigError, match=re.escape(message)):
        load_dataset_config(location)


@pytest.mark.parametrize("schema_line, message", [
    ("schema: 5", "schema is 5; expected a file name"),
    ("schema: ''", "schema is ''; expected a file name"),
])
def test_a_config_whose_schema_is_not_a_file_name_is_refused(tmp_path, schema_line, message):
    text = SHIPPED_CONFIG.read_text().replace("schema: chicago_taxi.schema.pbtxt", schema_line)
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(DatasetConfigError, match=re.escape(message)):
        load_dataset_config(tmp_path / "x.yaml")


def test_a_schema_is_never_written_to_a_gs_uri():
    with pytest.raises(ValueError, match="written locally, reviewed, then uploaded"):
        write_schema(load_schema(SHIPPED_SCHEMA), "gs://bucket/configs/x.schema.pbtxt")


def test_reading_gs_without_credentials_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv(storage_uri.GCS_MOUNT_ENV, str(tmp_path / "no-mount"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    with pytest.raises(PermissionError, match=re.escape("reading gs://bucket/x.yaml needs Google Cloud credentials")):
        storage_uri.read_text("gs://bucket/x.yaml")
    with pytest.raises(DatasetConfigError, match="needs Google Cloud credentials"):
        load_dataset_config("gs://bucket/x.yaml")
