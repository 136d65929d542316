# Drift alerts: Vertex model monitoring anomalies and this project's own drift-alert entries
# (docs/triggers.md) go to the drift topic, published by the sink's own writer identity (iam.tf, topic_roles).
locals {
  drift_log_filter = var.drift_log_filter != "" ? var.drift_log_filter : join(" OR ", [
    "logName=\"projects/${var.project_id}/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly\"",
    "jsonPayload.\"@type\"=\"vertex-mlops.drift-alert.v1\"",
  ])
}

resource "google_logging_project_sink" "drift_alerts" {
  project                = var.project_id
  name                   = "mlops-drift-alerts"
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.triggers["drift-alerts"].id}"
  filter                 = local.drift_log_filter
  unique_writer_identity = true
}
