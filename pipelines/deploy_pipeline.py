"""Deploy pipeline: a registered model version onto an endpoint, as a canary when a champion serves.

Steps, in the order they run:
1. Deploy: get or create the endpoint (`endpoint_display_name`, default the model name), read its live
   deployed models and split, and act on what it finds:
   - nothing deployed: the version takes 100% and becomes `champion`;
   - the champion deployed: the version goes beside it at `canary_percent` (the first step of the canary
     decision's rollout), the champion keeps the rest;
   - the version already deployed: nothing (a rerun is idempotent).
   Every change is a journaled step, so a run killed mid-way is finished by the next one.
2. Smoke test (inside the same step, so a failure is the step's failure): the instances recorded with
   their predictions at registration go through the endpoint to the new deployed model and must get the
   same answers; if not, the version is rolled back (alias `rejected`) and the run fails.

On Vertex (`registry_uri=vertex`) the endpoint is a Vertex AI endpoint (machine type and replica counts
apply), created with request-response logging to BigQuery (`request_log_table`, one per environment;
empty: a dataset Vertex creates in the project) at `request_log_sampling_rate`, or brought to that logging
if found without it: Model Monitoring reads the endpoint's traffic from that log. With a local registry
folder it is the local endpoint beside it (`local/endpoint`, whose request log has its own settings).
The training pipeline runs this same definition as a nested pipeline after registration.
"""

from kfp import dsl

from components.deploy_model import deploy_model
from contract.dataset import load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG
from registry.model_registry import CHALLENGER, VERTEX

PIPELINE_NAME = "deploy-pipeline"
DEFAULT_MACHINE_TYPE = "n1-standard-2"
DEFAULT_REQUEST_LOG_SAMPLING_RATE = 1.0  # every request: drift on a day's traffic needs them all at this volume


def build_deploy_pipeline():
    default_model_name = load_dataset_config(DEFAULT_DATASET_CONFIG).model_name

    @dsl.pipeline(name=PIPELINE_NAME, description="Deploy a registered version: first at 100%, else as a canary.")
    def deploy_pipeline(
        model_name: str = default_model_name,
        version: str = CHALLENGER,  # a version number or an alias
        endpoint_display_name: str = "",  # "": the model name on Vertex, local/endpoint locally
        canary_percent: int = 10,
        machine_type: str = DEFAULT_MACHINE_TYPE,
        min_replica_count: int = 1,
        max_replica_count: int = 1,
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        request_log_table: str = "",  # bq://PROJECT.DATASET.TABLE: the dataset must exist, the table must not
        request_log_sampling_rate: float = DEFAULT_REQUEST_LOG_SAMPLING_RATE,
    ):
        deploy_model(model_name=model_name, version=version, endpoint_display_name=endpoint_display_name,
                     canary_percent=canary_percent, machine_type=machine_type, min_replica_count=min_replica_count,
                     max_replica_count=max_replica_count, registry_uri=registry_uri, project=project,
                     location=location, request_log_table=request_log_table,
                     request_log_sampling_rate=request_log_sampling_rate,
                     ).set_display_name("1. Deploy (canary beside the champion) and smoke-test"
                                        ).set_caching_options(False)

    return deploy_pipeline
