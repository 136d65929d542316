# Images (pipeline, serving), compiled pipeline templates and the functions' images, each in a
# repository of its own, so that each writer's grant reaches only what it writes: the function
# builder cannot overwrite the pipeline or serving images, nor the templates.
locals {
  repositories = {
    images    = { id = "mlops", format = "DOCKER", description = "pipeline and serving images, by commit SHA and digest" }
    templates = { id = "mlops-templates", format = "KFP", description = "compiled KFP templates, tagged with the commit SHA and latest" }
    functions = { id = "mlops-functions", format = "DOCKER", description = "the trigger functions' images, built by Cloud Functions" }
  }
}

resource "google_artifact_registry_repository" "repositories" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; images and templates hold code and public packages, no data
  for_each      = local.repositories
  project       = var.project_id
  location      = var.region
  repository_id = each.value.id
  format        = each.value.format
  description   = each.value.description
  labels        = local.labels
}

# The repositories were single resources before; these keep an applied environment's repositories (and
# every image and template in them) instead of replacing them.
moved {
  from = google_artifact_registry_repository.images
  to   = google_artifact_registry_repository.repositories["images"]
}

moved {
  from = google_artifact_registry_repository.templates
  to   = google_artifact_registry_repository.repositories["templates"]
}
