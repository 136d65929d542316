# A bucket to this project's standard: uniform access, public access prevention, versioning, access
# logs. Every bucket of the platform is one of these, so the standard is written once.

variable "name" {
  type        = string
  description = "Globally unique bucket name."
}

variable "location" {
  type        = string
  description = "Bucket location (the region the platform runs in)."
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "access_log_bucket" {
  type        = string
  description = "Bucket receiving this bucket's access logs."
}

variable "noncurrent_version_days" {
  type        = number
  default     = 30
  description = "Days an overwritten or deleted object's old version is kept (versioning's safety net, bounded)."
}

resource "google_storage_bucket" "bucket" {
  name                        = var.name
  location                    = var.location
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  logging {
    log_bucket = var.access_log_bucket
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }
}

output "name" {
  value = google_storage_bucket.bucket.name
}

output "url" {
  value = google_storage_bucket.bucket.url
}
