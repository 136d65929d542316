"""Evaluation pipeline: registered versions on a labelled partition, with training's own gate and report.

Steps, in the order they run:
0. Snapshot (never cached): a `bq://` table pinned to a new snapshot, as in training; files as given.
1. Ingest: the batches under `data_uri` (or the snapshot's rows `row_filter` selects), typed, labelled and
   split as in training.
2. Resolve the versions: the candidate (`candidate`, a version or alias; default `challenger`) copied
   out of the registry, the baseline (`baseline`, default `champion`; "" for none) by URI.
3. Evaluate: the SAME component as training's step 6 (TFMA on the partition's eval split, the gate's
   floors, the change threshold against the baseline), with its metrics, classification artifact and
   HTML report. Standalone ("is the champion still good on last month's data?": candidate champion,
   baseline "") and as the canary decision's labelled evidence.
"""

from kfp import dsl

from components.evaluate_model import evaluate_model
from components.ingest_data import ingest_data
from components.resolve_versions import resolve_versions
from components.snapshot_data import snapshot_data
from contract.paths import DEFAULT_DATASET_CONFIG
from dataprep.bigquery_source import DEFAULT_EXPIRATION_DAYS
from registry.model_registry import CHALLENGER, CHAMPION, VERTEX

PIPELINE_NAME = "evaluation-pipeline"


def build_evaluation_pipeline():
    @dsl.pipeline(name=PIPELINE_NAME, description="Registered versions on a labelled partition: gate and report.")
    def evaluation_pipeline(
        data_uri: str,
        data_version: str = "",
        dataset_config: str = DEFAULT_DATASET_CONFIG,
        row_filter: str = "",  # bq:// only: one SQL condition on the table's columns
        snapshot_expiration_days: int = DEFAULT_EXPIRATION_DAYS,  # bq:// only; 0: never
        model_name: str = "",  # "": the data set config's model_name
        candidate: str = CHALLENGER,
        baseline: str = CHAMPION,
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        min_auc: float = 0.7,
        max_auc_regression: float = 0.01,
        beam_runner: str = "DirectRunner",
        beam_pipeline_args: list = [],  # noqa: B006 (KFP reads the default; it is never mutated)
    ):
        pinned = snapshot_data(data_uri=data_uri, data_version=data_version,
                               snapshot_expiration_days=snapshot_expiration_days
                               ).set_display_name("0. Snapshot a BigQuery table (files: as given)")
        pinned.set_caching_options(False)  # a table changes under its name: every run snapshots it anew
        ingest = ingest_data(data_uri=pinned.outputs["data_uri"], data_version=pinned.outputs["data_version"],
                             dataset_config=dataset_config, row_filter=row_filter, beam_runner=beam_runner,
                             beam_pipeline_args=beam_pipeline_args).set_display_name("1. Ingest data")
        versions = resolve_versions(model_name=model_name, dataset_config=dataset_config, candidate=candidate,
                                    baseline=baseline, registry_uri=registry_uri, project=project, location=location
                                    ).set_display_name("2. Resolve the versions").set_caching_options(False)
        evaluate_model(
            model=versions.outputs["candidate_model"], examples=ingest.outputs["examples"],
            dataset_config=dataset_config, model_name=versions.outputs["model_name"],
            champion_uri=versions.outputs["baseline_uri"], champion_version=versions.outputs["baseline_version"],
            min_auc=min_auc, max_auc_regression=max_auc_regression, data_uri=pinned.outputs["data_uri"],
            beam_runner=beam_runner,
            beam_pipeline_args=beam_pipeline_args,
        ).set_display_name("3. Evaluate with TFMA (training's component)").set_caching_options(False)

    return evaluation_pipeline
