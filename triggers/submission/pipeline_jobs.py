"""The one module that builds and submits Vertex AI PipelineJob requests.

`submit_run(RunRequest, VertexTarget)` sends the v1 `pipelineJobs.create` REST
call that `google.cloud.aiplatform.PipelineJob(...).submit()` sends (the tests
compare the two on the wire), without importing that library: it costs seconds
and hundreds of MB on every cold start.

Idempotency: callers derive `job_id` from the event, so a redelivered event asks
for the same id and Vertex answers 409 ALREADY_EXISTS, which counts as success.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from triggers.config import VertexConfig
from triggers.submission import transport
from triggers.submission.errors import InvalidRequest
from triggers.submission.images import ForeignImages, apply_policy, pulls_images
from triggers.submission.templates import PipelineTemplate, load_template

# Vertex's rule for job ids: `pipelineJobId` "should be less than 128 characters" (the v1 discovery
# document's pipelineJobs.create parameter and aiplatform_v1 CreatePipelineJobRequest.pipeline_job_id), and
# starts with a letter as aiplatform's own check wants (google/cloud/aiplatform/constants/pipeline.py
# _VALID_NAME_PATTERN, whose {0,127} would allow 128). The local pipelines API applies the same rule.
MAX_JOB_ID_LENGTH = 127
JOB_ID_PATTERN = re.compile(rf"[a-z][-a-z0-9]{{0,{MAX_JOB_ID_LENGTH - 1}}}")
_JOB_ID_DIGEST_LENGTH = 10
LABEL_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_PATTERN = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    project: str
    region: str
    pipeline_root: str
    api_endpoint: str
    template_cache_seconds: float = 300

    @classmethod
    def from_config(cls, config: VertexConfig) -> VertexTarget:
        return cls(project=config.project, region=config.region, pipeline_root=config.pipeline_root,
                   api_endpoint=config.api_endpoint, template_cache_seconds=config.template_cache_seconds)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What a trigger asks for: one run of one template."""

    template_uri: str
    parameter_values: Mapping[str, Any]
    labels: Mapping[str, str]
    service_account: str | None
    job_id: str
    display_name: str | None = None
    # aiplatform's `enable_caching`: None keeps each task's compiled option; True/False sets every task's.
    enable_caching: bool | None = None
    # Images outside the target project (triggers/submission/images.py): the functions submit the release's
    # own templates ("allow"); `runner.py --submit` refuses them, or rewrites them on request.
    foreign_images: ForeignImages = "allow"


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    job_id: str
    job_name: str
    created: bool  # False: a run with this id already existed (a redelivery)


def slug(text: str, max_length: int = 63) -> str:
    """Lowercase letters, digits and dashes: safe in job ids and label values."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].rstrip("-")


def make_job_id(*parts: str) -> str:
    """Joins slugged parts into a valid job id; long ids keep a hash of the whole so they stay unique."""
    joined = "-".join(s for s in (slug(part, MAX_JOB_ID_LENGTH) for part in parts) if s)
    if not joined or not joined[0].isalpha():
        joined = f"run-{joined}"
    if len(joined) > MAX_JOB_ID_LENGTH:
        digest = hashlib.sha256(joined.encode()).hexdigest()[:_JOB_ID_DIGEST_LENGTH]
        joined = f"{joined[:MAX_JOB_ID_LENGTH - _JOB_ID_DIGEST_LENGTH - 1].rstrip('-')}-{digest}"
    return joined


def check_request(run: RunRequest) -> None:
    """Local checks Vertex would otherwise answer with a 400."""
    problems = []
    if not JOB_ID_PATTERN.fullmatch(run.job_id):
        problems.append(f"job id {run.job_id!r}: expected a lowercase letter then up to {MAX_JOB_ID_LENGTH - 1} "
                        f"of [-a-z0-9] ({MAX_JOB_ID_LENGTH} characters at most)")
    if len(run.labels) > MAX_LABELS:
        problems.append(f"{len(run.labels)} labels: expected at most {MAX_LABELS}")
    for key, value in run.labels.items():
        if not isinstance(key, str) or not LABEL_KEY_PATTERN.fullmatch(key):
            problems.append(f"label key {key!r}: expected a lowercase letter then up to 62 of [a-z0-9_-]")
        if not isinstance(value, str) or not LABEL_VALUE_PATTERN.fullmatch(value):
            problems.append(f"label {key}={value!r}: expected up to 63 of [a-z0-9_-]")
    if run.display_name is not None and not 0 < len(run.display_name) <= 128:
        problems.append(f"display name {run.display_name!r}: expected 1 to 128 characters")
    if problems:
        raise InvalidRequest("invalid run request: " + "; ".join(problems))


def with_caching(spec: Mapping[str, Any], enable_caching: bool) -> dict[str, Any]:
    """A copy of `spec` whose every task has `cachingOptions = {"enableCache": enable_caching}`: the tasks of
    the root DAG and of every sub-DAG, exactly as aiplatform's `PipelineJob(enable_caching=...)` rewrites
    them (`google.cloud.aiplatform.pipeline_jobs._set_enable_caching_value`)."""
    spec = copy.deepcopy(dict(spec))  # the template's spec is shared by warm invocations
    for component in [spec["root"], *spec.get("components", {}).values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {"enableCache": enable_caching}
    return spec


def build_pipeline_job(template: PipelineTemplate, run: RunRequest, pipeline_root: str) -> dict[str, Any]:
    """The `PipelineJob` body of `pipelineJobs.create` (REST v1)."""
    check_request(run)
    template.check_values(run.parameter_values)
    body: dict[str, Any] = {
        "displayName": run.display_name or run.job_id,
        "pipelineSpec": template.spec if run.enable_caching is None else with_caching(template.spec,
                                                                                      run.enable_caching),
        "runtimeConfig": {
            "gcsOutputDirectory": pipeline_root,
            # Unset parameters are left to the template's defaults, as aiplatform does.
            "parameterValues": {name: value for name, value in run.parameter_values.items() if value is not None},
        },
        "labels": dict(run.labels),
    }
    if run.service_account:
        body["serviceAccount"] = run.service_account
    return body


def create_url(target: VertexTarget, job_id: str) -> str:
    return f"{target.api_endpoint}/v1/{target.parent}/pipelineJobs?pipelineJobId={quote(job_id, safe='')}"


def prepare(run: RunRequest, target: VertexTarget) -> tuple[str, dict[str, Any]]:
    """URL and body of the create call, checked but not sent (the CLI's --dry-run shows them)."""
    template = load_template(run.template_uri, max_age_seconds=target.template_cache_seconds)
    if pulls_images(target.api_endpoint):
        template = apply_policy(template, run.parameter_values, target.project, run.foreign_images)
    return create_url(target, run.job_id), build_pipeline_job(template, run, target.pipeline_root)


def submit_run(run: RunRequest, target: VertexTarget) -> SubmitResult:
    """Creates the run. 409 (already exists) is success; see triggers.submission.errors for the rest."""
    url, body = prepare(run, target)
    response = transport.send("POST", url, json_body=body)
    job_name = f"{target.parent}/pipelineJobs/{run.job_id}"
    if response.status_code == 409:
        return SubmitResult(job_id=run.job_id, job_name=job_name, created=False)
    transport.raise_for_status(response, f"creating pipeline job {run.job_id}")
    # Created all the same if the reply is odd: the name is only for the log line.
    with contextlib.suppress(ValueError, AttributeError):
        job_name = response.json().get("name", job_name)
    return SubmitResult(job_id=run.job_id, job_name=job_name, created=True)
