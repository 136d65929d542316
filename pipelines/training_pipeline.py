"""Training pipeline: from a landed data partition to a registered model version.

Steps, in the order they run:
0. Snapshot (never cached): a `bq://PROJECT.DATASET.TABLE` data_uri is pinned to a
   new table snapshot (expiring after `snapshot_expiration_days`; a snapshot named
   in data_uri is used as it is), whose name and time become the data_version.
   Files pass through as given.
1. Ingest: read every batch.csv under `data_uri`, or the snapshot's rows that
   `row_filter` selects (BigQuery Storage Read API), type and label them, split
   train/eval by a hash of the split key. `data_version` names the bytes read
   (the triggers pass an object generation or a listing fingerprint; step 0 a
   snapshot): an input of ingest, so that on Vertex its cache key, and through its
   output artifact every later step's, changes whenever the data does, and a rerun
   over the same snapshot is served from the cache.
2. Validate: statistics of both splits; each batch checked against the reviewed
   schema; a critical anomaly stops the run here, before training.
3. Transform: tf.Transform analyzes the train split and transforms both; its
   graph becomes part of the serving model. Ingest, validate, transform and
   evaluate run on Beam: `beam_runner` (DirectRunner by default; DataflowRunner
   at scale) and `beam_pipeline_args` (Beam flags, as TFX passes them: project,
   region, temp location, service account, network, worker settings) reach all
   four steps (ingest and validate on the DirectRunner without flags run their
   plain-Python form in the step: docs/scale.md).
4. Train: the Keras model on the transformed data; exported as a SavedModel
   whose signature takes raw instances as Vertex sends them.
5. Look up the champion: resolve the model name (the data set config's
   `model_name` unless the parameter `model_name` overrides it), then the
   registry's current `champion` of it, if any.
6. Evaluate: TFMA, overall and per slice, against the floors, the data set
   config's gate and the champion (refused if it takes other inputs); writes
   metrics, a classification artifact and an HTML report.
7. Register (only if blessed): a new model version, alias `challenger` (the
   very first also `champion`), with its lineage (data_uri, data_version: for
   BigQuery the snapshot, row_filter, examples, metrics...); refused if a version of the
   model takes other inputs. A few eval instances and their predictions are kept beside the model
   for the deploy's smoke test. A version already made from the same lineage (data version,
   parameters, data set config, code: registry/lineage.py) is named instead, and nothing is registered.
8. Deploy (only if blessed, registered as a new version, and `deploy` is true): the deploy pipeline
   (pipelines/deploy_pipeline.py), nested: the new version at 100% as champion on an empty endpoint,
   else as a `canary_percent` canary beside the champion (the first step of the canary decision's
   rollout), then its smoke test. An unblessed or identical model never reaches the endpoint. On Vertex
   the endpoint logs requests to `request_log_table` (Model Monitoring's and the canary decision's input).
"""


from kfp import dsl

from components.evaluate_model import evaluate_model
from components.ingest_data import ingest_data
from components.lookup_champion import lookup_champion
from components.register_model import register_model
from components.snapshot_data import snapshot_data
from components.transform_data import transform_data
from components.validate_data import validate_data
from contract.paths import DEFAULT_DATASET_CONFIG
from dataprep.bigquery_source import DEFAULT_EXPIRATION_DAYS
from pipelines.deploy_pipeline import DEFAULT_MACHINE_TYPE, DEFAULT_REQUEST_LOG_SAMPLING_RATE, build_deploy_pipeline
from pipelines.platform import Platform, train_step
from pipelines.settings import SETTINGS
from registry.model_registry import VERTEX

PIPELINE_NAME = "training-pipeline"


