# The platform's moving parts, declared once. Adding a function variable or a scheduled pipeline is
# one line here; tests/delivery checks these tables against triggers/config.py and compiled/.

locals {
  labels = { app = "vertex-mlops", environment = var.environment }

  bucket_names = {
    landing       = "${var.project_id}-landing"       # data/processed/YYYY/MM/DD/HHMM/batch.csv
    pipeline_root = "${var.project_id}-pipeline-root" # every run's artifacts
    templates     = "${var.project_id}-templates"     # compiled/*.json as released, functions' sources
    models        = "${var.project_id}-models"        # exported models the registry points at
  }

  landing_prefix   = "data/processed"
  templates_prefix = "compiled" # Cloud Build's publish step writes gs://TEMPLATES/compiled/NAME.json

  # One identity per role. Each gets only the grants in iam.tf.
  service_accounts = {
    pipelines      = "Vertex AI Pipelines runs (every step, the train CustomJob)"
    fn-new-data    = "new_data function: submits a training run per landed batch"
    fn-schedule    = "schedule functions: submit the scheduled runs"
    fn-drift-alert = "drift_alert function: submits retraining on drift"
    fn-invoker     = "Eventarc and the Pub/Sub push subscriptions invoke the functions as this"
    fn-builder     = "Cloud Functions builds the functions' images as this"
    serving        = "the prediction container on the Vertex AI endpoint"
    dataflow-worker = "Dataflow workers of the Beam steps when a run sets beam_runner=DataflowRunner"
    monitoring     = "applies and runs model monitoring; writes drift alerts to Logging"
    release-build  = "Cloud Build: tests, builds, publishes; impersonates the deployer and monitoring"
    deployer       = "deploys function code (impersonated by release-build)"
  }

  # Scheduled pipelines: one Scheduler job, topic, push subscription (with dead letters) and schedule
  # function deployment each. `parameter` receives the partition URI (`none`: the template reads no
  # partition; the day only names the run); `granularity` and `offset` pick it; `parameters` are fixed
  # values for every run, beside project and location.
  schedules = {
    training         = { cron = "0 2 * * *", template = "training_pipeline.json", parameter = "data_uri", granularity = "day", offset = 1, parameters = {} }
    batch_prediction = { cron = "0 4 * * *", template = "batch_prediction_pipeline.json", parameter = "source", granularity = "day", offset = 1, parameters = { destination = "gs://${local.bucket_names.pipeline_root}/batch_predictions" } }
    canary_decision  = { cron = "0 6 * * *", template = "canary_decision_pipeline.json", parameter = "none", granularity = "day", offset = 0, parameters = {} }
  }

  template_uri = { for name in distinct(concat(["training_pipeline.json"], [for s in values(local.schedules) : s.template])) :
    name => "gs://${local.bucket_names.templates}/${local.templates_prefix}/${name}" }

  # The variables of triggers/config.py, grouped as its configs read them.
  env_groups = {
    vertex = {
      MLOPS_PROJECT                = var.project_id
      MLOPS_REGION                 = var.region
      MLOPS_PIPELINE_ROOT          = "gs://${local.bucket_names.pipeline_root}/runs"
      MLOPS_SERVICE_ACCOUNT        = google_service_account.accounts["pipelines"].email
      MLOPS_VERTEX_API_ENDPOINT    = "https://${var.region}-aiplatform.googleapis.com"
      MLOPS_PIPELINE_PARAMETERS    = jsonencode({ project = var.project_id, location = var.region })
      MLOPS_TEMPLATE_CACHE_SECONDS = "300"
    }
    landing = {
      MLOPS_DATA_BUCKET = local.bucket_names.landing
      MLOPS_DATA_PREFIX = local.landing_prefix
    }
    partitions = {
      MLOPS_PARTITION_TIMEZONE = var.partition_timezone
    }
  }

  # One entry per function of triggers/package.py: entry point, identity, variables (its groups, then
  # `env`, then `schedule_env`: variable -> the field of its `schedules` entry, for each deployment).
  function_kinds = {
    new_data = {
      entry_point = "on_object_finalized", account = "fn-new-data", env_groups = ["vertex", "landing"], schedule_env = {}
      env         = { MLOPS_TRAINING_TEMPLATE_URI = local.template_uri["training_pipeline.json"] }
    }
    drift_alert = {
      entry_point = "on_drift_log_entry", account = "fn-drift-alert", env_groups = ["vertex", "landing", "partitions"], schedule_env = {}
      env = {
        MLOPS_TRAINING_TEMPLATE_URI    = local.template_uri["training_pipeline.json"]
        MLOPS_MODEL                    = var.model_name
        MLOPS_MONITORING_JOB           = var.monitoring_job
        MLOPS_DRIFT_COOLDOWN_HOURS     = "24"
        MLOPS_DRIFT_WINDOW_GRANULARITY = "month"
        MLOPS_DRIFT_WINDOW_PARTITIONS  = "3"
      }
    }
    schedule = {
      entry_point = "on_schedule_message", account = "fn-schedule", env_groups = ["vertex", "landing", "partitions"], env = {}
      schedule_env = {
        MLOPS_SCHEDULE_TEMPLATE_URI = "template"
        MLOPS_SCHEDULE_PARAMETER    = "parameter"
        MLOPS_SCHEDULE_GRANULARITY  = "granularity"
        MLOPS_SCHEDULE_OFFSET       = "offset"
        MLOPS_PIPELINE_PARAMETERS   = "parameters"
      }
    }
  }

  # What is deployed: new data on Eventarc (topic null), drift on its topic, one schedule per entry.
  deployments = merge(
    {
      new-data    = { kind = "new_data", topic = null, schedule = null }
      drift-alert = { kind = "drift_alert", topic = "drift-alerts", schedule = null }
    },
    { for name, _ in local.schedules : "schedule-${replace(name, "_", "-")}" =>
    { kind = "schedule", topic = "schedule-${replace(name, "_", "-")}", schedule = name } }
  )

  function_env = { for name, d in local.deployments : name => merge(
    merge([for group in local.function_kinds[d.kind].env_groups : local.env_groups[group]]...),
    local.function_kinds[d.kind].env,
    { for variable, field in local.function_kinds[d.kind].schedule_env : variable => (
      field == "template" ? local.template_uri[local.schedules[d.schedule].template] : (
        field == "parameters" ? jsonencode(merge({ project = var.project_id, location = var.region }, local.schedules[d.schedule].parameters))
        : tostring(local.schedules[d.schedule][field])
    )
    ) }
  ) }

  pushed = { for name, d in local.deployments : name => d if d.topic != null }
}
