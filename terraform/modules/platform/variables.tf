variable "environment" {
  type        = string
  description = "dev, staging or prod: labels every resource and names the budget."
  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "project_id" {
  type        = string
  description = "The environment's own Google Cloud project."
}

variable "region" {
  type        = string
  default     = "us-central1"
  description = "Region of Vertex AI, the functions, the buckets and the repositories."
}

variable "dataset_config" {
  type        = string
  description = "The data set config (data/datasets/*.yaml): its model_name names the model and its endpoint."
}

variable "endpoint_id" {
  type        = string
  default     = "1001"
  description = "Numeric id of the Vertex AI endpoint (at most 10 digits, no leading zero)."
  validation {
    condition     = can(regex("^[1-9][0-9]{0,9}$", var.endpoint_id))
    error_message = "endpoint_id must be numeric, without a leading zero, at most 10 digits."
  }
}

variable "request_log_sampling_rate" {
  type        = number
  default     = 1
  description = "Fraction of online predictions the endpoint logs to BigQuery (monitoring and the canary read them)."
  validation {
    condition     = var.request_log_sampling_rate > 0 && var.request_log_sampling_rate <= 1
    error_message = "request_log_sampling_rate must be above 0 and at most 1."
  }
}

variable "dataflow_subnetwork" {
  type        = string
  default     = ""
  description = "Subnetwork for Dataflow workers (regions/REGION/subnetworks/NAME), needed where the project has no default VPC; empty: --network=default (the runs' Beam options name one or the other)."
}

variable "partition_timezone" {
  type        = string
  default     = "UTC"
  description = "Time zone the landing layout's dates are written in (MLOPS_PARTITION_TIMEZONE)."
}

variable "schedule_timezone" {
  type        = string
  default     = "America/Chicago"
  description = "Time zone the Scheduler crons are read in (when jobs fire, not which partition they take)."
}

variable "pause_schedules" {
  type        = bool
  default     = false
  description = "Create the Scheduler jobs paused (dev: run on demand only)."
}

variable "drift_log_filter" {
  type        = string
  default     = ""
  description = "Logging sink filter for drift alerts; empty: Vertex monitoring anomalies and this project's drift-alert entries."
}

variable "billing_account" {
  type        = string
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) the budget watches."
}

variable "budget_amount_units" {
  type        = number
  description = "Monthly budget, whole units of budget_currency."
}

variable "budget_currency" {
  type    = string
  default = "USD"
}

variable "notification_channels" {
  type        = list(string)
  default     = []
  description = "Cloud Monitoring notification channel ids for the budget alert (empty: billing admins by email)."
}

variable "functions_source_dir" {
  type        = string
  description = "Where `make functions` wrote the deploy folders (build/functions); each is zipped as the functions' first source."
}

variable "github" {
  type = object({
    owner          = string
    repository     = string
    default_branch = optional(string, "^main$")
  })
  description = "The repository Cloud Build is connected to (README, \"Deploy to your project\"): triggers build from it."
}

variable "release" {
  type = object({
    branch       = optional(string)
    tag          = optional(string)
    promote_from = optional(object({ project_id = string }))
  })
  description = "When the release runs: on a push to `branch` or on a tag matching `tag` (regular expressions). With promote_from, it deploys what that project's release built for the same commit, behind approval, instead of building."
  validation {
    condition     = (var.release.branch == null) != (var.release.tag == null)
    error_message = "release needs exactly one of branch or tag."
  }
}

variable "pull_request_checks" {
  type        = bool
  default     = false
  description = "Run cloudbuild-pr.yaml on pull requests in this project (one environment is enough)."
}

variable "promotion_reader" {
  type        = string
  default     = ""
  description = "The next environment's release build (serviceAccount:release-build@NEXT.iam.gserviceaccount.com), allowed to read this one's release manifest and images to promote them; empty: none."
}
