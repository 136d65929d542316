"""The Dataflow form of the four Beam steps, offline: the ingest, validation, transform and evaluation
pipelines built with DataflowRunner and the pipeline's Beam settings, translated into a Dataflow job by
Beam's own runner with `--template_location` (the job request is written to a file instead of being sent). Staging
goes to the GCS emulator; nothing reaches Google Cloud. The test reads the job and the pipeline
graph Beam staged for it.

What cannot run here, and is stood in for: the Dataflow service itself (no Google Cloud access), so
the job is checked, not executed (the DirectRunner runs the same pipelines in the other tests);
Google's credential lookup, which offline only retries for half a minute before Beam connects
anonymously, is made to fail at once; and tf.Transform's temp folder is local, because TensorFlow's
own gs:// filesystem cannot reach the emulator (on Dataflow it is the job's temp_location).
"""

from __future__ import annotations

import json

import pytest

from dataprep.beam_options import beam_options
from dataprep.ingest import ingest
from pipelines.settings import SETTINGS
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator

pytestmark = pytest.mark.emulator

PROJECT, REGION = "vertex-mlops", "us-central1"
SERVICE_ACCOUNT = f"dataflow-worker@{PROJECT}.iam.gserviceaccount.com"
SUBNETWORK = f"regions/{REGION}/subnetworks/dataflow"  # a project may have no `default` network


