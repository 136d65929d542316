# One service account per role, and only these grants. Every grant of the platform is a row of the
# tables below (tests/delivery checks that no IAM resource exists outside them), and every row is
# needed by a call of the permission map (release/permission_map.yaml): the proof in
# tests/delivery/test_permission_map.py reads these tables, roles.json and methods.json.
# Resource-scoped (a bucket, a repository, a dataset, a topic, a function, a service account) wherever
# the resource has its own IAM policy; project-level only where the permission exists on no smaller
# resource or the resource is not ours to name (said per grant). No primitive roles, no keys.

resource "google_service_account" "accounts" {
  for_each     = local.service_accounts
  project      = var.project_id
  account_id   = each.key
  display_name = "mlops ${each.key}"
  description  = each.value
}

# Exactly the Vertex AI and Cloud Monitoring permissions the code calls, where the predefined roles hold
# far more (roles/aiplatform.user would let a function create a CustomJob that runs as Vertex's
# custom-code agent, which reads every bucket of the project).
resource "google_project_iam_custom_role" "roles" {
  for_each    = local.custom_roles
  project     = var.project_id
  role_id     = each.key
  title       = each.value.title
  permissions = each.value.permissions
}

locals {
  project_number = data.google_project.project.number

  custom_roles = {
    mlopsRunSubmitter = {
      title       = "mlops: submit pipeline runs"
      permissions = ["aiplatform.pipelineJobs.create"]
    }
    mlopsDriftAlertReader = {
      title       = "mlops: read the model monitor's alerts"
      permissions = ["aiplatform.modelMonitors.list", "aiplatform.modelMonitors.searchModelMonitoringAlerts"]
    }
    mlopsMonitoringApply = {
      title = "mlops: apply the model monitoring config"
      permissions = [
        "aiplatform.models.get", "aiplatform.models.list",
        "aiplatform.modelMonitors.create", "aiplatform.modelMonitors.get", "aiplatform.modelMonitors.list",
        "aiplatform.modelMonitors.update", "aiplatform.modelMonitoringJobs.create",
        "aiplatform.schedules.create", "aiplatform.schedules.get", "aiplatform.schedules.list",
        "aiplatform.schedules.update",
      ]
    }
    mlopsMetricsReader = {
      title       = "mlops: read online prediction metrics"
      permissions = ["monitoring.timeSeries.list"]
    }
    # On the training tables' dataset: what CREATE SNAPSHOT TABLE ... CLONE checks on the table it clones
    # (table-snapshots-create), deleteSnapshot included since the snapshots expire. Among predefined roles
    # only dataOwner holds createSnapshot with deleteSnapshot, and it may also delete the tables.
    mlopsSnapshotSource = {
      title = "mlops: snapshot the training tables"
      permissions = [
        "bigquery.datasets.get", "bigquery.tables.get", "bigquery.tables.getData",
        "bigquery.tables.createSnapshot", "bigquery.tables.deleteSnapshot",
      ]
    }
    # On the snapshots' dataset: create a snapshot there, describe it, read it through the Storage Read API.
    mlopsSnapshotStore = {
      title       = "mlops: keep and read the training snapshots"
      permissions = ["bigquery.tables.create", "bigquery.tables.updateData", "bigquery.tables.get", "bigquery.tables.getData"]
    }
  }

  # Who holds grants: our service accounts, the Google service agents we grant to, the drift sink's
  # writer, and (staging only) the next environment's release build, which promotes this one's build.
  members = merge(
    { for name, account in google_service_account.accounts : name => "serviceAccount:${account.email}" },
    {
      gcs-agent    = "serviceAccount:${data.google_storage_project_service_account.gcs_agent.email_address}"
      pubsub-agent = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
      drift-sink   = google_logging_project_sink.drift_alerts.writer_identity
      # Cloud Storage writes usage and storage logs as this group (documented for access logs).
      storage-analytics = "group:cloud-storage-analytics@google.com"
    },
    var.promotion_reader == "" ? {} : { promoter = var.promotion_reader },
  )

  # identity -> project-level roles ("roles/..." predefined, or a key of custom_roles).
  project_roles = {
    # pipelineJobs, customJobs, models, endpoints, batchPredictionJobs: Vertex AI has no per-resource IAM
    # for these, and Vertex AI Pipelines documents roles/aiplatform.user for the pipeline's account.
    # Dataflow jobs, BigQuery jobs and time series exist on no smaller resource either.
    pipelines       = ["roles/aiplatform.user", "roles/dataflow.developer", "roles/bigquery.jobUser", "roles/bigquery.readSessionUser", "mlopsMetricsReader"]
    dataflow-worker = ["roles/dataflow.worker"] # workers lease work items from the service
    fn-new-data     = ["mlopsRunSubmitter"]
    fn-schedule     = ["mlopsRunSubmitter"]
    fn-drift-alert  = ["mlopsRunSubmitter", "mlopsDriftAlertReader"]
    monitoring      = ["mlopsMonitoringApply"]
    # Eventarc delivers events to a trigger's identity only with this project-level role.
    fn-invoker = ["roles/eventarc.eventReceiver"]
    # Build logs (every user-managed build account writes its own; options.logging CLOUD_LOGGING_ONLY).
    fn-builder    = ["roles/logging.logWriter"]
    release-build = ["roles/logging.logWriter"]
    pr-check      = ["roles/logging.logWriter"]
    # Deploying function code lists functions and polls operations on the location, not the function.
    deployer = ["roles/cloudfunctions.developer"]
    # Eventarc's Cloud Storage trigger: the Cloud Storage agent publishes to the topic Eventarc creates
    # and names when the trigger is made; no grant can name a topic that does not exist yet.
    gcs-agent = ["roles/pubsub.publisher"]
  }

  # Project-level grants limited by a condition to one resource that Terraform cannot grant on directly.
  # Cloud Functions copies each function's source into gcf-v2-sources-NUMBER-REGION and builds it from
  # there; that bucket is Google's and appears only with the first function, during `terraform apply`.
  conditional_project_roles = {
    "fn-builder/gcf-sources" = {
      identity = "fn-builder", role = "roles/storage.objectViewer", resource = "bucket:gcf-sources"
      title    = "gcf-v2-sources only"
      bucket   = "gcf-v2-sources-${local.project_number}-${var.region}"
    }
  }

  # identity -> { bucket key of bucket_names, or access_logs -> role }
  bucket_roles = {
    storage-analytics = { access_logs = "roles/storage.objectCreator" }
    pipelines         = { pipeline_root = "roles/storage.objectUser", landing = "roles/storage.objectViewer" }
    dataflow-worker   = { pipeline_root = "roles/storage.objectUser" } # examples, shards, staging, temp
    fn-new-data       = { templates = "roles/storage.objectViewer" }   # the event names the object: no listing
    fn-schedule       = { landing = "roles/storage.objectViewer", templates = "roles/storage.objectViewer" }
    fn-drift-alert    = { landing = "roles/storage.objectViewer", templates = "roles/storage.objectViewer" }
    release-build     = { templates = "roles/storage.objectUser" }   # templates, function sources, release manifest
    deployer          = { templates = "roles/storage.objectViewer" } # the function source a deploy names
    promoter          = { templates = "roles/storage.objectViewer" } # this environment's release manifest
  }

  # identity -> { repository key of local.repositories -> role }
  repository_roles = {
    dataflow-worker = { images = "roles/artifactregistry.reader" } # --sdk_container_image: the pipeline image
    fn-builder      = { functions = "roles/artifactregistry.writer" }
    release-build   = { images = "roles/artifactregistry.writer", templates = "roles/artifactregistry.writer" }
    promoter        = { images = "roles/artifactregistry.reader" } # copies the images it promotes
  }

  # identity -> { dataset key of local.datasets -> role }
  dataset_roles = {
    pipelines = {
      serving_logs  = "roles/bigquery.dataViewer", batch_predictions = "roles/bigquery.dataEditor",
      canary        = "roles/bigquery.dataEditor", # the feedback labels; the decision's analyses
      training_data = "mlopsSnapshotSource", training_data_snapshots = "mlopsSnapshotStore"
    }
  }

  # identity -> { the service account it acts as, impersonates or signs for -> role }
  account_roles = {
    fn-new-data    = { pipelines = "roles/iam.serviceAccountUser" }
    fn-schedule    = { pipelines = "roles/iam.serviceAccountUser" }
    fn-drift-alert = { pipelines = "roles/iam.serviceAccountUser" }
    # The train step's CustomJob runs as the pipelines account; Beam steps with DataflowRunner start
    # their workers as dataflow-worker.
    pipelines = { pipelines = "roles/iam.serviceAccountUser", dataflow-worker = "roles/iam.serviceAccountUser" }
    # The build holds no deploy rights itself: it impersonates these two.
    release-build = { deployer = "roles/iam.serviceAccountTokenCreator", monitoring = "roles/iam.serviceAccountTokenCreator" }
    # A function deploy acts as its runtime account, its trigger's account and its build account.
    deployer = {
      fn-new-data    = "roles/iam.serviceAccountUser", fn-schedule = "roles/iam.serviceAccountUser"
      fn-drift-alert = "roles/iam.serviceAccountUser", fn-invoker = "roles/iam.serviceAccountUser"
      fn-builder     = "roles/iam.serviceAccountUser"
    }
    # Pub/Sub signs the push subscriptions' OIDC tokens as fn-invoker (documented for projects made
    # before April 2021; its service agent role covers newer ones).
    pubsub-agent = { fn-invoker = "roles/iam.serviceAccountTokenCreator" }
  }

  # identity -> { topic -> role }: `dead-letters` is every dead-letter topic (the Pub/Sub agent forwards
  # undeliverable messages there), drift-alerts the drift sink's topic.
  topic_roles = {
    pubsub-agent = { dead-letters = "roles/pubsub.publisher" }
    drift-sink   = { drift-alerts = "roles/pubsub.publisher" }
  }

  # identity -> { subscriptions -> role }: `push` is every push subscription (the Pub/Sub agent
  # acknowledges what it forwards to a dead-letter topic).
  subscription_roles = {
    pubsub-agent = { push = "roles/pubsub.subscriber" }
  }

  # identity -> { functions -> role }: `all` is every function; fn-invoker alone invokes them.
  function_roles = {
    fn-invoker = { all = "roles/run.invoker" }
  }

  project_grants = { for pair in flatten([for identity, roles in local.project_roles : [for role in roles :
  { identity = identity, role = role }]]) : "${pair.identity}/${pair.role}" => pair }
  bucket_grants = { for pair in flatten([for identity, grants in local.bucket_roles : [for bucket, role in grants :
    { identity = identity, bucket = bucket, role = role }]]) : "${pair.identity}/${pair.bucket}" => pair
  if contains(keys(local.members), pair.identity) }
  repository_grants = { for pair in flatten([for identity, grants in local.repository_roles : [for repository, role in grants :
    { identity = identity, repository = repository, role = role }]]) : "${pair.identity}/${pair.repository}" => pair
  if contains(keys(local.members), pair.identity) }
  dataset_grants = { for pair in flatten([for identity, grants in local.dataset_roles : [for dataset, role in grants :
  { identity = identity, dataset = dataset, role = role }]]) : "${pair.identity}/${pair.dataset}" => pair }
  account_grants = { for pair in flatten([for identity, grants in local.account_roles : [for target, role in grants :
  { identity = identity, target = target, role = role }]]) : "${pair.identity}/${pair.target}" => pair }
  topic_scopes = merge({ drift-alerts = ["drift-alerts"] }, { dead-letters = [for name, _ in local.deployments : "${name}-dead-letter"] })
  topic_grants = { for pair in flatten([for identity, grants in local.topic_roles : [for scope, role in grants : [
    for topic in local.topic_scopes[scope] : { identity = identity, topic = topic, role = role }]]]) :
  "${pair.identity}/${pair.topic}" => pair }
  subscription_grants = { for pair in flatten([for identity, grants in local.subscription_roles : [for scope, role in grants : [
    for deployment, _ in local.pushed : { identity = identity, deployment = deployment, role = role }]]]) :
  "${pair.identity}/${pair.deployment}" => pair }
  function_grants = { for pair in flatten([for identity, grants in local.function_roles : [for scope, role in grants : [
    for deployment, _ in local.deployments : { identity = identity, deployment = deployment, role = role }]]]) :
  "${pair.identity}/${pair.deployment}" => pair }
}

