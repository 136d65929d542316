output "buckets" {
  value = { for key, bucket in module.buckets : key => bucket.name }
}

output "service_accounts" {
  value = { for key, account in google_service_account.accounts : key => account.email }
}

output "docker_repository" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.repositories["images"].repository_id}"
}

output "kfp_repository" {
  value = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.repositories["templates"].repository_id}"
}

output "functions" {
  value = { for key, function in google_cloudfunctions2_function.functions : key => function.name }
}

output "endpoint" {
  value = google_vertex_ai_endpoint.serving.id
}

output "endpoint_display_name" {
  value = local.endpoint_display_name
}

# What `python -m monitoring apply` takes per environment (the release passes the same values as
# substitutions, cloudbuild.tf): `--endpoint`, `--request-log-table`, `--output-uri`.
output "monitoring" {
  value = {
    endpoint          = google_vertex_ai_endpoint.serving.id
    request_log_table = local.request_log_table
    output_uri        = local.monitoring_uri
  }
}

# Beam flags for a run with beam_runner=DataflowRunner (the training pipeline's beam_pipeline_args):
# workers run as dataflow-worker from the pipeline image, staging under the pipeline root.
output "dataflow_pipeline_args" {
  value = concat([
    "--project=${var.project_id}",
    "--region=${var.region}",
    "--temp_location=gs://${local.bucket_names.pipeline_root}/dataflow/tmp",
    "--staging_location=gs://${local.bucket_names.pipeline_root}/dataflow/staging",
    "--service_account_email=${google_service_account.accounts["dataflow-worker"].email}",
  ], var.dataflow_subnetwork == "" ? ["--network=default"] : ["--subnetwork=${var.dataflow_subnetwork}"])
}
