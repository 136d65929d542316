# One job per entry of local.schedules. The function computes the partition from the message's
# publish time, so a job fires away from midnight and its body is not read.
resource "google_cloud_scheduler_job" "schedules" {
  for_each  = local.schedules
  project   = var.project_id
  region    = var.region
  name      = "mlops-${replace(each.key, "_", "-")}"
  schedule  = each.value.cron
  time_zone = var.schedule_timezone
  paused    = var.pause_schedules

  pubsub_target {
    topic_name = google_pubsub_topic.triggers["schedule-${replace(each.key, "_", "-")}"].id
    data       = base64encode(each.key)
  }
}
