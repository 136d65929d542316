# The Cloud Build triggers, each with its own service account (README, "Deploy to your project":
# connecting the repository to Cloud Build is the one step Terraform cannot take).
#
# - release: every environment. dev and staging build from source (cloudbuild.yaml): test, build and
#   push the images, publish the templates naming them by digest, deploy, apply monitoring, and last
#   write the release manifest. prod builds nothing (cloudbuild-promote.yaml): behind Cloud Build's
#   approval, and only once the source environment's manifest for the same commit exists, it copies
#   those images by digest and publishes the same templates retargeted to its own registry.
# - pr-check (where pull_request_checks is set): tests and builds a pull request as pr-check, which may
#   write its logs and nothing else; an outside contributor's pull request runs only after a
#   maintainer comments /gcbrun.

locals {
  promoting = var.release.promote_from != null

  # Per-environment values the release's steps take from Terraform, as substitutions.
  release_substitutions = merge(
    {
      _ENV                   = var.environment
      _REGION                = var.region
      _ENDPOINT              = google_vertex_ai_endpoint.serving.id
      _REQUEST_LOG_TABLE     = local.request_log_table
      _MONITORING_OUTPUT_URI = local.monitoring_uri
    },
    local.promoting ? { _SOURCE_PROJECT = var.release.promote_from.project_id } : {},
  )
}

resource "google_cloudbuild_trigger" "release" {
  project         = var.project_id
  name            = "release"
  description     = local.promoting ? "promote ${var.release.promote_from.project_id}'s release of this tag" : "build and release"
  filename        = local.promoting ? "cloudbuild-promote.yaml" : "cloudbuild.yaml"
  service_account = google_service_account.accounts["release-build"].id
  substitutions   = local.release_substitutions

  github {
    owner = var.github.owner
    name  = var.github.repository
    push {
      branch = var.release.branch
      tag    = var.release.tag
    }
  }

  approval_config {
    approval_required = local.promoting
  }
}

resource "google_cloudbuild_trigger" "pr_check" {
  count           = var.pull_request_checks ? 1 : 0
  project         = var.project_id
  name            = "pr-check"
  description     = "lint, test and build a pull request; nothing is pushed or deployed"
  filename        = "cloudbuild-pr.yaml"
  service_account = google_service_account.accounts["pr-check"].id

  github {
    owner = var.github.owner
    name  = var.github.repository
    pull_request {
      branch          = var.github.default_branch
      comment_control = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
    }
  }
}
