# Topics the Scheduler jobs and the drift sink publish to, a push subscription per function that
# reads one, and a dead-letter topic per subscription (kept 7 days by its own subscription).
# Delivery to a function is at-least-once with backoff; after 100 attempts (under 20 h: at most 600 s
# apart, each at most the 120 s timeout) the message is dead-lettered, before 24 h retention drops it.

resource "google_pubsub_topic" "triggers" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry schedule ticks and drift summaries, no data
  for_each                   = toset([for d in values(local.pushed) : d.topic])
  project                    = var.project_id
  name                       = each.key
  labels                     = local.labels
  message_retention_duration = "86400s"
}

# One per function deployment, new-data's Eventarc subscription included (see functions.tf). The Pub/Sub
# agent publishes dead letters to it and acknowledges the originals (iam.tf, topic_roles and subscription_roles).
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; dead letters are undeliverable trigger events, no data
  for_each = local.deployments
  project  = var.project_id
  name     = "${each.key}-dead-letter"
  labels   = local.labels
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.deployments
  project                    = var.project_id
  name                       = "${each.key}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = local.labels
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = "" # never expires
  }
}

resource "google_pubsub_subscription" "push" {
  for_each             = local.pushed
  project              = var.project_id
  name                 = "${each.key}-push"
  topic                = google_pubsub_topic.triggers[each.value.topic].id
  labels               = local.labels
  ack_deadline_seconds = 180 # the function's 120 s timeout, and margin

  push_config {
    push_endpoint = google_cloudfunctions2_function.functions[each.key].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.accounts["fn-invoker"].email
      audience              = google_cloudfunctions2_function.functions[each.key].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = 100
  }

  expiration_policy {
    ttl = ""
  }
}
