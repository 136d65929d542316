# The trigger functions, gen2: internal ingress only, invoked by fn-invoker alone (no allUsers), each
# deployment as its kind's own service account with the variables config.tf gives it.
# Terraform creates them from `make functions` output; Cloud Build deploys each release's code
# (cloudbuild.yaml), so the source is Terraform's only on creation.

data "archive_file" "function_source" {
  for_each    = local.function_kinds
  type        = "zip"
  source_dir  = "${var.functions_source_dir}/${each.key}"
  output_path = "${path.root}/.terraform/function-sources/${each.key}.zip"
}

resource "google_storage_bucket_object" "function_source" {
  for_each = local.function_kinds
  bucket   = module.buckets["templates"].name
  name     = "functions/${each.key}/${data.archive_file.function_source[each.key].output_md5}.zip"
  source   = data.archive_file.function_source[each.key].output_path
}

resource "google_cloudfunctions2_function" "functions" {
  for_each = local.deployments
  project  = var.project_id
  location = var.region
  name     = "mlops-${each.key}"
  labels   = merge(local.labels, { mlops-function = each.value.kind })

  build_config {
    runtime         = "python311"
    entry_point     = local.function_kinds[each.value.kind].entry_point
    service_account = google_service_account.accounts["fn-builder"].id
    # The built image goes to the functions' own repository, the only one fn-builder may write.
    docker_repository = google_artifact_registry_repository.repositories["functions"].id
    source {
      storage_source {
        bucket = module.buckets["templates"].name
        object = google_storage_bucket_object.function_source[each.value.kind].name
      }
    }
  }

  service_config {
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.accounts[local.function_kinds[each.value.kind].account].email
    available_memory               = "256Mi"
    timeout_seconds                = 120
    max_instance_count             = 10

    # Cloud Functions sets LOG_EXECUTION_ID on every gen2 function (functions-framework then tags each log
    # line with its execution); declared so that Terraform does not see a change on every plan.
    environment_variables = merge(local.function_env[each.key], { LOG_EXECUTION_ID = "true" })
  }

  # New data arrives through Eventarc's Cloud Storage trigger; Eventarc filters by bucket only, so the
  # function itself keeps `data/processed/` objects (MLOPS_DATA_PREFIX) and acknowledges the rest.
  # Its subscription is Eventarc's: attach new-data-dead-letter to it once (README, Deploy).
  dynamic "event_trigger" {
    for_each = each.value.topic == null ? [1] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.storage.object.v1.finalized"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.accounts["fn-invoker"].email
      event_filters {
        attribute = "bucket"
        value     = module.buckets["landing"].name
      }
    }
  }

  lifecycle {
    # Cloud Build deploys every release's code; Terraform must not roll it back.
    ignore_changes = [build_config[0].source]
  }

  # Created in parallel with these grants, the first apply fails: the build cannot fetch its source
  # from gcf-v2-sources, write its logs or push its image; and Eventarc refuses the Cloud Storage
  # trigger until the Cloud Storage agent may publish and fn-invoker may receive events (the
  # provider's gen2 GCS example orders its trigger after both grants the same way).
  depends_on = [
    google_project_iam_member.project,
    google_project_iam_member.conditional,
    google_artifact_registry_repository_iam_member.repositories,
  ]
}
