"""A release built once and promoted (defect 12): release/manifest.py, push_images.sh and copy_images.sh.

The templates are really compiled (runner.py --compile, about a second), the manifest really goes to and
comes from Cloud Storage (the GCS emulator, google-cloud-storage). docker and gcrane cannot reach a
registry from here: the scripts run against stand-ins on PATH that record their calls and answer as the
real tools do (`docker inspect` RepoDigests, `gcrane digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT
from release import manifest
from release.manifest import Image, ReleaseError

COMMIT = "3f2a9c1d0b7e"
DIGEST = {"pipeline": "sha256:" + "a" * 64, "serving": "sha256:" + "b" * 64}
STAGING = "us-central1-docker.pkg.dev/my-staging/mlops"
PROD = "us-central1-docker.pkg.dev/my-prod/mlops"


def _images(repository: str) -> dict[str, Image]:
    return {name: Image(repository, name, DIGEST[name]) for name in manifest.IMAGES}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """Every template compiled twice: with staging's images by digest, and with prod's (same digests)."""
    folders = {}
    for name, repository in (("staging", STAGING), ("prod", PROD)):
        folder = tmp_path_factory.mktemp(name)
        manifest.compile_templates(_images(repository), folder)
        folders[name] = folder
    return folders


def _released(gcs_emulator, bucket: str, templates: Path) -> str:
    """What staging's release leaves in its bucket: the templates of the commit (pipelines/publish.py) and,
    last, the manifest."""
    for path in sorted(templates.glob("*.json")):
        gcs_emulator.upload(bucket, f"releases/{COMMIT}/{path.name}", path.read_bytes())
    return manifest.record(COMMIT, _images(STAGING), templates, bucket, storage_client=gcs_emulator.client)


def test_the_templates_name_the_images_by_digest(compiled):
    training = (compiled["staging"] / "training_pipeline.json").read_text()
    assert f"{STAGING}/pipeline@{DIGEST['pipeline']}" in training
    assert f"{STAGING}/serving@{DIGEST['serving']}" in training
    assert ":latest" not in training


def test_prod_publishes_stagings_templates_byte_for_byte_but_for_the_registry(compiled, gcs_bucket, gcs_emulator,
                                                                              tmp_path):
    uri = _released(gcs_emulator, gcs_bucket, compiled["staging"])
    assert uri == f"gs://{gcs_bucket}/releases/{COMMIT}/release.json"
    recorded = json.loads(gcs_emulator.client.bucket(gcs_bucket).blob(f"releases/{COMMIT}/release.json")
                          .download_as_bytes())
    assert recorded["images"]["pipeline"] == f"{STAGING}/pipeline@{DIGEST['pipeline']}"

    promotion = manifest.promote(gcs_bucket, COMMIT, PROD, tmp_path)
    for path in sorted(compiled["prod"].glob("*.json")):
        # What prod publishes is what compiling with prod's references gives: staging's bytes, retargeted.
        assert (tmp_path / "templates" / path.name).read_bytes() == path.read_bytes(), path.name
    assert json.loads((tmp_path / "images.json").read_text()) == {
        name: f"{PROD}/{name}@{DIGEST[name]}" for name in manifest.IMAGES}
    assert (tmp_path / "copies.txt").read_text().splitlines() == [
        f"{STAGING}/{name}@{DIGEST[name]} {PROD}/{name}:{COMMIT} {DIGEST[name]}" for name in manifest.IMAGES]
    assert sorted(promotion.templates) == sorted(path.name for path in compiled["staging"].glob("*.json"))


def test_a_release_that_has_not_passed_is_not_promoted(gcs_bucket, tmp_path, capsys):
    assert manifest.main(["promote", "--source-bucket", gcs_bucket, "--commit", COMMIT, "--repository", PROD,
                          "--output", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"gs://{gcs_bucket}/releases/{COMMIT}/release.json does not exist" in error
    assert "has not passed" in error and not (tmp_path / "templates").exists()


def test_a_template_changed_after_the_release_is_refused(compiled, gcs_bucket, gcs_emulator, tmp_path):
    _released(gcs_emulator, gcs_bucket, compiled["staging"])
    gcs_emulator.upload(gcs_bucket, f"releases/{COMMIT}/training_pipeline.json", b'{"changed": true}')
    with pytest.raises(ReleaseError, match="training_pipeline.json is not the template the release recorded"):
        manifest.promote(gcs_bucket, COMMIT, PROD, tmp_path)


def test_retargeting_leaves_no_trace_of_the_source_registry():
    source = {"images": {name: f"{STAGING}/{name}@{DIGEST[name]}" for name in manifest.IMAGES}}
    stray = f'{{"a": "{STAGING}/pipeline@{DIGEST["pipeline"]}", "b": "{STAGING}/other:latest"}}'.encode()
    with pytest.raises(ReleaseError, match="still names the source registry"):
        manifest.retarget(source | {"templates": {"t.json": "sha256:" + hashlib.sha256(stray).hexdigest()}},
                          {"t.json": stray}, PROD, COMMIT)


@pytest.mark.parametrize(("argv", "expected"), [
    (["record", "--images", "missing.json", "--templates", ".", "--commit", COMMIT, "--bucket", "b"],
     "missing.json does not exist: release/push_images.sh writes it"),
    (["promote", "--source-bucket", "b", "--commit", "not-a-sha", "--repository", PROD, "--output", "x"],
     "--commit 'not-a-sha': expected a commit SHA"),
])
def test_bad_input_is_named(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert manifest.main(argv) == 2
    assert expected in capsys.readouterr().err


def test_an_image_reference_without_a_digest_is_refused(tmp_path):
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"pipeline": f"{STAGING}/pipeline:{COMMIT}", "serving": f"{STAGING}/serving@x"}))
    with pytest.raises(ValueError, match="pipeline is .*expected an Artifact Registry image by digest"):
        manifest.read_images(path)


FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$CALLS"
if [[ $1 == inspect ]]; then
  image=${@: -1}; name=${image%:*}; base=$(basename "$name")
  digest=$(grep "^$base " "$DIGESTS" | cut -d' ' -f2)
  printf 'other.example/x@sha256:%064d\\n%s@%s\\n' 0 "$name" "$digest"
fi
"""

