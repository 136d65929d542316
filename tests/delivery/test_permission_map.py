"""The permission map (release/permission_map.yaml) proven against the code, Google's IAM data and Terraform.

Least privilege by proof instead of by reading: every Google API call the code makes has a row naming its
identity and resource (tests/delivery/api_calls.py finds the calls); every row's permissions come from
Google's own data (../shared/data/gcp: roles.json, methods.json); every identity holds, through Terraform's
grants, a role with each permission on that resource; and no grant, no custom role permission, is more
than some row needs. The proof itself is release/permissions.py; docs/delivery.md shows its table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from contract.paths import PROJECT_ROOT
from release.permissions import GOOGLE, PROJECT, UPSTREAM, GoogleIam, PermissionMap, Proof, Row, render, render_excess
from release.terraform_model import Terraform, literal
from tests.delivery import api_calls
from tests.delivery.test_cloudbuild import _command, _simple_commands

CLOUD_BUILD_CONFIGS = ("cloudbuild.yaml", "cloudbuild-promote.yaml")
IMPERSONATED = "#impersonated"
# Grants that table-driven IAM resources make (iam.tf): resource type -> the resource's name there.
IAM_RESOURCES = {"google_project_iam_member": {"project", "conditional"},
                 "google_storage_bucket_iam_member": {"buckets"},
                 "google_artifact_registry_repository_iam_member": {"repositories"},
                 "google_bigquery_dataset_iam_member": {"datasets"},
                 "google_service_account_iam_member": {"accounts"},
                 "google_pubsub_topic_iam_member": {"topics"},
                 "google_pubsub_subscription_iam_member": {"subscriptions"},
                 "google_cloud_run_v2_service_iam_member": {"functions"}}


def scan_identity(permission_map: PermissionMap, name: str) -> tuple[dict[str, list[str]], list[str]]:
    """The calls the code an identity runs makes (method -> where), and what the scan could not read."""
    identity = permission_map.identities[name]
    found: dict[str, list[str]] = {}
    problems: list[str] = []
    python = []
    for entry in identity.code:
        if entry.startswith("compiled/"):
            calls = api_calls.scan_templates(PROJECT_ROOT / Path(entry).parent)
        elif ".sh" in entry:
            script, _, mode = entry.partition("#")
            calls = [call for call in api_calls.scan_script(script)
                     if call.impersonated == (mode == IMPERSONATED[1:])]
        else:
            file, _, function = entry.partition(":")
            python += [f"{path.relative_to(PROJECT_ROOT).as_posix()}{':' + function if function else ''}"
                       for path in sorted(PROJECT_ROOT.glob(file))]
            continue
        for call in calls:
            found.setdefault(call.method, []).append(call.where)
    if python:
        scan = api_calls.scan_entries(python, identity.stop, permission_map.not_google)
        for call in scan.calls:
            found.setdefault(call.method, []).append(call.where)
        problems += [f"unknown Google client call {call}" for call in scan.unknown]
        problems += [f"API path no discovery method matches: {path}" for path in scan.unresolved]
    problems += [f"{method} at {where}" for method, where in found.items() if method.startswith("unknown")]
    return found, problems


@pytest.fixture(scope="module")
def scans(permission_map: PermissionMap, google_iam: GoogleIam) -> dict[str, tuple[dict[str, list[str]], list[str]]]:
    return {name: scan_identity(permission_map, name) for name, identity in permission_map.identities.items()
            if identity.code}


# --- the map against Google's data -----------------------------------------------------------------------------

def test_every_row_names_a_real_method_and_real_permissions(permission_map: PermissionMap, google_iam: GoogleIam):
    assert len(permission_map.rows()) > 80
    assert permission_map.problems(google_iam) == []
    # methods.json's own permissions are used where they are right: a row of a mapped, un-narrowed method
    # needs exactly what methods.json lists.
    row = next(row for row in permission_map.rows() if row.method.endswith("pipelineJobs.create"))
    assert permission_map.permissions(row, google_iam) == ("aiplatform.pipelineJobs.create",)


def test_a_made_up_method_or_permission_is_refused(permission_map: PermissionMap, google_iam: GoogleIam):
    broken = PermissionMap(permission_map.actions, permission_map.narrowed, permission_map.unmapped,
                           permission_map.not_google, {"x": permission_map.identities["pr-check"].__class__(
                               "x", "service account", "", (), {}, (), "", (
                                   Row("x", "aiplatform.projects.locations.pipelineJobs.creat", PROJECT, "code", "?"),
                                   Row("x", "logging.write", PROJECT, "platform", "?", "doc",
                                       permissions=("logging.logEntries.write",))))})
    problems = broken.problems(google_iam)
    assert any("pipelineJobs.creat on project: no such REST method" in problem for problem in problems), problems
    assert any("logging.logEntries.write is no permission" in problem for problem in problems), problems


# --- the map against the code ----------------------------------------------------------------------------------

def test_every_call_the_code_makes_has_a_row_and_every_code_row_is_a_call(permission_map, scans):
    for name, (found, problems) in scans.items():
        assert problems == [], f"{name}: the scan could not read: {problems}"
        rows = permission_map.identities[name].rows
        declared = {row.method for row in rows if row.by == "code" and not row.pending}
        pending = {row.method: row.pending for row in rows if row.by == "code" and row.pending}
        unmapped = {method: where for method, where in found.items() if method not in declared | set(pending)}
        assert not unmapped, f"{name} makes calls the permission map does not list: {unmapped}"
        stale = sorted(declared - set(found))
        assert not stale, f"{name}: rows `by: code` the code no longer makes (or the scan no longer sees): {stale}"
        landed = {method: issue for method, issue in pending.items() if method in found}
        assert not landed, f"{name}: {landed} are in the code now: drop their `pending`"


def test_the_scan_reaches_what_each_identity_runs(scans):
    """Not vacuous: known calls are found where they are, and only there."""
    source = (PROJECT_ROOT / "triggers/submission/pipeline_jobs.py").read_text().splitlines()
    create_line = next(number for number, line in enumerate(source, 1) if "/pipelineJobs?pipelineJobId=" in line)
    assert f"triggers/submission/pipeline_jobs.py:{create_line}" in scans["fn-new-data"][0][
        "aiplatform.projects.locations.pipelineJobs.create"][0]
    assert "storage.objects.list" not in scans["fn-new-data"][0]  # the event names the object: no listing
    assert "storage.objects.list" in scans["fn-schedule"][0]  # the partition is listed for its data version
    assert any(where.startswith("deploy/monitoring.py") for where in scans["pipelines"][0][
        "monitoring.projects.timeSeries.list"])
    assert "compiled/training_pipeline.json:exec-train-model" in scans["pipelines"][0][
        "aiplatform.projects.locations.customJobs.create"]
    assert "aiplatform.projects.locations.models.upload" not in scans["monitoring"][0]
    assert scans["deployer"][0].keys() == {f"cloudfunctions.projects.locations.{method}" for method in
                                           ("functions.list", "functions.get", "functions.patch", "operations.get")}


def test_the_scan_reports_what_it_cannot_read(tmp_path):
    """A call through a Google client the scan has no entry for, and an API path no method matches."""
    code = ("from google.cloud import aiplatform\n"
            "def f(session, p):\n"
            "    aiplatform.BatchPredictionJob.create(p)\n"
            "    session.get(f'https://x/v1/projects/{p}/locations/{p}/noSuchThings')\n"
            "    session.get(f'https://x/storage/v1/b/{p}/o')\n")
    tree = ast.parse(code)
    found, unknown, unresolved = api_calls._function_calls(tree.body[1], "x.py", {"aiplatform"}, {"GET"}, set())
    assert [call.method for call in found] == ["storage.objects.list"]
    assert unknown == ["x.py:3: aiplatform.BatchPredictionJob.create(...)"]
    assert unresolved == ["x.py:4: ['GET'] v1/projects/\x00/locations/\x00/noSuchThings"]


def test_local_only_files_and_stops_are_each_needed(permission_map, scans):
    """An exclusion the scan does not need is removed, so that none hides a real call."""
    for path in permission_map.not_google:
        scan = api_calls.scan_file(path)
        assert scan.calls or scan.unresolved, f"not_google {path}: the scan finds nothing there to exclude"
    for name, identity in permission_map.identities.items():
        for stop in identity.stop:
            entries = [entry for entry in identity.code if entry.endswith(".py") or ".py:" in entry]
            reached = api_calls.scan_entries(entries, (), permission_map.not_google).reached
            assert stop in reached or stop.split(":")[0] in {r.split(":")[0] for r in reached if ":" not in stop}, \
                f"{name}: stop {stop} is not reached; drop it"


def test_every_step_of_the_release_runs_code_some_identity_declares(permission_map):
    """What a Cloud Build step runs is in the code of the identity it runs as: the build's own account, or
    the account `release.impersonate` runs a module as (monitoring)."""
    declared = {name: {entry.split(":")[0].split("#")[0] for entry in identity.code}
                for name, identity in permission_map.identities.items()}
    for config in CLOUD_BUILD_CONFIGS:
        for step in yaml.safe_load((PROJECT_ROOT / config).read_text())["steps"]:
            for words in _simple_commands(_command(step)):
                modules = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-m"]
                if modules[:1] == ["release.impersonate"]:
                    account = words[words.index("release.impersonate") + 1].strip("${}").removeprefix("_")
                    runner = {"MONITORING_SA": "monitoring", "DEPLOYER_SA": "deployer"}[account]
                    assert f"{modules[1].replace('.', '/')}/__main__.py" in declared[runner], (config, step["id"])
                    modules = modules[:1]
                for module in modules:
                    path = PROJECT_ROOT / (module.replace(".", "/") + ".py")
                    if path.is_file() and api_calls.scan_entries([path.relative_to(PROJECT_ROOT).as_posix()],
                                                                  permission_map.identities["release-build"].stop,
                                                                  permission_map.not_google).calls:
                        assert path.relative_to(PROJECT_ROOT).as_posix() in declared["release-build"], \
                            f"{config} step {step['id']} runs {module}, which calls Google: not in release-build's code"
                scripts = [word for word in words if word.endswith(".sh")]
                for script in scripts:
                    if api_calls.scan_script(script):
                        assert script in declared["release-build"], f"{config} step {step['id']}: {script}"


# --- the map against Terraform -------------------------------------------------------------------------------

def test_every_identity_holds_what_its_rows_need(proof: Proof):
    assert proof.missing() == []


def test_every_grant_terraform_makes_is_needed_by_a_row(proof: Proof):
    assert proof.unused_grants() == []


def test_custom_roles_hold_real_permissions_each_needed_by_every_holder(proof: Proof):
    assert proof.unknown_custom_permissions() == []
    assert proof.unused_custom_permissions() == []
    held = {grant.role for grant in proof.grants}
    assert set(proof.custom_roles) <= held, f"custom roles nobody holds: {set(proof.custom_roles) - held}"


def test_the_proof_notices_a_missing_an_unused_and_a_wider_grant(permission_map, google_iam, terraform: Terraform):
    platform = terraform.locals()
    narrower = platform | {"bucket_roles": {**platform["bucket_roles"], "fn-schedule": {
        "templates": "roles/storage.objectViewer"}}}
    assert any("fn-schedule needs storage.objects.list on bucket:landing" in problem
               for problem in Proof(permission_map, google_iam, narrower).missing())
    wider = platform | {"project_roles": {**platform["project_roles"], "monitoring": ["roles/logging.logWriter",
                                                                                     "mlopsMonitoringApply"]}}
    assert Proof(permission_map, google_iam, wider).unused_grants() == [
        "monitoring: roles/logging.logWriter is needed by no row of the permission map"]


def test_every_account_and_grantee_has_an_identity_in_the_map(permission_map, proof: Proof, terraform):
    accounts = set(terraform.locals()["service_accounts"])
    kinds = {name: identity.kind for name, identity in permission_map.identities.items()}
    assert {name for name, kind in kinds.items() if kind == "service account"} == accounts
    grantees = {grant.identity for grant in proof.grants} - {"promoter"}
    assert grantees <= set(kinds), f"Terraform grants to identities the map does not know: {grantees - set(kinds)}"
    for row in permission_map.rows():
        kind, _, name = row.resource.partition(":")
        if kind == "account" and "*" not in name:
            assert name in accounts, f"{row.identity}: {row.method} on unknown account {name}"


def test_no_iam_grant_exists_outside_the_tables_the_proof_reads(terraform: Terraform):
    found = {(resource.type, resource.name) for resource in terraform.resources()
             if re.search(r"_iam_(member|binding|policy|audit_config)$", resource.type)}
    expected = {(kind, name) for kind, names in IAM_RESOURCES.items() for name in names}
    assert found == expected, f"IAM resources outside iam.tf's tables: {found - expected}; missing: {expected - found}"
    text = (terraform.files[next(path for path in terraform.files if path.name == "iam.tf")] and
            (PROJECT_ROOT / "terraform/modules/platform/iam.tf").read_text())
    for table in ("project_roles", "bucket_roles", "repository_roles", "dataset_roles", "account_roles",
                  "topic_roles", "subscription_roles", "function_roles", "conditional_project_roles"):
        assert f"local.{table}" in text, f"{table} feeds no grant resource"


def test_project_wide_grants_of_scoped_roles_serve_only_rows_on_the_project(proof: Proof):
    """A role of a resource that has its own IAM (bucket, topic, account, service) is granted project-wide
    only where every row it serves is on the project itself (a resource Terraform cannot name)."""
    scoped = ("roles/storage.", "roles/pubsub.", "roles/iam.serviceAccount", "roles/run.", "roles/artifactregistry.",
              "roles/bigquery.data")
    for grant in proof.grants:
        if grant.source != "terraform" or grant.scope != PROJECT or not grant.role.startswith(scoped):
            continue
        served = [res.row for row in proof.map.rows() for res in proof.resolve(row)
                  if any(grant in grants for grants in res.granted_by.values())]
        assert served and all(row.resource == PROJECT for row in served), \
            f"{grant.identity}: {grant.role} project-wide serves {[(r.method, r.resource) for r in served]}"


def test_rows_no_grant_of_ours_can_satisfy_are_the_promotion_and_googles_own(permission_map):
    """Rows on the source environment's resources are the promotion's (its Terraform grants them); rows on
    Google's own resources are the Google-managed identities' (no grant exists to give or check)."""
    for row in permission_map.rows():
        if row.resource.startswith(UPSTREAM):
            assert row.identity == "release-build", row
        if row.resource.startswith(GOOGLE):
            assert permission_map.identities[row.identity].kind.startswith("Google-managed"), row


# --- defects of the issue, each against what proves it -------------------------------------------------------

VERTEX_CALLERS = ("fn-new-data", "fn-schedule", "fn-drift-alert", "monitoring")


@pytest.mark.parametrize("identity", VERTEX_CALLERS)
def test_functions_and_monitoring_hold_exactly_the_vertex_permissions_they_call(proof: Proof, identity: str):
    """Defect 10: roles/aiplatform.user would let them create a CustomJob running as Vertex's custom-code
    agent, which reads every bucket of the project. They hold the Vertex AI permissions their rows need."""
    held = {permission for grant in proof.grants if grant.identity == identity
            for permission in proof.role_permissions(grant.role) if permission.startswith("aiplatform.")}
    needed = {permission for row in proof.map.identities[identity].rows
              for permission in proof.map.permissions(row, proof.iam) if permission.startswith("aiplatform.")}
    extra = sorted(held - needed)
    assert not extra, (f"{identity} holds {len(extra)} Vertex AI permissions beyond its calls (CustomJob creation "
                       f"among them: {'aiplatform.customJobs.create' in extra}): {extra[:5]}...")
    assert needed <= held, f"{identity} lacks {sorted(needed - held)}"


def test_function_builds_can_fetch_their_source_and_push_only_to_their_own_repository(proof: Proof, terraform):
    """Defects 1 and 9: the build fetches from gcf-v2-sources-NUMBER-REGION (a grant conditioned on that
    bucket, which appears only with the first function), and writes images only to the functions' own
    repository, named by build_config.docker_repository."""
    platform = terraform.locals()
    [condition] = [entry for entry in platform["conditional_project_roles"].values()
                   if entry["identity"] == "fn-builder"]
    assert condition["bucket"] == "gcf-v2-sources-${local.project_number}-${var.region}"
    assert condition["role"] == "roles/storage.objectViewer" and condition["resource"] == "bucket:gcf-sources"
    builder = {grant.describe() for grant in proof.grants if grant.identity == "fn-builder"}
    assert builder == {"roles/logging.logWriter", "roles/storage.objectViewer on bucket:gcf-sources",
                       "roles/artifactregistry.writer on repository:functions"}
    writers = {grant.identity for grant in proof.grants if grant.role == "roles/artifactregistry.writer"
               and grant.scope in (PROJECT, "repository:images", "repository:templates")}
    assert writers == {"release-build"}
    [function] = terraform.resources("google_cloudfunctions2_function")
    [build] = function.body["build_config"]
    assert literal(build["docker_repository"]) == '${google_artifact_registry_repository.repositories["functions"].id}'


def test_functions_are_created_after_the_grants_their_build_and_trigger_need(terraform: Terraform):
    """Defect 2: Eventarc refuses the Cloud Storage trigger until the Cloud Storage agent may publish and
    fn-invoker may receive events (both project grants), and the build needs its own grants."""
    [function] = terraform.resources("google_cloudfunctions2_function")
    depends = {literal(item).strip("${}") for item in function.body.get("depends_on", [])}
    assert {"google_project_iam_member.project", "google_project_iam_member.conditional",
            "google_artifact_registry_repository_iam_member.repositories"} <= depends
    project_roles = terraform.locals()["project_roles"]
    assert "roles/pubsub.publisher" in project_roles["gcs-agent"]
    assert "roles/eventarc.eventReceiver" in project_roles["fn-invoker"]


def test_the_deployer_may_act_as_every_account_a_function_deploy_names(terraform: Terraform):
    """Defect 5: a deploy acts as the function's runtime account, its build account and its trigger's."""
    [function] = terraform.resources("google_cloudfunctions2_function")
    text = " ".join(function.file.read_text().split())
    named = set(re.findall(r'google_service_account\.accounts\["([a-z-]+)"\]', text))
    named |= {kind["account"] for kind in terraform.locals()["function_kinds"].values()}
    assert {"fn-builder", "fn-invoker", "fn-new-data"} <= named
    deployer = terraform.locals()["account_roles"]["deployer"]
    assert {account: deployer.get(account) for account in named} == dict.fromkeys(named, "roles/iam.serviceAccountUser")


def test_every_api_the_system_calls_is_enabled_by_terraform(permission_map: PermissionMap, terraform: Terraform):
    """Defect 6: the APIs of every row (and Dataflow's own: dataflow, compute), enabled by Terraform with
    disable_on_destroy = false; README enables by hand only the two Terraform needs to enable the rest."""
    [service] = terraform.resources("google_project_service")
    assert literal(service.body["disable_on_destroy"]) is False
    enabled = set(terraform.locals(TERRAFORM_SERVICES)["apis"])
    called = {f"{row.method.split('.')[0]}.googleapis.com" for row in permission_map.rows()}
    called |= {"dataflow.googleapis.com", "compute.googleapis.com", "cloudbuild.googleapis.com",
               "eventarc.googleapis.com", "run.googleapis.com", "cloudscheduler.googleapis.com",
               "billingbudgets.googleapis.com", "iam.googleapis.com"}
    assert called - enabled == set(), f"called but not enabled: {sorted(called - enabled)}"
    assert enabled - called == set(), f"enabled but called by nothing: {sorted(enabled - called)}"
    readme = (PROJECT_ROOT / "README.md").read_text()
    by_hand = set(re.findall(r"([a-z]+\.googleapis\.com)", " ".join(
        re.findall(r"gcloud services enable ([^\n]*)", readme))))
    assert by_hand == {"serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com"}, by_hand
    for env in ("dev", "staging", "prod"):
        main = (PROJECT_ROOT / "terraform" / "envs" / env / "main.tf").read_text()
        assert 'source     = "../../modules/services"' in main and "depends_on = [module.services]" in main


TERRAFORM_SERVICES = PROJECT_ROOT / "terraform" / "modules" / "services"


def test_the_docs_show_the_map_as_it_is(proof: Proof):
    """docs/delivery.md carries the table `python -m release.permissions` prints, current."""
    docs = (PROJECT_ROOT / "docs" / "delivery.md").read_text()
    table, excess = render(proof), render_excess(proof)
    assert "**missing**" not in table and table.count("\n") > 100
    assert table in docs and excess in docs, \
        "docs/delivery.md's permission tables are stale: `python -m release.permissions --write-docs`"


def test_the_release_command_prints_the_table(capsys):
    from release import permissions

    assert permissions.main([]) == 0
    assert capsys.readouterr().out.startswith("| identity | method | on | permission | granted by |")


@pytest.mark.parametrize("name", ["roles.json", "methods.json", "google_provider_schema.json"])
def test_the_release_builds_copy_of_googles_data_is_the_shared_one(name: str):
    """release/gcp_data is what the release build reads (Cloud Build has no ../shared): the same bytes."""
    import gzip

    from release.permissions import VENDORED_GCP_DATA, gcp_data_dir
    from tests.conftest import require_or_skip

    shared = gcp_data_dir() / name
    require_or_skip(shared.is_file(), f"{shared} is not here to compare with (../shared beside the clone)")
    assert gzip.decompress((VENDORED_GCP_DATA / f"{name}.gz").read_bytes()) == shared.read_bytes(), \
        f"release/gcp_data/{name}.gz differs from {shared}: gzip -9 -n -c {shared} > release/gcp_data/{name}.gz"
