"""A release built once: its images by digest, its templates naming them, and the manifest that says it passed.

    python -m release.manifest compile --images build/release/images.json --output build/release/templates
    python -m release.manifest record --images build/release/images.json --templates build/release/templates \\
        --commit "$COMMIT_SHA" --bucket my-staging-templates
    python -m release.manifest promote --source-bucket my-staging-templates --commit "$COMMIT_SHA" \\
        --repository us-central1-docker.pkg.dev/my-prod/mlops --output build/release

- `compile` (cloudbuild.yaml): the templates name the images as pushed, `REPOSITORY/NAME@sha256:DIGEST`
  (release/push_images.sh wrote images.json), never a tag that can move.
- `record` (the release's last step): `gs://BUCKET/releases/COMMIT/release.json` with the image digests and
  the sha256 of every template the release published. It exists only when every step before it passed.
- `promote` (cloudbuild-promote.yaml, the next environment): refuses unless the source environment's
  manifest for this commit exists; reads the templates that release published and checks them against the
  manifest; retargets their image references to this environment's repository, same digests, and nothing
  else; writes them, this environment's images.json and the copies to make (`SOURCE DESTINATION DIGEST`
  per line: the source by digest, the destination tagged with the commit; release/copy_images.sh). So
  prod deploys the bytes staging ran: the same image digests, the same templates but for the registry host.

Exit status: 0 done, 1 a release that cannot be promoted or recorded (the message says why), 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from contract.paths import PROJECT_ROOT

IMAGES = ("pipeline", "serving")
MANIFEST_NAME = "release.json"
RELEASES_PREFIX = "releases"  # pipelines/publish.py writes each release's templates under the same prefix
# The image settings of pipelines/settings.py, per image.
IMAGE_SETTINGS = {"pipeline": "MLOPS_PIPELINE_IMAGE", "serving": "MLOPS_SERVING_IMAGE"}
_DIGEST_REFERENCE = re.compile(r"(?P<repository>[a-z0-9.-]+-docker\.pkg\.dev/[a-z][a-z0-9-]{4,28}[a-z0-9]/[a-z0-9._-]+)"
                               r"/(?P<name>[a-z0-9._-]+)@(?P<digest>sha256:[0-9a-f]{64})")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


class ReleaseError(Exception):
    """The release cannot be recorded or promoted; the message says what is missing or wrong."""


@dataclasses.dataclass(frozen=True)
class Image:
    repository: str  # us-central1-docker.pkg.dev/PROJECT/mlops
    name: str  # pipeline
    digest: str  # sha256:...

    @property
    def reference(self) -> str:
        return f"{self.repository}/{self.name}@{self.digest}"

    @classmethod
    def parse(cls, reference: str, what: str) -> Image:
        match = _DIGEST_REFERENCE.fullmatch(reference.strip())
        if not match:
            raise ValueError(f"{what} is {reference!r}; expected an Artifact Registry image by digest such as "
                             "us-central1-docker.pkg.dev/my-project/mlops/pipeline@sha256:<64 hex digits>")
        return cls(match["repository"], match["name"], match["digest"])


def read_images(path: Path) -> dict[str, Image]:
    """images.json: {"pipeline": REFERENCE@DIGEST, "serving": REFERENCE@DIGEST}."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: release/push_images.sh writes it after pushing the images") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(raw, dict) or sorted(raw) != sorted(IMAGES):
        raise ValueError(f"{path} holds {sorted(raw) if isinstance(raw, dict) else raw!r}; expected exactly the "
                         f"images {', '.join(IMAGES)}")
    return {name: Image.parse(str(raw[name]), f"{path}: {name}") for name in IMAGES}


def write_images(images: Mapping[str, Image], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: image.reference for name, image in images.items()}, indent=1) + "\n")


