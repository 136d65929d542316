"""The container images a run would pull, and whether they are the target project's own.

A template is compiled against images (pipelines/settings.py: MLOPS_PIPELINE_IMAGE, MLOPS_SERVING_IMAGE),
so the templates committed in compiled/ name this repository's images, in a project no user's run can
pull from (or should: every step would run code from someone else's registry, and the default
`serving_image` would be registered with each model). The release compiles its own templates against
the images it pushed to the project it deploys (cloudbuild.yaml, compile-release), and those pass.

Every string in the template (executor images, the CustomJob's `image_uri`, parameter defaults such as
`serving_image`) and every run parameter that is a whole image reference in Artifact Registry
(`LOCATION-docker.pkg.dev/PROJECT/...`) or Container Registry (`[REGION.]gcr.io/PROJECT/...`) is checked:
the project must be the target's, or one of the projects Google publishes its own images from. Images
in other registries (Docker Hub...) belong to no project and are left alone.

Policies (RunRequest.foreign_images): "allow" (the trigger functions: they read the release's own
templates), "refuse" (`runner.py --submit`: names each image and the project expected) and "rewrite"
(`--submit --rewrite-images`: the same registry, repository, image and tag in the target project; a
parameter the run sets itself is never rewritten, only refused). A run sent to a loopback API endpoint
(the local pipelines API, a test's stand-in) pulls no image and is not checked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from triggers.config import LOOPBACK_HOSTS
from triggers.submission.errors import InvalidRequest
from triggers.submission.templates import PipelineTemplate

ForeignImages = Literal["allow", "refuse", "rewrite"]

# host/PROJECT/rest; a domain-scoped project (`example.com:project`) is written `example.com/project`.
_IMAGE = re.compile(r"(?P<host>[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)/"
                    r"(?P<project>(?:[a-z0-9-]+(?:\.[a-z0-9-]+)+/)?[a-z][a-z0-9-]{4,28}[a-z0-9])/"
                    r"(?P<rest>[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?)")
# Projects Google publishes images from for every project to pull: GCPC's launcher image
# (google_cloud_pipeline_components/_image.py: gcr.io/ml-pipeline/google-cloud-pipeline-components) and
# Vertex AI's prebuilt training and prediction containers (us-docker.pkg.dev/vertex-ai/...,
# gcr.io/cloud-aiplatform/..., gcr.io/deeplearning-platform-release/...).
GOOGLE_PUBLISHED_PROJECTS = frozenset({"ml-pipeline", "vertex-ai", "cloud-aiplatform",
                                       "deeplearning-platform-release"})


@dataclasses.dataclass(frozen=True)
class ImageReference:
    image: str
    project: str  # as Google writes it: `example.com:project` for a domain-scoped one
    places: tuple[str, ...]  # where the run uses it: a path in the template, or `parameter NAME`
    set_by_run: bool  # a parameter value the run sets, not the template

    def in_project(self, project: str) -> str:
        """The same registry, repository, image and tag in `project`."""
        match = _IMAGE.fullmatch(self.image)
        return f"{match['host']}/{project.replace(':', '/')}/{match['rest']}"


def image_project(text: str) -> str | None:
    """The project of an Artifact Registry or Container Registry image reference, else None."""
    match = _IMAGE.fullmatch(text)
    return match["project"].replace("/", ":") if match else None


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in _strings(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _strings(item, f"{path}[{index}]")]
    return []


def images_in(spec: Mapping[str, Any], values: Mapping[str, Any]) -> list[ImageReference]:
    """Every project-scoped image the run would use, once each, with the places it is named."""
    places: dict[tuple[str, bool], list[str]] = {}
    found = [(path, text, False) for path, text in _strings(spec, "")]
    found += [(f"parameter {path}", text, True) for path, text in _strings(dict(values), "")]
    for path, text, set_by_run in found:
        if image_project(text):
            places.setdefault((text, set_by_run), []).append(path)
    return [ImageReference(image, image_project(image), tuple(paths), set_by_run)
            for (image, set_by_run), paths in places.items()]


def foreign_images(spec: Mapping[str, Any], values: Mapping[str, Any], project: str) -> list[ImageReference]:
    """The images outside `project` that Google does not publish for everyone."""
    return [reference for reference in images_in(spec, values)
            if reference.project != project and reference.project not in GOOGLE_PUBLISHED_PROJECTS]


def pulls_images(api_endpoint: str) -> bool:
    """False for a loopback endpoint: the local pipelines API runs the steps here, a stand-in runs nothing."""
    return urlsplit(api_endpoint).hostname not in LOOPBACK_HOSTS


# Places in a KFP template, as a person reads them.
_PLACES = ((re.compile(r"deploymentSpec\.executors\.([^.]+)\.container\.image"), r"executor \1"),
           (re.compile(r"components\.([^.]+)\.inputDefinitions\.parameters\.worker_pool_specs\..*image_uri"),
            r"the CustomJob of \1"),
           (re.compile(r"root\.inputDefinitions\.parameters\.([^.]+)\.defaultValue"), r"the default of \1"))


def _where(reference: ImageReference) -> str:
    shown = []
    for place in reference.places[:3]:
        for pattern, readable in _PLACES:
            place = pattern.sub(readable, place)
        shown.append(place)
    more = f" and {len(reference.places) - 3} more" if len(reference.places) > 3 else ""
    return ", ".join(shown) + more


def _replace(value: Any, rewrites: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return rewrites.get(value, value)
    if isinstance(value, Mapping):
        return {key: _replace(item, rewrites) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, rewrites) for item in value]
    return value


def apply_policy(template: PipelineTemplate, values: Mapping[str, Any], project: str,
                 policy: ForeignImages) -> PipelineTemplate:
    """The template to submit to `project`: as is, refused (InvalidRequest naming every image outside the
    project and the project expected) or with the template's foreign images moved into the project."""
    if policy == "allow":
        return template
    foreign = foreign_images(template.spec, values, project)
    if not foreign:
        return template
    set_by_run = [reference for reference in foreign if reference.set_by_run]
    if policy == "refuse" or set_by_run:
        listed = "; ".join(f"{reference.image} (project {reference.project}: {_where(reference)})"
                           for reference in (set_by_run if policy == "rewrite" else foreign))
        if policy == "rewrite":
            raise InvalidRequest(f"the run sets images outside project {project}: {listed}. Expected images in "
                                 f"{project}: --rewrite-images moves only the template's own images")
        raise InvalidRequest(
            f"template {template.uri} names images outside project {project}, which Vertex AI would pull for "
            f"this run: {listed}. Expected images in {project}: submit the template the release published "
            f"for {project} (gs://{project}-templates/compiled/{template.uri.rsplit('/', 1)[-1]} by default, "
            f"or its Artifact Registry version), recompile with MLOPS_PIPELINE_IMAGE and MLOPS_SERVING_IMAGE "
            f"set to images in {project}, or pass --rewrite-images to use the same repository, image and tag "
            f"in {project}")
    rewrites = {reference.image: reference.in_project(project) for reference in foreign}
    return PipelineTemplate(uri=template.uri, spec=_replace(template.spec, rewrites))
