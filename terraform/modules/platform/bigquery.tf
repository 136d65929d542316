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

# The labels the canary decision joins to the request-response log (docs/deploy.md, "Labels: the feedback
# table"): written by whoever learns the outcome (`bq load` or INSERT), read by the decision.
resource "google_bigquery_table" "feedback" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption; set encryption_configuration with a Cloud KMS key where policy requires CMEK
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.datasets["canary"].dataset_id
  table_id            = "feedback"
  description         = "one label per logged prediction instance: instance_id, label (0 or 1), feedback_time"
  deletion_protection = true
  labels              = local.labels
  schema = jsonencode([
    { name = "instance_id", type = "STRING", mode = "REQUIRED" },
    { name = "label", type = "INTEGER", mode = "REQUIRED" },
    { name = "feedback_time", type = "TIMESTAMP", mode = "REQUIRED" },
  ])
}
