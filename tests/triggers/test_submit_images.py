"""`runner.py --submit` and the images a run pulls: compiled/ names this repository's images, in a project no
user's run should pull from; a submission to another project is refused, or rewritten on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trigger_helpers import TRAINING_TEMPLATE

import runner
from pipelines.settings import SETTINGS
from triggers.cli import EXIT_INVALID
from triggers.submission.images import image_project
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, prepare

# A real Vertex endpoint: images are checked only where they would be pulled. Nothing is sent (a refusal
# comes first, or the run is a dry run).
VERTEX = "https://us-central1-aiplatform.googleapis.com"
USER_PROJECT = "my-project"
GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"
COMMITTED_PROJECT = image_project(SETTINGS.pipeline_image)


def submit(*args: str, template: Path = TRAINING_TEMPLATE) -> int:
    return runner.main(["--submit", "--template", str(template), "--project", USER_PROJECT, "--api-endpoint", VERTEX,
                        "--param", "data_uri=gs://my-project-landing/data/processed/2014/03",
                        "--param", "data_version=v1", *args])


def test_the_committed_templates_name_this_repositorys_images():
    assert COMMITTED_PROJECT == "vertex-mlops" and image_project(SETTINGS.serving_image) == COMMITTED_PROJECT
    assert SETTINGS.pipeline_image in TRAINING_TEMPLATE.read_text()


def test_a_template_with_another_projects_images_is_refused_before_anything_is_sent(trigger_env, capsys):
    assert submit() == EXIT_INVALID  # no --dry-run: had it tried to send, it would have failed otherwise
    error = capsys.readouterr().err
    for image in (SETTINGS.pipeline_image, SETTINGS.serving_image):
        assert f"{image} (project {COMMITTED_PROJECT}" in error, error
    assert f"Expected images in {USER_PROJECT}" in error and "--rewrite-images" in error
    assert f"gs://{USER_PROJECT}-templates/compiled/training_pipeline.json" in error
    assert GCPC_IMAGE not in error  # Google's launcher image is public to every project


def test_every_compiled_template_is_refused_for_another_project(trigger_env, capsys):
    for template in sorted(TRAINING_TEMPLATE.parent.glob("*.json")):
        code = runner.main(["--submit", "--template", str(template), "--project", USER_PROJECT, "--api-endpoint",
                            VERTEX, "--dry-run", *_required_parameters(template)])
        assert code == EXIT_INVALID, template.name
        assert SETTINGS.pipeline_image in capsys.readouterr().err, template.name


def _required_parameters(template: Path) -> list[str]:
    declared = json.loads(template.read_text())["root"]["inputDefinitions"]["parameters"]
    args = []
    for name, definition in declared.items():
        if not definition.get("isOptional") and "defaultValue" not in definition:
            args += ["--param", f"{name}={'gs://b/x' if definition['parameterType'] == 'STRING' else '1'}"]
    return args


def test_the_release_template_of_the_target_project_is_accepted(trigger_env, tmp_path, capsys):
    # What cloudbuild.yaml's compile-release writes for the project it deploys: its own images.
    release = tmp_path / "training_pipeline.json"
    release.write_text(TRAINING_TEMPLATE.read_text().replace(f"/{COMMITTED_PROJECT}/", f"/{USER_PROJECT}/"))
    assert submit("--dry-run", template=release) == 0
    assert json.loads(capsys.readouterr().out)["url"].startswith(f"{VERTEX}/v1/projects/{USER_PROJECT}/")


def test_rewrite_images_moves_every_image_of_the_template_into_the_target_project(trigger_env, capsys):
    assert submit("--rewrite-images", "--dry-run") == 0
    notes = capsys.readouterr().err
    for image in (SETTINGS.pipeline_image, SETTINGS.serving_image):
        moved = image.replace(f"/{COMMITTED_PROJECT}/", f"/{USER_PROJECT}/")
        assert f"note: image {image} (project {COMMITTED_PROJECT}) is taken as {moved}" in notes

    target = VertexTarget(project=USER_PROJECT, region="us-central1", pipeline_root="gs://my-project-root/runs",
                          api_endpoint=VERTEX)
    run = RunRequest(template_uri=str(TRAINING_TEMPLATE), parameter_values={"data_uri": "gs://b/x"}, labels={},
                     service_account=None, job_id="rewritten", foreign_images="rewrite")
    _, body = prepare(run, target)
    spec = body["pipelineSpec"]
    executors = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
    assert executors == {f"us-central1-docker.pkg.dev/{USER_PROJECT}/mlops/pipeline:latest", GCPC_IMAGE}
    [pool] = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]["worker_pool_specs"][
        "defaultValue"]
    assert pool["container_spec"]["image_uri"] == f"us-central1-docker.pkg.dev/{USER_PROJECT}/mlops/pipeline:latest"
    assert spec["root"]["inputDefinitions"]["parameters"]["serving_image"]["defaultValue"] == (
        f"us-central1-docker.pkg.dev/{USER_PROJECT}/mlops/serving:latest")
    assert f"/{COMMITTED_PROJECT}/" not in json.dumps(body)
    assert json.loads(TRAINING_TEMPLATE.read_text()) != spec  # the cached template itself is untouched


def test_an_image_the_run_names_itself_is_never_rewritten(trigger_env, capsys):
    foreign = "europe-docker.pkg.dev/someone-else/images/serving:v2"
    assert submit("--rewrite-images", "--param", f"serving_image={foreign}", "--dry-run") == EXIT_INVALID
    assert f"{foreign} (project someone-else: parameter serving_image)" in capsys.readouterr().err


@pytest.mark.parametrize(("image", "project"), [
    ("us-central1-docker.pkg.dev/my-project/mlops/pipeline:latest", "my-project"),
    ("eu.gcr.io/my-project/pipeline@sha256:" + "a" * 64, "my-project"),
    ("gcr.io/google.com/cloudsdktool/cloud-sdk:528.0.0", "google.com:cloudsdktool"),
    ("python:3.11.7-slim-bookworm", None),
    ("docker.io/library/python:3.11", None),
    ("gs://my-project-templates/compiled/training_pipeline.json", None),
])
def test_image_projects_are_read_from_artifact_and_container_registry_references(image, project):
    assert image_project(image) == project


def test_the_local_pipelines_api_pulls_no_image_and_takes_compiled_as_it_is(trigger_env, fake_vertex, capsys):
    # A loopback endpoint (the local pipelines API, or this stand-in) runs no container.
    assert runner.main(["--submit", "--template", str(TRAINING_TEMPLATE), "--project", USER_PROJECT,
                        "--param", "data_uri=gs://b/x", "--param", "data_version=v1", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["url"].startswith(fake_vertex.url)
