"""`python -m monitoring apply`: the monitoring config as a Vertex AI ModelMonitor (v1beta1) and its schedule.

Idempotent, so Cloud Build can call it on every release: the ModelMonitor is found by
display name, created if missing, updated in only the fields that differ, left alone if
nothing does; the same for its schedule (display name `<monitor display name>-schedule`).
Through `vertexai.resources.preview.ml_monitoring` (the SDK's Model Monitoring v2), with
`MLOPS_VERTEX_API_ENDPOINT` as the API base when set (the tests' local stand-in).

What is monitored: the model of the config's `model_name` in the Model Registry, at its
`champion` version (or `--model-version`). Baseline: that version's training data, from
the lineage the register step writes into the version description (`data_uri`), read as
the CSV batches under it. Target: the endpoint's request-response log table
(`target.request_log_table`) or the batch's input, over the config's window.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import posixpath
import re
from typing import Any

from monitoring.config import (
    JENSEN_SHANNON,
    L_INFINITY,
    MonitoringConfig,
    MonitoringConfigError,
    load_monitoring_config,
)

CHAMPION_ALIAS = "champion"
_DATA_URI = re.compile(r'"data_uri":\s*"([^"]*)"')
# Vertex's schema data type for each kind of monitored feature.
_DATA_TYPES = {"numeric": "float", "categorical": "categorical"}


class ApplyError(RuntimeError):
    """The ModelMonitor cannot be applied as asked; the message says why."""


class NothingToMonitorYet(ApplyError):
    """The model has no version to monitor yet (a fresh environment): not a failure of the release."""


@dataclasses.dataclass(frozen=True)
class Applied:
    monitor: str  # resource name
    monitor_action: str  # created | updated (fields) | unchanged
    schedule: str
    schedule_action: str


def training_data_uri(data_uri: str) -> str:
    """One GCS pattern for the CSV batches under the champion's data_uri (one prefix or several, comma-separated):
    ModelMonitoringInput takes one URI, so several prefixes become their common folder."""
    prefixes = [prefix.rstrip("/") for prefix in data_uri.split(",") if prefix.strip()]
    if not prefixes or not all(prefix.startswith("gs://") for prefix in prefixes):
        raise ApplyError(f"the champion's data_uri {data_uri!r} is not gs://: Vertex reads its baseline from Cloud "
                         "Storage (register the model from a Vertex run)")
    common = prefixes[0] if len(prefixes) == 1 else posixpath.dirname(posixpath.commonprefix(prefixes) + "x")
    return f"{common}/**/batch.csv"


def _champion(config: MonitoringConfig, version: str | None):
    from google.api_core import exceptions
    from google.cloud import aiplatform

    models = aiplatform.Model.list(filter=f'display_name="{config.model_name}"')
    if not models:
        raise NothingToMonitorYet(f"model {config.model_name!r} is not in the Model Registry yet: nothing to "
                                  "monitor; the first release after its first version is registered applies it")
    try:
        return aiplatform.Model(f"{models[0].resource_name}@{version or CHAMPION_ALIAS}")
    except exceptions.NotFound:
        if version is None:
            raise NothingToMonitorYet(f"model {config.model_name!r} has no {CHAMPION_ALIAS!r} version yet: nothing "
                                      "to monitor") from None
        raise ApplyError(f"model {config.model_name!r} has no version {version!r}") from None


def for_environment(config: MonitoringConfig, endpoint: str = "", request_log_table: str = "",
                    output_uri: str = "") -> MonitoringConfig:
    """The config with an environment's own values (Terraform's outputs) in place of its empty defaults."""
    target = dataclasses.replace(config.target, endpoint=endpoint or config.target.endpoint,
                                 request_log_table=request_log_table or config.target.request_log_table)
    return dataclasses.replace(config, target=target, output_uri=output_uri or config.output_uri)


def require_environment_values(config: MonitoringConfig) -> None:
    """The per-environment values (`--endpoint`/`--request-log-table`, `--output-uri`) are there: checked before
    anything is read, so that a misconfigured release fails even before the first model exists."""
    if config.target.source != "batch_prediction_input" and not (config.target.endpoint
                                                                 or config.target.request_log_table):
        raise ApplyError(f"{config.source}: target.endpoint and target.request_log_table are empty; expected the "
                         "endpoint (--endpoint) or its request-response log table bq://PROJECT.DATASET.TABLE "
                         "(--request-log-table): Terraform's output platform.monitoring has both")
    if not config.output_uri:
        raise ApplyError(f"{config.source}: output_uri is empty; expected a gs:// folder for the monitoring results "
                         "(--output-uri; Terraform's output platform.monitoring.output_uri)")


def desired_specs(config: MonitoringConfig, data_uri: str, project: str, location: str) -> dict[str, Any]:
    """The SDK spec objects the config asks for (its environment values checked: require_environment_values)."""
    from vertexai.resources.preview.ml_monitoring.spec import notification, objective, output, schema

    numeric = [feature for feature in config.features if feature.kind == "numeric"]
    categorical = [feature for feature in config.features if feature.kind == "categorical"]
    drift = objective.DataDriftSpec(
        features=[feature.name for feature in config.features],
        categorical_metric_type=L_INFINITY,
        numeric_metric_type=JENSEN_SHANNON,
        default_categorical_alert_threshold=config.categorical_threshold,
        default_numeric_alert_threshold=config.numeric_threshold,
        feature_alert_thresholds={feature.name: feature.threshold for feature in numeric + categorical
                                  if feature.threshold != (config.numeric_threshold if feature.kind == "numeric"
                                                           else config.categorical_threshold)})
    if config.target.source == "batch_prediction_input":
        target = objective.MonitoringInput(gcs_uri=config.target.batch_input_uri,
                                           data_format="csv" if config.target.batch_input_uri.endswith(".csv")
                                           else "jsonl")
    elif config.target.endpoint:  # Vertex reads the endpoint's request-response log itself
        endpoint = config.target.endpoint
        if "/" not in endpoint:
            endpoint = f"projects/{project}/locations/{location}/endpoints/{endpoint}"
        target = objective.MonitoringInput(endpoints=[endpoint], window=f"{config.target.window_hours}h")
    else:
        target = objective.MonitoringInput(table_uri=config.target.request_log_table, timestamp_field="logging_time",
                                           window=f"{config.target.window_hours}h")
    return {
        "training_dataset": objective.MonitoringInput(gcs_uri=training_data_uri(data_uri), data_format="csv"),
        "model_monitoring_schema": schema.ModelMonitoringSchema(
            feature_fields=[schema.FieldSchema(feature.name, _DATA_TYPES[feature.kind]) for feature in config.features],
            prediction_fields=[schema.FieldSchema("probability", "float")]),
        "tabular_objective_spec": objective.TabularObjective(feature_drift_spec=drift),
        "output_spec": output.OutputSpec(gcs_base_dir=config.output_uri),
        "notification_spec": notification.NotificationSpec(
            user_emails=list(config.notification.user_emails) or None,
            notification_channels=list(config.notification.notification_channels) or None,
            enable_cloud_logging=config.notification.cloud_logging),
        "target": target,
    }


# ModelMonitor.update's argument -> the ModelMonitor proto field it sets.
_MONITOR_FIELDS = {"training_dataset": "training_dataset", "model_monitoring_schema": "model_monitoring_schema",
                   "tabular_objective_spec": "tabular_objective", "output_spec": "output_spec",
                   "notification_spec": "notification_spec"}


def _as_dict(message: Any) -> dict:
    return json.loads(type(message).to_json(message)) if message is not None else {}


def apply(config: MonitoringConfig, project: str, location: str, model_version: str | None = None) -> Applied:
    from google.cloud import aiplatform
    from vertexai.resources.preview import ml_monitoring

    init: dict[str, Any] = {"project": project, "location": location}
    if endpoint := os.environ.get("MLOPS_VERTEX_API_ENDPOINT", "").strip():
        init |= {"api_endpoint": endpoint, "api_transport": "rest"}
    require_environment_values(config)
    aiplatform.init(**init)
    champion = _champion(config, model_version)
    lineage = _DATA_URI.search(champion.gca_resource.version_description or "")
    if not lineage:
        raise ApplyError(f"version {champion.version_id} of {config.model_name} records no data_uri in its "
                         "description (the register step's lineage): no baseline")
    specs = desired_specs(config, lineage.group(1), project, location)
    target = specs.pop("target")

    existing = [monitor for monitor in ml_monitoring.ModelMonitor.list(filter=f'display_name="{config.display_name}"')
                if monitor.display_name == config.display_name]
    if not existing:
        monitor = ml_monitoring.ModelMonitor.create(
            model_name=champion.resource_name.split("@")[0], model_version_id=champion.version_id,
            display_name=config.display_name, **specs)
        monitor_action = "created"
    else:
        monitor = ml_monitoring.ModelMonitor(existing[0].resource_name)
        current = monitor.gca_resource
        changed = {argument: spec for argument, spec in specs.items()
                   if _as_dict(spec._as_proto()) != _as_dict(getattr(current, _MONITOR_FIELDS[argument]))}
        if changed:
            monitor.update(**changed)
        monitor_action = (f"updated ({', '.join(_MONITOR_FIELDS[name] for name in changed)})" if changed
                          else "unchanged")

    schedule_name = f"{config.display_name}-schedule"
    # list_schedules hands back the schedules themselves (its annotation says a response).
    schedules = [schedule for schedule in monitor.list_schedules(filter=f'display_name="{schedule_name}"')
                 if schedule.display_name == schedule_name]
    job_name = f"{config.display_name}-job"
    if not schedules:
        schedule = monitor.create_schedule(cron=config.schedule.vertex_cron, target_dataset=target,
                                           display_name=schedule_name, model_monitoring_job_display_name=job_name)
        schedule_action = "created"
    else:
        current = schedules[0]
        objective_spec = current.create_model_monitoring_job_request.model_monitoring_job.model_monitoring_spec
        same = (current.cron == config.schedule.vertex_cron
                and _as_dict(objective_spec.objective_spec.target_dataset) == _as_dict(target._as_proto()))
        schedule = current
        schedule_action = "unchanged"
        if not same:
            # Every part given: the SDK keeps unnamed parts from fields it reads under other names.
            schedule = monitor.update_schedule(
                schedule_name=current.name, cron=config.schedule.vertex_cron, target_dataset=target,
                baseline_dataset=specs["training_dataset"], tabular_objective_spec=specs["tabular_objective_spec"],
                output_spec=specs["output_spec"], notification_spec=specs["notification_spec"],
                model_monitoring_job_display_name=job_name)
            schedule_action = "updated (cron, target)"
    return Applied(monitor.resource_name, monitor_action, schedule.name, schedule_action)


def apply_cli(args: argparse.Namespace) -> int:
    import sys

    import google.auth.exceptions
    from google.api_core import exceptions

    config = for_environment(load_monitoring_config(args.config), args.endpoint, args.request_log_table,
                             args.output_uri)
    try:
        applied = apply(config, args.project, args.location, args.model_version)
    except NothingToMonitorYet as reason:
        print(f"model monitoring not applied: {reason}")
        return 0
    except (ApplyError, exceptions.GoogleAPICallError, MonitoringConfigError,
            google.auth.exceptions.DefaultCredentialsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"model monitor {applied.monitor}: {applied.monitor_action}")
    print(f"schedule {applied.schedule}: {applied.schedule_action} ({config.schedule.vertex_cron})")
    return 0
