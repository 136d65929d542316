# The staging environment: its own project, its own state (bootstrap the state bucket first: README,
# "Deploy to your project").
terraform {
  required_version = ">= 1.6"
  backend "gcs" {
    bucket = "vertex-mlops-staging-tfstate"
    prefix = "vertex-mlops/staging"
  }
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}

provider "google" {
  project               = var.project_id
  region                = var.region
  billing_project       = var.project_id
  user_project_override = true # the budget API bills the quota project, not the caller's
}

variable "project_id" {
  type = string
}

variable "region" {
  type    = string
  default = "us-central1"
}

variable "billing_account" {
  type = string
}

variable "notification_channels" {
  type    = list(string)
  default = []
}

variable "github" {
  type        = object({ owner = string, repository = string })
  description = "The GitHub repository connected to Cloud Build in this project."
}

variable "prod_project_id" {
  type        = string
  description = "The prod project, whose release build promotes this environment's releases."
}

module "services" {
  source     = "../../modules/services"
  project_id = var.project_id
}

module "platform" {
  source     = "../../modules/platform"
  depends_on = [module.services] # every API on before anything that calls it

  environment           = "staging"
  project_id            = var.project_id
  region                = var.region
  billing_account       = var.billing_account
  notification_channels = var.notification_channels
  budget_amount_units   = 500
  pause_schedules       = false
  functions_source_dir  = "${path.root}/../../../build/functions"
  dataset_config        = "${path.root}/../../../data/datasets/chicago_taxi.yaml"
  github                = var.github
  # A release tag is built once, here; prod promotes this build (its release build reads it).
  release          = { tag = "^v[0-9].*$" }
  promotion_reader = "serviceAccount:release-build@${var.prod_project_id}.iam.gserviceaccount.com"
}

output "platform" {
  value = module.platform
}
