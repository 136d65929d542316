"""pipelines/publish.py against the GCS emulator and a stand-in of Artifact Registry's KFP upload.

The stand-in answers what kfp.registry.RegistryClient.upload_pipeline expects of
`https://REGION-kfp.pkg.dev/PROJECT/REPO` (a multipart POST of `content` and `tags`; the answer
`PACKAGE/sha256:DIGEST`): Artifact Registry cannot be reached from here. The RegistryClient itself,
google-cloud-storage and the emulator are real.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.compile import COMPILED_DIR
from pipelines.publish import CURRENT_PREFIX, PublishError, main, publish
from release.terraform_model import Terraform
from tests.stand_in_http import StandInServer, google_error


class KfpRegistryStandIn:
    """Records every upload; answers like Artifact Registry, or with `fail_with` (status) when set."""

    def __init__(self) -> None:
        self.uploads: list[dict] = []
        self.fail_with: int | None = None
        self.server = StandInServer(
            self._answer, (), poll_interval=0.05)  # REGION-kfp.pkg.dev's upload: in no discovery document
        self.host = f"{self.server.url}/my-project/mlops-templates"

    def _answer(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict | bytes]:
        if self.fail_with:
            return self.fail_with, google_error(self.fail_with, "PERMISSION_DENIED", "artifactregistry.repositories"
                                                ".uploadArtifacts denied")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
        fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                  for part in message.iter_parts()}
        content = fields["content"]
        package = json.loads(content)["pipelineInfo"]["name"]
        self.uploads.append({"method": method, "path": path, "package": package, "content": content,
                             "tags": fields["tags"].decode().split(",")})
        return 200, f"{package}/sha256:{hashlib.sha256(content).hexdigest()}".encode()


def _objects(gcs_emulator, bucket: str) -> list[str]:
    return sorted(blob.name for blob in gcs_emulator.client.list_blobs(bucket))


@pytest.fixture
def registry() -> Iterator[KfpRegistryStandIn]:
    stand_in = KfpRegistryStandIn()
    yield stand_in
    stand_in.server.close()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """What the release build compiles: every template in compiled/."""
    folder = tmp_path / "release"
    shutil.copytree(COMPILED_DIR, folder)
    return folder


def test_publishes_every_template_to_the_registry_then_its_release_then_the_functions_copy(
        release, registry, gcs_bucket, gcs_emulator):
    sha = "3f2a9c1d0b"
    assert main(["--templates", str(release), "--bucket", gcs_bucket, "--registry", registry.host,
                 "--tag", sha]) == 0

    names = sorted(path.name for path in release.glob("*.json"))
    assert [upload["content"] for upload in registry.uploads] == [(release / name).read_bytes() for name in names]
    assert all(upload["tags"] == [sha, "latest"] and upload["path"] == "/my-project/mlops-templates"
               for upload in registry.uploads)
    assert _objects(gcs_emulator, gcs_bucket) == sorted(
        [f"releases/{sha}/{name}" for name in names] + [f"{CURRENT_PREFIX}/{name}" for name in names])
    for name in names:
        for object_name in (f"releases/{sha}/{name}", f"{CURRENT_PREFIX}/{name}"):
            blob = gcs_emulator.client.bucket(gcs_bucket).blob(object_name)
            assert blob.download_as_bytes() == (release / name).read_bytes()


def test_a_refused_registry_upload_leaves_the_functions_on_the_previous_release(release, registry, gcs_bucket,
                                                                              gcs_emulator):
    first = sorted(release.glob("*.json"))[0].name
    previous = gcs_emulator.upload(gcs_bucket, f"{CURRENT_PREFIX}/{first}", b'{"previous": 1}')
    registry.fail_with = 403
    with pytest.raises(PublishError, match=rf"uploading {re.escape(first)} to http://.* failed: HTTP 403"):
        publish(release, gcs_bucket, registry.host, ["abc123"])
    assert _objects(gcs_emulator, gcs_bucket) == [f"{CURRENT_PREFIX}/{first}"]
    assert gcs_emulator.client.bucket(gcs_bucket).blob(previous.split("/", 3)[3]).download_as_bytes() == \
        b'{"previous": 1}'


def test_a_missing_bucket_is_named(release, registry, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    first = sorted(release.glob("*.json"))[0].name
    with pytest.raises(PublishError, match=rf"writing {re.escape(first)} to gs://no-such-bucket-x/releases/"):
        publish(release, "no-such-bucket-x", registry.host, ["abc123"])


@pytest.mark.parametrize(("content", "expected"), [
    (None, "holds no \\*.json template"),
    (b"{truncated", "is not a JSON template"),
    (b"\xff\xfe not utf-8", "is not a JSON template"),
    (b'{"displayName": "x", "pipelineSpec": {}}', "is not a KFP v2 template"),
    (b"[]", "is not a KFP v2 template"),
])
def test_what_is_not_a_template_is_refused_by_name_before_anything_is_sent(tmp_path, registry, content, expected):
    if content is not None:
        (tmp_path / "broken.json").write_bytes(content)
    with pytest.raises(PublishError, match=expected):
        publish(tmp_path, "bucket", registry.host, ["abc123"], storage_client=object())
    assert registry.uploads == []


@pytest.mark.parametrize(("bucket", "tags", "expected"), [
    ("bucket", ["no spaces"], "are not valid"),
    ("bucket", ["sha256:abc"], "are not valid"),
    ("bucket", [""], "are not valid"),
    ("gs://bucket/a/path", ["abc"], "expected a bucket name, not a path"),
])
def test_bad_tags_and_bucket_paths_are_refused(release, registry, bucket, tags, expected):
    with pytest.raises(PublishError, match=expected):
        publish(release, bucket, registry.host, tags, storage_client=object())
    assert registry.uploads == []


def test_the_functions_read_the_copies_publish_writes(terraform: Terraform):
    platform = terraform.locals()
    assert platform["templates_prefix"] == CURRENT_PREFIX
