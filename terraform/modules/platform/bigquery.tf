# The BigQuery datasets of local.datasets: the endpoint's request-response log (Vertex writes it as its
# service agent, whose Google-granted role covers it) with the feedback labels beside it, and the
# destination of bq:// batch predictions.
resource "google_bigquery_dataset" "datasets" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption; set default_encryption_configuration with a Cloud KMS key where policy requires CMEK
  for_each    = local.datasets
  project     = var.project_id
  dataset_id  = each.key
  location    = var.region
  description = each.value
  labels      = local.labels
}
