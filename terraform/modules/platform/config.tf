# The platform's moving parts, declared once. Adding a function variable or a scheduled pipeline is
# one line here; tests/delivery checks these tables against triggers/config.py and compiled/.

locals {
  labels = { app = "vertex-mlops", environment = var.environment }

  # The model and its endpoint, named once: the data set config declares the model name, and the
  # endpoint is named after it, which is also what the pipelines fall back to without the parameter
  # (deploy/__init__.py: `endpoint_display_name or model_name`). Terraform creates that endpoint and
  # hands the name to every run it starts (pipeline_parameters below) and the endpoint to monitoring
  # (the release trigger's substitutions, cloudbuild.tf).
  model_name            = yamldecode(file(var.dataset_config)).model_name
  endpoint_display_name = local.model_name
  # The Model Monitoring (v2) monitor `monitoring apply` creates after this apply, under the monitoring
  # config's display name (monitoring/config.py: `<model_name>-monitor` by default): the drift function
  # finds it by that name, since its id is assigned by Vertex later (tests/delivery check the two agree).
  monitor_display_name = "${local.model_name}-monitor"

  bucket_names = {
    landing       = "${var.project_id}-landing"       # data/processed/YYYY/MM/DD/HHMM/batch.csv
    pipeline_root = "${var.project_id}-pipeline-root" # every run's artifacts (models included), monitoring
    templates     = "${var.project_id}-templates"     # compiled/*.json as released, functions' sources
  }

  landing_prefix   = "data/processed"
  templates_prefix = "compiled" # Cloud Build's publish step writes gs://TEMPLATES/compiled/NAME.json
  monitoring_uri   = "gs://${local.bucket_names.pipeline_root}/monitoring"

  # BigQuery: the endpoint's request-response log beside the feedback labels the canary decision joins
  # to it, and the destination of bq:// batch predictions. The endpoint logs to the dataset and Vertex
  # creates the table, with its own schema, under the name it documents ("If no table name is given, a
  # new table will be created with name request_response_logging": v1 PredictRequestResponseLoggingConfig).
  datasets = {
    serving_logs      = "request-response log of the endpoint and the labels that arrive later (feedback)"
    batch_predictions = "batch prediction output tables (destination bq://PROJECT.batch_predictions.TABLE)"
    # data_uri=bq://PROJECT.training_data.TABLE: each run snapshots the table into DATASET_snapshots beside
    # it (same location: a snapshot stays in its base table's region) and trains on the snapshot.
    canary                  = "labels that arrive for logged predictions (feedback) and the canary decision's analyses"
    training_data           = "training tables (data_uri=bq://PROJECT.training_data.TABLE), snapshotted by every run"
    training_data_snapshots = "immutable snapshots the training runs read (each expires after snapshot_expiration_days)"
  }
  request_log_dataset = "bq://${var.project_id}.${google_bigquery_dataset.datasets["serving_logs"].dataset_id}"
  request_log_table   = "${local.request_log_dataset}.request_response_logging"
  feedback_table      = "bq://${var.project_id}.${google_bigquery_dataset.datasets["canary"].dataset_id}.${google_bigquery_table.feedback.table_id}"

  # One identity per role. Each gets only the grants in iam.tf, each of them needed by a row of the
  # permission map (release/permission_map.yaml; tests/delivery/test_permission_map.py).
  service_accounts = {
    pipelines       = "Vertex AI Pipelines runs (every step, the train CustomJob)"
    fn-new-data     = "new_data function: submits a training run per landed batch"
    fn-schedule     = "schedule functions: submit the scheduled runs"
    fn-drift-alert  = "drift_alert function: submits retraining on drift"
    fn-invoker      = "Eventarc and the Pub/Sub push subscriptions invoke the functions as this"
    fn-builder      = "Cloud Functions builds the functions' images as this"
    dataflow-worker = "Dataflow workers of the Beam steps when a run sets beam_runner=DataflowRunner"
    monitoring      = "applies the model monitoring config (impersonated by release-build)"
    release-build   = "Cloud Build release: builds, publishes; impersonates the deployer and monitoring"
    pr-check        = "Cloud Build pull-request check: tests and builds, writes its logs, nothing else"
    deployer        = "deploys function code (impersonated by release-build)"
  }

  # Scheduled pipelines: one Scheduler job, topic, push subscription (with dead letters) and schedule
  # function deployment each. `parameter` receives the partition URI (`none`: the template reads no
  # partition; the day only names the run); `granularity` and `offset` pick it; `parameters` are fixed
  # values for every run, beside project, location and the template's own (pipeline_parameters).
  schedules = {
    training         = { cron = "0 2 * * *", template = "training_pipeline.json", parameter = "data_uri", granularity = "day", offset = 1, parameters = {} }
    batch_prediction = { cron = "0 4 * * *", template = "batch_prediction_pipeline.json", parameter = "source", granularity = "day", offset = 1, parameters = { destination = "gs://${local.bucket_names.pipeline_root}/batch_predictions" } }
    # The progressive canary's cadence: one decision an hour, each the current step's analysis (advance,
    # hold or roll back; a step bakes min_bake_minutes first), over the log and the labels come in since.
    canary_decision = { cron = "0 * * * *", template = "canary_decision_pipeline.json", parameter = "none", granularity = "day", offset = 0, parameters = { request_log_table = local.request_log_table, feedback_table = local.feedback_table } }
  }

  template_uri = { for name in distinct(concat(["training_pipeline.json"], [for s in values(local.schedules) : s.template])) :
  name => "gs://${local.bucket_names.templates}/${local.templates_prefix}/${name}" }

  # What every run Terraform starts is given, by template: project and location always, and the
  # endpoint's name to every template that deploys to it or decides on it.
  pipeline_parameters = {
    # The nested deploy brings the endpoint to the logging Terraform gave it, so it must be given the same.
    "training_pipeline.json" = {
      project           = var.project_id, location = var.region, endpoint_display_name = local.endpoint_display_name,
      request_log_table = local.request_log_dataset, request_log_sampling_rate = var.request_log_sampling_rate
    }
    "batch_prediction_pipeline.json" = { project = var.project_id, location = var.region }
    "canary_decision_pipeline.json"  = { project = var.project_id, location = var.region, endpoint_display_name = local.endpoint_display_name }
  }

  # The variables of triggers/config.py, grouped as its configs read them.
  env_groups = {
    vertex = {
      MLOPS_PROJECT                = var.project_id
      MLOPS_REGION                 = var.region
      MLOPS_PIPELINE_ROOT          = "gs://${local.bucket_names.pipeline_root}/runs"
      MLOPS_SERVICE_ACCOUNT        = google_service_account.accounts["pipelines"].email
      MLOPS_VERTEX_API_ENDPOINT    = "https://${var.region}-aiplatform.googleapis.com"
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

  # One entry per function of triggers/package.py: entry point, identity, the template it submits
  # (`null`: its schedule's), variables (its groups, then `env`, then `schedule_env`: variable -> the
  # field of its `schedules` entry, for each deployment). MLOPS_PIPELINE_PARAMETERS is set for every
  # deployment from pipeline_parameters (function_env below).
  function_kinds = {
    new_data = {
      entry_point = "on_object_finalized", account = "fn-new-data", template = "training_pipeline.json"
      env_groups  = ["vertex", "landing"], schedule_env = {}
      env         = { MLOPS_TRAINING_TEMPLATE_URI = local.template_uri["training_pipeline.json"] }
    }
    drift_alert = {
      entry_point = "on_drift_log_entry", account = "fn-drift-alert", template = "training_pipeline.json"
      env_groups  = ["vertex", "landing", "partitions"], schedule_env = {}
      env = {
        MLOPS_TRAINING_TEMPLATE_URI    = local.template_uri["training_pipeline.json"]
        MLOPS_MODEL                    = local.model_name
        MLOPS_MODEL_MONITOR            = local.monitor_display_name
        MLOPS_DRIFT_COOLDOWN_HOURS     = "24"
        MLOPS_DRIFT_WINDOW_GRANULARITY = "month"
        MLOPS_DRIFT_WINDOW_PARTITIONS  = "3"
      }
    }
    schedule = {
      entry_point = "on_schedule_message", account = "fn-schedule", template = null
      env_groups  = ["vertex", "landing", "partitions"], env = {}
      schedule_env = {
        MLOPS_SCHEDULE_TEMPLATE_URI = "template"
        MLOPS_SCHEDULE_PARAMETER    = "parameter"
        MLOPS_SCHEDULE_GRANULARITY  = "granularity"
        MLOPS_SCHEDULE_OFFSET       = "offset"
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

  # The template each deployment submits, and the parameters it sends with every run.
  deployment_template = { for name, d in local.deployments : name =>
  d.schedule == null ? local.function_kinds[d.kind].template : local.schedules[d.schedule].template }

  function_env = { for name, d in local.deployments : name => merge(
    merge([for group in local.function_kinds[d.kind].env_groups : local.env_groups[group]]...),
    local.function_kinds[d.kind].env,
    { for variable, field in local.function_kinds[d.kind].schedule_env : variable => (
      field == "template" ? local.template_uri[local.schedules[d.schedule].template] : tostring(local.schedules[d.schedule][field])
    ) },
    { MLOPS_PIPELINE_PARAMETERS = jsonencode(merge(local.pipeline_parameters[local.deployment_template[name]],
    d.schedule == null ? {} : local.schedules[d.schedule].parameters)) }
  ) }

  pushed = { for name, d in local.deployments : name => d if d.topic != null }
}