FAKE_GCRANE = """#!/bin/sh
printf '%s\\n' "$*" >> "$CALLS"
if [ "$1" = digest ]; then cat "$ANSWER"; fi
"""


def _bin(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}


def test_push_images_records_each_image_by_the_digest_the_registry_gave(tmp_path):
    (tmp_path / "digests").write_text("".join(f"{name} {DIGEST[name]}\n" for name in manifest.IMAGES))
    environ = _bin(tmp_path, "docker", FAKE_DOCKER) | {"DIGESTS": str(tmp_path / "digests")}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "release/push_images.sh"), STAGING, COMMIT,
                             str(tmp_path / "out/images.json")], env=environ, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert manifest.read_images(tmp_path / "out/images.json") == _images(STAGING)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [call for call in calls if call.startswith("push")] == [f"push {STAGING}/{name}:{COMMIT}"
                                                                    for name in manifest.IMAGES]


def test_copy_images_keeps_the_digest_or_stops(tmp_path):
    copies = tmp_path / "copies.txt"
    copies.write_text(f"{STAGING}/pipeline@{DIGEST['pipeline']} {PROD}/pipeline:{COMMIT} {DIGEST['pipeline']}\n")
    environ = _bin(tmp_path, "gcrane", FAKE_GCRANE) | {"ANSWER": str(tmp_path / "answer")}
    (tmp_path / "answer").write_text(DIGEST["pipeline"])
    script = str(PROJECT_ROOT / "release/copy_images.sh")
    result = subprocess.run(["sh", script, str(copies)], env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"cp {STAGING}/pipeline@{DIGEST['pipeline']} {PROD}/pipeline:{COMMIT}", f"digest {PROD}/pipeline:{COMMIT}"]
    (tmp_path / "answer").write_text(DIGEST["serving"])  # the copy answers another digest
    result = subprocess.run(["sh", script, str(copies)], env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"answers {DIGEST['serving']} after the copy" in result.stderr