def build_training_pipeline(platform: Platform):
    """The pipeline for one platform; only the train step's form differs (see pipelines/platform.py)."""
    train = train_step(platform)
    deploy_pipeline = build_deploy_pipeline()

    @dsl.pipeline(name=PIPELINE_NAME, description="Ingest, validate, transform, train, evaluate, register.")
    def training_pipeline(
        data_uri: str,
        data_version: str = "",
        dataset_config: str = DEFAULT_DATASET_CONFIG,
        row_filter: str = "",  # bq:// only: one SQL condition on the table's columns
        snapshot_expiration_days: int = DEFAULT_EXPIRATION_DAYS,  # bq:// only; 0: never
        model_name: str = "",  # "": the data set config's model_name
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        serving_image: str = SETTINGS.serving_image,
        learning_rate: float = 0.001,
        hidden_units: list = [64, 32],  # noqa: B006 (KFP reads the default; it is never mutated)
        epochs: int = 8,
        batch_size: int = 256,
        seed: int = 42,
        min_auc: float = 0.7,
        max_auc_regression: float = 0.01,
        deploy: bool = True,
        endpoint_display_name: str = "",
        canary_percent: int = 10,
        machine_type: str = DEFAULT_MACHINE_TYPE,
        min_replica_count: int = 1,
        max_replica_count: int = 1,
        request_log_table: str = "",
        request_log_sampling_rate: float = DEFAULT_REQUEST_LOG_SAMPLING_RATE,
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
        validate = validate_data(examples=ingest.outputs["examples"], dataset_config=dataset_config,
                                 beam_runner=beam_runner, beam_pipeline_args=beam_pipeline_args
                                 ).set_display_name("2. Validate data against the schema")
        transform = transform_data(examples=ingest.outputs["examples"], schema=validate.outputs["schema"],
                                   dataset_config=dataset_config, beam_runner=beam_runner,
                                   beam_pipeline_args=beam_pipeline_args
                                   ).set_display_name("3. Transform (tf.Transform)")
        trained = train(transformed_examples=transform.outputs["transformed_examples"],
                        transform_graph=transform.outputs["transform_graph"], schema=validate.outputs["schema"],
                        dataset_config=dataset_config, learning_rate=learning_rate, hidden_units=hidden_units,
                        epochs=epochs, batch_size=batch_size, seed=seed).set_display_name("4. Train")
        champion = lookup_champion(model_name=model_name, dataset_config=dataset_config, registry_uri=registry_uri,
                                   project=project, location=location).set_display_name("5. Look up the champion")
        champion.set_caching_options(False)  # the champion changes between runs; never reuse an old answer
        evaluation = evaluate_model(
            model=trained.outputs["model"], examples=ingest.outputs["examples"], dataset_config=dataset_config,
            model_name=champion.outputs["model_name"], champion_uri=champion.outputs["champion_uri"],
            champion_version=champion.outputs["champion_version"], min_auc=min_auc,
            max_auc_regression=max_auc_regression, data_uri=pinned.outputs["data_uri"], beam_runner=beam_runner,
            beam_pipeline_args=beam_pipeline_args).set_display_name("6. Evaluate with TFMA")
        with dsl.If(evaluation.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a KFP condition)
            registered = register_model(
                model=trained.outputs["model"], evaluation=evaluation.outputs["evaluation"],
                examples=ingest.outputs["examples"], schema=validate.outputs["schema"],
                model_name=champion.outputs["model_name"], registry_uri=registry_uri, project=project,
                location=location, serving_image=serving_image, data_uri=data_uri,
                data_version=pinned.outputs["data_version"], row_filter=row_filter, dataset_config=dataset_config,
                learning_rate=learning_rate, hidden_units=hidden_units, epochs=epochs, batch_size=batch_size,
                seed=seed, pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            ).set_display_name("7. Register the model").set_caching_options(False)
            with (dsl.If(deploy == True, name="deploy"),  # noqa: E712 (a KFP condition)
                  dsl.If(registered.outputs["identical_to"] == "", name="new-version")):
                deploy_pipeline(
                    model_name=champion.outputs["model_name"], version=registered.outputs["version"],
                    endpoint_display_name=endpoint_display_name, canary_percent=canary_percent,
                    machine_type=machine_type, min_replica_count=min_replica_count,
                    max_replica_count=max_replica_count, registry_uri=registry_uri, project=project,
                    location=location, request_log_table=request_log_table,
                    request_log_sampling_rate=request_log_sampling_rate
                    ).set_display_name("8. Deploy (nested deploy pipeline)")

    return training_pipeline
