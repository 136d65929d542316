"""The one place where the Vertex form of a step and its local form part ways.

On Vertex the train step runs as a Vertex Training CustomJob on a machine of its
own (GCPC `create_custom_training_job_from_component`): a container op, which
kfp.local cannot run. Locally the same component runs as a subprocess. Both
forms take the same inputs and produce the same outputs, so the DAG is one
(tests/pipeline/test_compiled_templates.py proves it). The registry needs no swap here:
`registry_uri` picks its backend at run time (registry/model_registry.py).

The CustomJob runs as the pipeline run's own service account. Left empty, GCPC's `service_account`
means Vertex's Custom Code Service Agent (GCPC v1/custom_job/utils.py; CustomJobSpec.service_account),
an identity that can read every bucket of the project; GCPC's SERVICE_ACCOUNT_PLACEHOLDER is resolved
by Vertex at run time to the PipelineJob's `serviceAccount` (the Compute Engine default one when the
run names none: google_cloud_pipeline_components/_placeholders.py).
"""

from __future__ import annotations

from typing import Literal

from components.train_model import train_model
from pipelines.settings import SETTINGS

Platform = Literal["vertex", "local"]


def train_step(platform: Platform):
    if platform == "local":
        return train_model
    from google_cloud_pipeline_components._placeholders import SERVICE_ACCOUNT_PLACEHOLDER
    from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component

    return create_custom_training_job_from_component(
        train_model, display_name="train-model", machine_type=SETTINGS.training_machine_type,
        service_account=SERVICE_ACCOUNT_PLACEHOLDER)
