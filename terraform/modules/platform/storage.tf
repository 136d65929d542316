data "google_project" "project" {
  project_id = var.project_id
}

# Access logs of the four buckets. It cannot log to itself without logging its own log writes.
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:this is the access-log bucket itself; logging it would log its own log writes
  name                        = "${var.project_id}-access-logs"
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
}

module "buckets" {
  source   = "../bucket"
  for_each = local.bucket_names

  name              = each.value
  location          = var.region
  labels            = merge(local.labels, { purpose = replace(each.key, "_", "-") })
  access_log_bucket = google_storage_bucket.access_logs.name
}
