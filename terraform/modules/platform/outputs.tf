output "buckets" {
  value = { for key, bucket in module.buckets : key => bucket.name }
}

output "service_accounts" {
  value = { for key, account in google_service_account.accounts : key => account.email }
}

output "docker_repository" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "kfp_repository" {
  value = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.templates.repository_id}"
}

output "functions" {
  value = { for key, function in google_cloudfunctions2_function.functions : key => function.name }
}

output "endpoint" {
  value = google_vertex_ai_endpoint.serving.id
}
