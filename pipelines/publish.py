"""Publishes compiled templates: to Artifact Registry (a KFP repository) and to Cloud Storage.

    python -m pipelines.publish --templates build/release --bucket my-project-templates \\
        --registry https://us-central1-kfp.pkg.dev/my-project/mlops-templates --tag "$COMMIT_SHA"

For every `*.json` template in `--templates`, in this order:
1. Artifact Registry, through `kfp.registry.RegistryClient.upload_pipeline`, tagged with each `--tag`
   and `latest` (a run can start from `https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG`);
2. `gs://BUCKET/releases/TAG/NAME.json`: the release's own copy, never overwritten by another release;
3. `gs://BUCKET/compiled/NAME.json`: the copy the trigger functions read (MLOPS_*_TEMPLATE_URI).
The functions' copies are written last, after every upload of every template succeeded, so a release
that fails half way leaves them on the previous release.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from storage.uri import split_gcs

CURRENT_PREFIX = "compiled"  # terraform/modules/platform/config.tf names the same (templates_prefix)
RELEASES_PREFIX = "releases"
LATEST_TAG = "latest"
# Artifact Registry tag ids: letters, digits, dots, dashes and underscores (a commit SHA, v1.2.3).
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class PublishError(Exception):
    """A template could not be published; the message names it, where it was going, and why."""


@dataclasses.dataclass(frozen=True)
class Published:
    template: str  # file name, e.g. training_pipeline.json
    package: str  # the registry's package (the pipeline's name)
    version: str  # the registry's version: sha256:...
    uris: tuple[str, ...]  # the gs:// copies


def templates_in(folder: Path) -> list[Path]:
    """The KFP templates in `folder`, sorted; anything else there is refused by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder of compiled templates (python runner.py --compile --output DIR)")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise PublishError(f"{folder} holds no *.json template (python runner.py --compile --output {folder})")
    for path in paths:
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PublishError(f"{path} is not a JSON template: {error}") from None
        if not isinstance(spec, dict) or "pipelineSpec" in spec or not spec.get("pipelineInfo", {}).get("name") \
                or "root" not in spec:
            raise PublishError(f"{path} is not a KFP v2 template (expected pipelineInfo.name and root at the top)")
    return paths


def publish(folder: Path, bucket: str, registry: str, tags: Sequence[str], registry_client=None,
            storage_client=None) -> list[Published]:
    """Publishes every template in `folder`; returns what went where. Clients are made when not given."""
    tags = list(dict.fromkeys([*tags, LATEST_TAG]))
    bad = [tag for tag in tags if not _TAG.fullmatch(tag) or tag.startswith("sha256:")]
    if bad:
        raise PublishError(f"tag(s) {bad} are not valid: expected letters, digits, '.', '-' or '_', "
                           "such as a commit SHA")
    release = tags[0]
    paths = templates_in(folder)
    bucket_name, rest = split_gcs(bucket if bucket.startswith("gs://") else f"gs://{bucket}")
    if rest.strip("/"):
        raise PublishError(f"--bucket {bucket!r}: expected a bucket name, not a path")
    if registry_client is None:
        from kfp.registry import RegistryClient

        try:  # an Artifact Registry host reads Application Default Credentials here
            registry_client = RegistryClient(host=registry)
        except Exception as error:
            raise PublishError(f"cannot reach the registry {registry}: {_reason(error)}") from None
    if storage_client is None:
        from google.cloud import storage

        storage_client = storage.Client()

    uploaded = []
    for path in paths:
        try:
            package, version = registry_client.upload_pipeline(file_name=str(path), tags=tags)
        except Exception as error:  # requests' HTTPError, connection errors, google-auth errors
            raise PublishError(f"uploading {path.name} to {registry} failed: {_reason(error)}") from None
        uploaded.append((path, package, version))

    target = storage_client.bucket(bucket_name)

    def write(path: Path, name: str) -> str:
        try:
            target.blob(name).upload_from_filename(str(path), content_type="application/json")
        except Exception as error:  # google.api_core errors: NotFound (bucket), Forbidden, transport
            raise PublishError(f"writing {path.name} to gs://{bucket_name}/{name} failed: {_reason(error)}") from None
        return f"gs://{bucket_name}/{name}"

    releases = {path: write(path, f"{RELEASES_PREFIX}/{release}/{path.name}") for path, _, _ in uploaded}
    return [Published(path.name, package, version, (releases[path], write(path, f"{CURRENT_PREFIX}/{path.name}")))
            for path, package, version in uploaded]


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if response is not None and getattr(response, "status_code", None) is not None:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=Path, required=True, help="folder of compiled templates (*.json)")
    parser.add_argument("--bucket", required=True, help="templates bucket (name or gs://NAME)")
    parser.add_argument("--registry", required=True,
                        help="KFP repository: https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY")
    parser.add_argument("--tag", action="append", required=True,
                        help="tag for this release (the first names its gs:// folder); `latest` is added")
    args = parser.parse_args(argv)
    try:
        for published in publish(args.templates, args.bucket, args.registry, args.tag):
            print(f"published {published.template}: {args.registry}/{published.package} {published.version}; "
                  + ", ".join(published.uris))
    except PublishError as error:
        print(f"publish failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