data "google_storage_project_service_account" "gcs_agent" {
  project = var.project_id
}

resource "google_project_iam_member" "project" {
  for_each = local.project_grants
  project  = var.project_id
  role     = startswith(each.value.role, "roles/") ? each.value.role : google_project_iam_custom_role.roles[each.value.role].name
  member   = local.members[each.value.identity]
}

resource "google_project_iam_member" "conditional" {
  for_each = local.conditional_project_roles
  project  = var.project_id
  role     = each.value.role
  member   = local.members[each.value.identity]
  condition {
    title      = each.value.title
    expression = "resource.name == \"projects/_/buckets/${each.value.bucket}\" || resource.name.startsWith(\"projects/_/buckets/${each.value.bucket}/\")"
  }
}

resource "google_storage_bucket_iam_member" "buckets" {
  for_each = local.bucket_grants
  bucket   = each.value.bucket == "access_logs" ? google_storage_bucket.access_logs.name : module.buckets[each.value.bucket].name
  role     = each.value.role
  member   = local.members[each.value.identity]
}

resource "google_artifact_registry_repository_iam_member" "repositories" {
  for_each   = local.repository_grants
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.repositories[each.value.repository].name
  role       = each.value.role
  member     = local.members[each.value.identity]
}

resource "google_bigquery_dataset_iam_member" "datasets" {
  for_each   = local.dataset_grants
  project    = var.project_id
  dataset_id = google_bigquery_dataset.datasets[each.value.dataset].dataset_id
  role       = startswith(each.value.role, "roles/") ? each.value.role : google_project_iam_custom_role.roles[each.value.role].name
  member     = local.members[each.value.identity]
}

resource "google_service_account_iam_member" "accounts" {
  for_each           = local.account_grants
  service_account_id = google_service_account.accounts[each.value.target].name
  role               = each.value.role
  member             = local.members[each.value.identity]
}

resource "google_pubsub_topic_iam_member" "topics" {
  for_each = local.topic_grants
  project  = var.project_id
  topic    = each.value.topic == "drift-alerts" ? google_pubsub_topic.triggers["drift-alerts"].name : google_pubsub_topic.dead_letter[trimsuffix(each.value.topic, "-dead-letter")].name
  role     = each.value.role
  member   = local.members[each.value.identity]
}

resource "google_pubsub_subscription_iam_member" "subscriptions" {
  for_each     = local.subscription_grants
  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.value.deployment].name
  role         = each.value.role
  member       = local.members[each.value.identity]
}

resource "google_cloud_run_v2_service_iam_member" "functions" {
  for_each = local.function_grants
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[each.value.deployment].name
  role     = each.value.role
  member   = local.members[each.value.identity]
}