def compile_templates(images: Mapping[str, Image], output: Path) -> list[Path]:
    """Every template, compiled with the images by digest. In a process of its own: pipelines/settings.py
    reads the image settings once, at import."""
    environment = {**os.environ, **{setting: images[name].reference for name, setting in IMAGE_SETTINGS.items()}}
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "runner.py"), "--compile", "--output", str(output)],
                            env=environment, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ReleaseError(f"compiling the templates failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return sorted(Path(output).glob("*.json"))


def template_digests(folder: Path) -> dict[str, str]:
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise ValueError(f"{folder} holds no *.json template")
    return {path.name: "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def manifest_uri(bucket: str, commit: str) -> str:
    return f"gs://{bucket}/{RELEASES_PREFIX}/{commit}/{MANIFEST_NAME}"


def build_manifest(commit: str, images: Mapping[str, Image], templates: Path) -> dict:
    return {"commit": commit, "images": {name: image.reference for name, image in images.items()},
            "templates": template_digests(templates)}


def record(commit: str, images: Mapping[str, Image], templates: Path, bucket: str, storage_client=None) -> str:
    """Writes the manifest of a release that passed; returns its URI."""
    manifest = build_manifest(commit, images, templates)
    if storage_client is None:
        from google.cloud import storage

        storage_client = storage.Client()
    uri = manifest_uri(bucket, commit)
    blob = storage_client.bucket(bucket).blob(f"{RELEASES_PREFIX}/{commit}/{MANIFEST_NAME}")
    try:
        blob.upload_from_string(json.dumps(manifest, indent=1, sort_keys=True) + "\n", content_type="application/json")
    except Exception as error:  # google.api_core errors: NotFound (bucket), Forbidden, transport
        raise ReleaseError(f"writing {uri} failed: {type(error).__name__}: {error}") from None
    return uri


@dataclasses.dataclass(frozen=True)
class Promotion:
    images: dict[str, Image]  # this environment's references, same digests
    copies: list[tuple[str, str, str]]  # (source by digest, destination tagged with the commit, digest)
    templates: dict[str, bytes]  # name -> retargeted template


def retarget(source_manifest: Mapping, templates: Mapping[str, bytes], repository: str, tag: str) -> Promotion:
    """The source release's templates with its image references moved to `repository`; refuses templates
    that are not the ones the manifest recorded, and any other trace of the source registry."""
    source = {name: Image.parse(str(source_manifest.get("images", {}).get(name, "")), f"the manifest's {name} image")
              for name in IMAGES}
    recorded = source_manifest.get("templates") or {}
    if sorted(recorded) != sorted(templates):
        raise ReleaseError(f"the release published {sorted(templates)}, its manifest records {sorted(recorded)}")
    images = {name: Image(repository, image.name, image.digest) for name, image in source.items()}
    retargeted = {}
    for name, content in sorted(templates.items()):
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        if digest != recorded[name]:
            raise ReleaseError(f"{name} is not the template the release recorded ({digest}, manifest "
                               f"{recorded[name]}): it changed after the release")
        text = content.decode("utf-8")
        if source["pipeline"].reference not in text:
            raise ReleaseError(f"{name} does not name the release's pipeline image {source['pipeline'].reference}")
        for image_name in IMAGES:
            text = text.replace(source[image_name].reference, images[image_name].reference)
        if source["pipeline"].repository in text:
            left = sorted(set(re.findall(re.escape(source["pipeline"].repository) + r"[^\"\s]*", text)))
            raise ReleaseError(f"{name} still names the source registry after retargeting: {left}")
        retargeted[name] = text.encode("utf-8")
    copies = [(source[name].reference, f"{repository}/{source[name].name}:{tag}", source[name].digest)
              for name in IMAGES]
    return Promotion(images, copies, retargeted)


def promote(source_bucket: str, commit: str, repository: str, output: Path) -> Promotion:
    """Reads the source release (manifest and templates), retargets it and writes what the next steps use."""
    from storage import uri as storage_uri

    location = manifest_uri(source_bucket, commit)
    try:
        manifest = json.loads(storage_uri.read_bytes(location))
    except FileNotFoundError:
        raise ReleaseError(f"{location} does not exist: the source environment's release of {commit} has not "
                           "passed (it writes its manifest last). Promote once it has.") from None
    except PermissionError as error:
        raise ReleaseError(f"{location} cannot be read: {error} (the source environment's Terraform grants "
                           "this release build read access through its promotion_reader)") from None
    if manifest.get("commit") != commit:
        raise ReleaseError(f"{location} records commit {manifest.get('commit')!r}, not {commit}")
    templates = {}
    for name in sorted(manifest.get("templates") or {}):
        template_uri = f"gs://{source_bucket}/{RELEASES_PREFIX}/{commit}/{name}"
        try:
            templates[name] = storage_uri.read_bytes(template_uri)
        except FileNotFoundError:
            raise ReleaseError(f"{template_uri} does not exist, though the manifest records it") from None
    promotion = retarget(manifest, templates, repository, commit)
    folder = output / "templates"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in promotion.templates.items():
        (folder / name).write_bytes(content)
    write_images(promotion.images, output / "images.json")
    (output / "copies.txt").write_text("".join(" ".join(copy) + "\n" for copy in promotion.copies))
    return promotion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.manifest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    compile_ = commands.add_parser("compile", help="compile every template with the images by digest")
    compile_.add_argument("--images", type=Path, required=True)
    compile_.add_argument("--output", type=Path, required=True)
    record_ = commands.add_parser("record", help="write the manifest of a release that passed")
    record_.add_argument("--images", type=Path, required=True)
    record_.add_argument("--templates", type=Path, required=True)
    record_.add_argument("--commit", required=True)
    record_.add_argument("--bucket", required=True)
    promote_ = commands.add_parser("promote", help="take the source environment's release of a commit")
    promote_.add_argument("--source-bucket", required=True)
    promote_.add_argument("--commit", required=True)
    promote_.add_argument("--repository", required=True, help="this environment's images repository")
    promote_.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "commit", None) is not None and not _COMMIT.fullmatch(args.commit):
            raise ValueError(f"--commit {args.commit!r}: expected a commit SHA (7 to 40 hex digits)")
        if args.command == "compile":
            for path in compile_templates(read_images(args.images), args.output):
                print(f"compiled {path}")
        elif args.command == "record":
            print(f"release recorded: {record(args.commit, read_images(args.images), args.templates, args.bucket)}")
        else:
            promotion = promote(args.source_bucket, args.commit, args.repository, args.output)
            for source, destination, _ in promotion.copies:
                print(f"to copy: {source} -> {destination}")
            print(f"templates retargeted: {', '.join(promotion.templates)} (in {args.output / 'templates'})")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