@pytest.fixture(scope="module")
def dataflow(gcs_emulator: GcsEmulator, tmp_path_factory, dataset_config):
    """A step's view on Vertex: its artifacts under the /gcs/ mount (here a folder), Cloud Storage
    behind it (the emulator); the small landing ingested there."""
    from apache_beam.internal.gcp import auth
    from google.auth.exceptions import DefaultCredentialsError

    from tests.pipeline.conftest import copy_partitions

    def no_credentials(pipeline_options):
        raise DefaultCredentialsError("offline test: no Google credentials")

    root = tmp_path_factory.mktemp("dataflow")
    bucket = gcs_emulator.new_bucket("dataflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(EMULATOR_ENV, gcs_emulator.url)
        patch.setenv("MLOPS_GCS_MOUNT", str(root / "gcs"))
        patch.setattr(auth._Credentials, "_get_credentials_with_retrys", staticmethod(no_credentials))
        mounted = root / "gcs" / bucket
        ingest(str(copy_partitions(root / "landing")), dataset_config, mounted / "examples")
        yield {"root": root, "bucket": bucket, "mounted": mounted, "emulator": gcs_emulator}


def _options(dataflow, job: str):
    return beam_options("DataflowRunner", [
        f"--project={PROJECT}", f"--region={REGION}", f"--temp_location=gs://{dataflow['bucket']}/dataflow/tmp",
        f"--service_account_email={SERVICE_ACCOUNT}", "--machine_type=n1-highmem-4", "--max_num_workers=32",
        f"--sdk_container_image={SETTINGS.pipeline_image}", "--sdk_location=container", "--no_auth",
        f"--subnetwork={SUBNETWORK}", "--no_use_public_ips",
        f"--template_location={dataflow['root'] / f'{job}.json'}", f"--job_name={job}"])


def _job_and_graph(dataflow, job: str) -> tuple[dict, dict[str, str]]:
    """The Dataflow job request Beam wrote, and the staged pipeline graph: transform name -> its URN."""
    from apache_beam.portability.api import beam_runner_api_pb2

    from storage import uri as storage_uri

    request = json.loads((dataflow["root"] / f"{job}.json").read_text())
    staged = request["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"]
    assert staged.startswith(f"gs://{dataflow['bucket']}/dataflow/tmp/")  # staged in the emulator
    graph = beam_runner_api_pb2.Pipeline.FromString(storage_uri.read_bytes(staged))
    return request, {transform.unique_name: transform.spec.urn for transform in graph.components.transforms.values()}


def _check_job(request: dict, job: str) -> None:
    assert request["name"] == job
    environment = request["environment"]
    [pool] = environment["workerPools"]
    assert (pool["machineType"], pool["autoscalingSettings"]["maxNumWorkers"]) == ("n1-highmem-4", 32)
    assert (pool["subnetwork"], pool["ipConfiguration"]) == (SUBNETWORK, "WORKER_IP_PRIVATE")
    # The project's code on every worker: the pipeline image runs the SDK harness.
    assert [image["containerImage"] for image in pool["sdkHarnessContainerImages"]] == [SETTINGS.pipeline_image]
    assert environment["serviceAccountEmail"] == SERVICE_ACCOUNT
    assert environment["version"]["job_type"] == "FNAPI_BATCH"
    options = environment["sdkPipelineOptions"]["options"]
    assert (options["project"], options["region"]) == (PROJECT, REGION)


def test_the_transform_pipeline_translates_into_a_dataflow_job(dataflow, dataset_config):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam

    from dataprep.transform import build_transform_pipeline

    options = _options(dataflow, "transform-job")
    mounted = dataflow["mounted"]
    with tft_beam.Context(temp_dir=str(dataflow["root"] / "tft-tmp")):
        pipeline = beam.Pipeline(options=options.pipeline_options())
        build_transform_pipeline(pipeline, options, str(mounted / "examples"), str(dataset_config.source),
                                 str(dataset_config.schema_uri), str(mounted / "graph"), str(mounted / "transformed"))
        pipeline.run()
    request, graph = _job_and_graph(dataflow, "transform-job")
    _check_job(request, "transform-job")
    names = set(graph)
    for step in ("ListtrainShardsForAnalysis", "ReadtrainForAnalysis", "Analyze", "ReadtrainForTransform",
                 "Transformtrain", "ReadevalForTransform", "Transformeval", "WriteTransformFn", "Writetrain",
                 "Writeeval"):
        assert any(name.startswith(step) for name in names), f"{step} is not in the Dataflow job"


def test_the_evaluation_pipeline_translates_into_a_dataflow_job(dataflow, dataset_config):
    import apache_beam as beam

    from evaluation.gate import build_evaluation_pipeline

    options = _options(dataflow, "evaluation-job")
    mounted = dataflow["mounted"]
    pipeline = beam.Pipeline(options=options.pipeline_options())
    outputs = build_evaluation_pipeline(pipeline, options, str(mounted / "examples"), str(mounted / "model"),
                                        f"gs://{dataflow['bucket']}/registry/champion", dataset_config,
                                        str(mounted / "evaluation"))
    assert outputs == {"candidate": f"gs://{dataflow['bucket']}/evaluation/candidate",
                       "champion": f"gs://{dataflow['bucket']}/evaluation/champion"}
    pipeline.run()
    request, graph = _job_and_graph(dataflow, "evaluation-job")
    _check_job(request, "evaluation-job")
    names = set(graph)
    for step in ("ListEvalShards", "SpreadEvalShards", "Score", "CountConfusion", "Evaluatecandidate",
                 "Evaluatechampion"):
        assert any(name.startswith(step) for name in names), f"{step} is not in the Dataflow job"


def test_the_ingest_pipeline_translates_into_a_dataflow_job(dataflow, dataset_config):
    import apache_beam as beam

    from dataprep.beam_ingest import build_ingest_pipeline
    from dataprep.ingest import find_batches
    from tests.pipeline.conftest import copy_partitions

    options = _options(dataflow, "ingest-job")
    mounted = dataflow["mounted"]
    batches = find_batches(str(copy_partitions(mounted / "ingest-landing")))
    assert all(uri.startswith(f"gs://{dataflow['bucket']}/") for uri in batches)  # the workers' view: no mount
    pipeline = beam.Pipeline(options=options.pipeline_options())
    result = build_ingest_pipeline(pipeline, options, batches, dataset_config, str(mounted / "ingested"),
                                   f"gs://{dataflow['bucket']}/dataflow/tmp/ingest")
    assert result == f"gs://{dataflow['bucket']}/dataflow/tmp/ingest/ingest-result.pickle"
    pipeline.run()
    request, graph = _job_and_graph(dataflow, "ingest-job")
    _check_job(request, "ingest-job")
    names = set(graph)
    # Batches and shards spread over the workers (Reshuffle), the kinds decided once and handed to every worker.
    for step in ("ListBatchesForScan", "SpreadBatchesForScan", "ScanBatches", "Decide", "ListBatchesForTyping",
                 "SpreadBatchesForTyping", "TypeLabelSplit", "PlanShards", "SpreadShards", "WriteShards", "Summarise"):
        assert any(name.startswith(step) for name in names), f"{step} is not in the Dataflow job"
    assert "beam:transform:group_by_key:v1" in {graph[name] for name in names if name.startswith("SpreadShards")}


def test_the_validation_pipeline_translates_into_a_dataflow_job(dataflow, dataset_config):
    import apache_beam as beam

    from contract.schema import load_schema
    from dataprep.beam_validation import build_validation_pipeline
    from dataprep.ingest import load_manifest

    options = _options(dataflow, "validation-job")
    mounted = dataflow["mounted"]
    pipeline = beam.Pipeline(options=options.pipeline_options())
    build_validation_pipeline(pipeline, options, str(mounted / "examples"),
                              load_manifest(mounted / "examples").batches, load_schema(dataset_config.schema_uri),
                              f"gs://{dataflow['bucket']}/dataflow/tmp/validation")
    pipeline.run()
    request, graph = _job_and_graph(dataflow, "validation-job")
    _check_job(request, "validation-job")
    names = set(graph)
    for step in ("ListShardsForStatistics", "SpreadShardsForStatistics", "TallyShards", "MergeStatistics",
                 "MergeValidation", "ListShardsForHistograms", "HistogramShards", "MergeHistograms",
                 "WriteStatistics", "WriteValidation", "WriteHistograms"):
        assert any(name.startswith(step) for name in names), f"{step} is not in the Dataflow job"
    # The statistics and validation tallies are merged by combiners (partial tallies on each worker).
    assert "beam:transform:combine_per_key:v1" in {graph[name] for name in names if name.startswith("Merge")}
