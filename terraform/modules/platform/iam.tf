# One service account per role, and only these grants. Resource-scoped (a bucket, a repository, a
# topic, a function, a service account) wherever the resource has its own IAM policy; project-level
# only for permissions that exist on no smaller resource (said per grant). No primitive roles, no keys.

resource "google_service_account" "accounts" {
  for_each     = local.service_accounts
  project      = var.project_id
  account_id   = each.key
  display_name = "mlops ${each.key}"
  description  = each.value
}

locals {
  sa_member = { for name, account in google_service_account.accounts : name => "serviceAccount:${account.email}" }

  project_roles = {
    # pipelineJobs.create, customJobs, models, endpoints: Vertex AI has no per-resource IAM for these.
    # ... and Dataflow jobs, when a run sets beam_runner=DataflowRunner (no per-job IAM either).
    pipelines      = ["roles/aiplatform.user", "roles/logging.logWriter", "roles/dataflow.developer"]
    # Dataflow workers take work items from the service: a project-level role by design.
    dataflow-worker = ["roles/dataflow.worker"]
    fn-new-data    = ["roles/aiplatform.user"]
    fn-schedule    = ["roles/aiplatform.user"]
    fn-drift-alert = ["roles/aiplatform.user"]
    monitoring     = ["roles/aiplatform.user", "roles/logging.logWriter"]
    # Eventarc delivers events to a trigger's identity only with this project-level role.
    fn-invoker = ["roles/eventarc.eventReceiver"]
    # Cloud Functions builds in Cloud Build and pushes to its own gcf-artifacts repository (not ours).
    fn-builder = ["roles/logging.logWriter", "roles/artifactregistry.writer"]
    # Build logs; everything else the build touches is granted on the resource below.
    release-build = ["roles/logging.logWriter"]
    # Deploying function code calls operations and upload URLs that live on the location, not the function.
    deployer = ["roles/cloudfunctions.developer"]
  }

  bucket_roles = {
    pipelines      = { pipeline_root = "roles/storage.objectUser", models = "roles/storage.objectUser", landing = "roles/storage.objectViewer" }
    fn-new-data    = { landing = "roles/storage.objectViewer", templates = "roles/storage.objectViewer" }
    fn-schedule    = { landing = "roles/storage.objectViewer", templates = "roles/storage.objectViewer" }
    fn-drift-alert = { landing = "roles/storage.objectViewer", templates = "roles/storage.objectViewer" }
    serving        = { pipeline_root = "roles/storage.objectViewer", models = "roles/storage.objectViewer" }
    # Reads a run's examples, writes transformed shards, staging and temp files: all under the pipeline root.
    dataflow-worker = { pipeline_root = "roles/storage.objectUser" }
    monitoring     = { landing = "roles/storage.objectViewer", pipeline_root = "roles/storage.objectUser", models = "roles/storage.objectViewer" }
    release-build  = { templates = "roles/storage.objectUser" }
    fn-builder     = { templates = "roles/storage.objectViewer" }
    deployer       = { templates = "roles/storage.objectViewer" } # the release's function sources
  }

  repository_roles = {
    pipelines     = { images = "roles/artifactregistry.reader", templates = "roles/artifactregistry.reader" }
    serving       = { images = "roles/artifactregistry.reader" }
    dataflow-worker = { images = "roles/artifactregistry.reader" } # --sdk_container_image: the pipeline image
    monitoring    = { images = "roles/artifactregistry.reader" }
    release-build = { images = "roles/artifactregistry.writer", templates = "roles/artifactregistry.writer" }
  }

  # account -> { the account it acts as or impersonates = role }
  account_roles = {
    fn-new-data    = { pipelines = "roles/iam.serviceAccountUser" }
    fn-schedule    = { pipelines = "roles/iam.serviceAccountUser" }
    fn-drift-alert = { pipelines = "roles/iam.serviceAccountUser" }
    # The train step's CustomJob runs as the pipelines account; deployed models serve as `serving`.
    # Beam steps with DataflowRunner start their workers as `dataflow-worker`.
    pipelines = { pipelines = "roles/iam.serviceAccountUser", serving = "roles/iam.serviceAccountUser", dataflow-worker = "roles/iam.serviceAccountUser" }
    # The build holds no deploy rights itself: it impersonates these two.
    release-build = { deployer = "roles/iam.serviceAccountTokenCreator", monitoring = "roles/iam.serviceAccountTokenCreator" }
    deployer      = { fn-new-data = "roles/iam.serviceAccountUser", fn-schedule = "roles/iam.serviceAccountUser", fn-drift-alert = "roles/iam.serviceAccountUser", fn-builder = "roles/iam.serviceAccountUser" }
  }

  pubsub_agent = "serviceAccount:service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_project_iam_member" "project" {
  for_each = { for pair in flatten([for account, roles in local.project_roles : [for role in roles : { account = account, role = role }]]) :
  "${pair.account}/${pair.role}" => pair }
  project = var.project_id
  role    = each.value.role
  member  = local.sa_member[each.value.account]
}

resource "google_storage_bucket_iam_member" "buckets" {
  for_each = { for pair in flatten([for account, grants in local.bucket_roles : [for bucket, role in grants : { account = account, bucket = bucket, role = role }]]) :
  "${pair.account}/${pair.bucket}" => pair }
  bucket = module.buckets[each.value.bucket].name
  role   = each.value.role
  member = local.sa_member[each.value.account]
}

resource "google_artifact_registry_repository_iam_member" "repositories" {
  for_each = { for pair in flatten([for account, grants in local.repository_roles : [for repository, role in grants : { account = account, repository = repository, role = role }]]) :
  "${pair.account}/${pair.repository}" => pair }
  project    = var.project_id
  location   = var.region
  repository = each.value.repository == "images" ? google_artifact_registry_repository.images.name : google_artifact_registry_repository.templates.name
  role       = each.value.role
  member     = local.sa_member[each.value.account]
}

resource "google_service_account_iam_member" "accounts" {
  for_each = { for pair in flatten([for account, grants in local.account_roles : [for target, role in grants : { account = account, target = target, role = role }]]) :
  "${pair.account}/${pair.target}" => pair }
  service_account_id = google_service_account.accounts[each.value.target].name
  role               = each.value.role
  member             = local.sa_member[each.value.account]
}

# Pub/Sub signs the push subscriptions' OIDC tokens as fn-invoker.
resource "google_service_account_iam_member" "pubsub_signs_as_invoker" {
  service_account_id = google_service_account.accounts["fn-invoker"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Eventarc's Cloud Storage trigger: the Cloud Storage service agent publishes to Eventarc's own topic,
# which Eventarc creates and names; the role cannot be scoped to a topic that does not exist yet.
data "google_storage_project_service_account" "gcs_agent" {
  project = var.project_id
}

resource "google_project_iam_member" "gcs_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs_agent.email_address}"
}
