# The endpoint the deploy pipeline deploys models to (Terraform cannot deploy a model: deployed
# models are output-only here, so deployment and traffic stay in the pipelines).
resource "google_vertex_ai_endpoint" "serving" {
  #checkov:skip=CKV2_GCP_24:Google-managed encryption; add encryption_spec with a Cloud KMS key where policy requires CMEK
  #checkov:skip=CKV2_GCP_33:a private endpoint needs VPC peering, which this platform does not run; callers authenticate with IAM
  project      = var.project_id
  location     = var.region
  region       = var.region
  name         = var.endpoint_id
  display_name = "${var.model_name}-${var.environment}"
  description  = "Online predictions of ${var.model_name}; champion and canary split by the deploy pipeline"
  labels       = local.labels
}
