# The dev environment: its own project, its own state (bootstrap the state bucket first: README,
# "Deploy to your project").
terraform {
  required_version = ">= 1.6"
  backend "gcs" {
    bucket = "vertex-mlops-dev-tfstate"
    prefix = "vertex-mlops/dev"
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

module "services" {
  source     = "../../modules/services"
  project_id = var.project_id
}

module "platform" {
  source     = "../../modules/platform"
  depends_on = [module.services] # every API on before anything that calls it

  environment           = "dev"
  project_id            = var.project_id
  region                = var.region
  billing_account       = var.billing_account
  notification_channels = var.notification_channels
  budget_amount_units   = 200
  pause_schedules       = true
  functions_source_dir  = "${path.root}/../../../build/functions"
  dataset_config        = "${path.root}/../../../data/datasets/chicago_taxi.yaml"
  github                = var.github
  # Every push to main is built, tested and released here; pull requests are checked here too.
  release             = { branch = "^main$" }
  pull_request_checks = true
}

output "platform" {
  value = module.platform
}
