# The endpoint the deploy pipeline deploys models to (Terraform cannot deploy a model: deployed
# models are output-only here, so deployment and traffic stay in the pipelines). Its display name is
# the one the pipelines look it up by (config.tf), so they find this endpoint instead of making one.
# Request-response logging feeds Model Monitoring v2 (v1beta1 ModelMonitoringInput.VertexEndpointLogs:
# "The endpoints must enable the logging") and the canary decision.
resource "google_vertex_ai_endpoint" "serving" {
  #checkov:skip=CKV2_GCP_24:Google-managed encryption; add encryption_spec with a Cloud KMS key where policy requires CMEK
  #checkov:skip=CKV2_GCP_33:a private endpoint needs VPC peering, which this platform does not run; callers authenticate with IAM
  project      = var.project_id
  location     = var.region
  region       = var.region
  name         = var.endpoint_id
  display_name = local.endpoint_display_name
  description  = "Online predictions of ${local.model_name}; champion and canary split by the deploy pipeline"
  labels       = local.labels

  predict_request_response_logging_config {
    enabled       = true
    sampling_rate = var.request_log_sampling_rate
    bigquery_destination {
      output_uri = local.request_log_dataset
    }
  }

  # The deploy pipeline keeps its lock and journal in labels (mlops-deploy-lock, mlops-transition;
  # deploy/vertex.py): an apply that reset them mid-transition would take the lock from its holder.
  lifecycle {
    ignore_changes = [labels]
  }
}
