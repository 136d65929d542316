# Images (pipeline, serving) and compiled pipeline templates, each in a repository of its format.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold code and public packages, no data
  project       = var.project_id
  location      = var.region
  repository_id = "mlops"
  format        = "DOCKER"
  description   = "pipeline and serving images, tagged with the commit SHA"
  labels        = local.labels
}

resource "google_artifact_registry_repository" "templates" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; KFP templates hold pipeline definitions, no data
  project       = var.project_id
  location      = var.region
  repository_id = "mlops-templates"
  format        = "KFP"
  description   = "compiled KFP templates, tagged with the commit SHA and latest"
  labels        = local.labels
}
