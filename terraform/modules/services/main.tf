# Every Google API the platform calls, enabled by Terraform (never by hand) and left enabled on
# destroy: other resources of the project may use them too, and disabling an API deletes its state.
# tests/delivery/test_permission_map.py checks that every API the permission map names is here.
#
# Two APIs cannot be enabled this way, because Terraform calls them to enable the rest:
# serviceusage.googleapis.com and cloudresourcemanager.googleapis.com (README, "Deploy to your
# project", step 1).

variable "project_id" {
  type        = string
  description = "The environment's own Google Cloud project."
}

locals {
  apis = {
    "aiplatform.googleapis.com"       = "Vertex AI: pipelines, training, registry, endpoint, model monitoring"
    "artifactregistry.googleapis.com" = "images and templates repositories"
    "bigquery.googleapis.com"         = "request-response log, batch prediction output, canary evidence, training snapshots"
    "bigquerystorage.googleapis.com"  = "training from bq://: the snapshot read through the Storage Read API"
    "billingbudgets.googleapis.com"   = "the budget alert"
    "cloudbuild.googleapis.com"       = "the release and PR builds, and every function build"
    "cloudfunctions.googleapis.com"   = "the trigger functions"
    "cloudscheduler.googleapis.com"   = "the scheduled runs"
    "compute.googleapis.com"          = "Dataflow workers' VMs (beam_runner=DataflowRunner)"
    "dataflow.googleapis.com"         = "transform and evaluate at scale (beam_runner=DataflowRunner)"
    "eventarc.googleapis.com"         = "the new-data trigger on the landing bucket"
    "iam.googleapis.com"              = "service accounts and custom roles"
    "iamcredentials.googleapis.com"   = "impersonation of the deploy identities by the release build"
    "logging.googleapis.com"          = "build logs and the drift-alert sink"
    "monitoring.googleapis.com"       = "online prediction metrics for the canary decision"
    "pubsub.googleapis.com"           = "schedule and drift topics, dead letters, Eventarc transport"
    "run.googleapis.com"              = "gen2 functions run as Cloud Run services"
    "storage.googleapis.com"          = "landing, pipeline root, templates, models"
  }
}

resource "google_project_service" "apis" {
  for_each           = local.apis
  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}

output "enabled" {
  value = [for api in google_project_service.apis : api.service]
}
