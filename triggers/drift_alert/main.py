"""Cloud Function (2nd gen): a drift alert logged by model monitoring submits a retraining run.

Trigger: Eventarc `google.cloud.pubsub.topic.v1.messagePublished` on the topic a
Logging sink writes the alerts to. Entry point: `on_drift_log_entry`. A Vertex Model
Monitoring entry is a signal for MLOPS_MODEL_MONITOR: its alerts are read with
searchModelMonitoringAlerts (plain HTTP, as the submission). See docs/triggers.md.
"""

import functions_framework

from triggers.config import DriftConfig
from triggers.events import drift
from triggers.events.policy import CloudEventLike, pubsub_message, run_trigger
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget

# At import on purpose: a bad configuration fails the deploy, not every event.
CONFIG = DriftConfig.from_env()
TARGET = VertexTarget.from_config(CONFIG.vertex)


def _from_message(event: CloudEventLike) -> RunRequest:
    return drift.run_for_log_entry(drift.log_entry_from_message(pubsub_message(event).data), CONFIG)


@functions_framework.cloud_event
def on_drift_log_entry(event: CloudEventLike) -> None:
    run_trigger(drift.TRIGGER, event.get("id"), lambda: _from_message(event), TARGET)
