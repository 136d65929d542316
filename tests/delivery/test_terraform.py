"""terraform/ checked without a terraform binary: it parses, checkov passes it, and it agrees with the code.

The cross-references read their truth from where it is declared once: the variables each function
reads from triggers/config.py, the functions from triggers/package.py, the templates from compiled/,
the service accounts from terraform/modules/platform/config.tf.
"""

from __future__ import annotations

import re
from pathlib import Path

from contract.dataset import load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from monitoring.config import load_monitoring_config
from pipelines.compile import COMPILED_DIR
from release.terraform_model import ENVIRONMENTS, PLATFORM_DIR, TERRAFORM_DIR, Terraform, literal
from triggers import config as trigger_config
from triggers.package import FUNCTIONS

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
# A service account named anywhere in code or build config: ACCOUNT@PROJECT.iam.gserviceaccount.com
SERVICE_ACCOUNT_EMAIL = re.compile(r"\b([a-z][a-z0-9-]{4,28}[a-z0-9])@[A-Za-z0-9.${}_-]+\.iam\.gserviceaccount\.com")
CODE_FILES = ("*.py", "cloudbuild*.yaml", "Makefile", "*.sh")
NOT_CODE = {".venv", ".tools", "build", "local", "compiled", ".git"}


def test_every_tf_file_parses_and_every_environment_has_its_own_gcs_state(terraform: Terraform):
    relative = {path.relative_to(TERRAFORM_DIR).as_posix() for path in terraform.files}
    assert {f"envs/{env}/main.tf" for env in ENVIRONMENTS} <= relative
    assert len(terraform.resources()) > 20
    backends = {}
    for env in ENVIRONMENTS:
        [settings] = [literal(block["backend"]) for block in terraform.files[TERRAFORM_DIR / "envs" / env / "main.tf"]
                      ["terraform"] if "backend" in block]
        [gcs] = [backend["gcs"] for backend in settings if "gcs" in backend]
        backends[env] = (gcs["bucket"], gcs["prefix"])
    assert len(set(backends.values())) == len(ENVIRONMENTS), f"environments share a state: {backends}"


def test_checkov_fails_nothing_and_every_skip_says_why(checkov_report: dict):
    summary = checkov_report["summary"]
    results = checkov_report["results"]
    assert summary["parsing_errors"] == 0, summary
    failed = [f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
              for check in results.get("failed_checks", [])]
    assert not failed, "checkov failed:\n  " + "\n  ".join(failed)
    unexplained = [f"{check['check_id']} {check['resource']}" for check in results.get("skipped_checks", [])
                   if not (check.get("check_result", {}).get("suppress_comment") or "").strip()]
    assert not unexplained, f"skipped without a reason (#checkov:skip=ID:reason): {unexplained}"
    # The checks that matter here really ran (a resource checkov could not read would pass silently).
    passed = {check["check_id"] for check in results.get("passed_checks", [])}
    assert {"CKV_GCP_29", "CKV_GCP_114", "CKV_GCP_78", "CKV_GCP_62", "CKV_GCP_124"} <= passed, passed


def _variables_set(kind: dict, env_groups: dict) -> set[str]:
    # MLOPS_PIPELINE_PARAMETERS: every deployment's, from pipeline_parameters (config.tf, function_env)
    names = set(kind["env"]) | set(kind["schedule_env"]) | {"MLOPS_PIPELINE_PARAMETERS"}
    for group in kind["env_groups"]:
        names |= set(env_groups[group])
    return names


def test_every_variable_a_function_reads_is_set_by_terraform_and_nothing_else(terraform: Terraform):
    platform = terraform.locals()
    kinds, env_groups = platform["function_kinds"], platform["env_groups"]
    assert set(kinds) == set(FUNCTIONS), "terraform's function_kinds and triggers/package.py's FUNCTIONS differ"
    for name, kind in kinds.items():
        read = {setting.env for setting in trigger_config.CONFIGS[name].SETTINGS}
        set_by_terraform = _variables_set(kind, env_groups)
        unset, unread = sorted(read - set_by_terraform), sorted(set_by_terraform - read)
        assert not unset, f"{name} reads {unset}, which Terraform does not set"
        assert not unread, f"Terraform sets {unread} on {name}, which it never reads (triggers/config.py)"
        assert kind["entry_point"] in FUNCTIONS[name].entry_points
        for schedule_name, schedule in platform["schedules"].items():
            missing = set(kind["schedule_env"].values()) - set(schedule)
            assert not missing, f"schedules.{schedule_name} lacks {sorted(missing)}, which the schedule function needs"


def test_every_template_terraform_names_is_compiled(terraform: Terraform):
    named = set(re.findall(r"\b([a-z0-9_]+_pipeline\.json)\b", terraform.text()))
    scheduled = {schedule["template"] for schedule in terraform.locals()["schedules"].values()}
    assert scheduled <= named and "training_pipeline.json" in named
    missing = sorted(name for name in named if not (COMPILED_DIR / name).is_file())
    assert not missing, f"Terraform names templates that compiled/ lacks: {missing} (python runner.py --compile)"


def test_each_scheduled_run_fits_its_template(terraform: Terraform):
    """A Scheduler job whose partition parameter or fixed values its template does not declare would be
    refused at every tick: the schedule function checks them against the template, and so does this test."""
    from triggers.config import NO_PARTITION
    from triggers.submission.templates import load_template

    platform = terraform.locals()
    for name, schedule in platform["schedules"].items():
        declared = load_template(str(COMPILED_DIR / schedule["template"]), max_age_seconds=0).parameters
        given = set(schedule["parameters"]) | set(platform["pipeline_parameters"][schedule["template"]])
        if schedule["parameter"] != NO_PARTITION:
            given.add(schedule["parameter"])
        assert given <= set(declared), f"schedules.{name}: {sorted(given - set(declared))} are not parameters of " \
                                       f"{schedule['template']} (it declares {sorted(declared)})"


def test_one_endpoint_name_reaches_terraform_the_runs_the_triggers_and_monitoring(terraform: Terraform):
    """Defect 4: the pipelines deploy to `endpoint_display_name or model_name`; Terraform made `<model>-<env>`
    and the schedules passed no name, so the endpoint that served was not Terraform's. Now the name is the
    data set config's model_name (declared once there, read by Terraform too), Terraform's endpoint has it,
    every run Terraform starts of a template that takes it is given it, and monitoring gets that endpoint."""
    from triggers.submission.templates import load_template

    platform = terraform.locals()
    assert platform["model_name"] == "${yamldecode(file(var.dataset_config)).model_name}"
    assert platform["endpoint_display_name"] == "${local.model_name}"
    for env in ENVIRONMENTS:
        main = terraform.files[TERRAFORM_DIR / "envs" / env / "main.tf"]
        [module] = [block['"platform"'] for block in main["module"] if '"platform"' in block]
        config = literal(module["dataset_config"]).replace("${path.root}", str(TERRAFORM_DIR / "envs" / env))
        assert Path(config).resolve() == (PROJECT_ROOT / DEFAULT_DATASET_CONFIG).resolve(), (env, config)
    assert load_dataset_config(DEFAULT_DATASET_CONFIG).model_name == load_monitoring_config().model_name

    [endpoint] = terraform.resources("google_vertex_ai_endpoint")
    assert literal(endpoint.body["display_name"]) == "${local.endpoint_display_name}"
    [logging] = endpoint.body["predict_request_response_logging_config"]
    assert literal(logging["enabled"]) is True and "serving_logs" in platform["datasets"]
    # The deploy step's lock and journal are endpoint labels: an apply must not reset them.
    [lifecycle] = endpoint.body["lifecycle"]
    assert "labels" in str(lifecycle["ignore_changes"])
    # The deploy step brings an endpoint to the logging it is given: the runs get the endpoint's own, or the
    # first deploy would re-point Terraform's endpoint (and the next apply point it back).
    [destination] = logging["bigquery_destination"]
    training = platform["pipeline_parameters"]["training_pipeline.json"]
    assert training["request_log_table"] == literal(destination["output_uri"]) == "${local.request_log_dataset}"
    assert training["request_log_sampling_rate"] == literal(logging["sampling_rate"])
    # The drift function finds the monitor `monitoring apply` creates by the monitoring config's display name.
    assert platform["monitor_display_name"] == "${local.model_name}-monitor"
    assert load_monitoring_config().display_name == f"{load_monitoring_config().model_name}-monitor"
    assert platform["function_kinds"]["drift_alert"]["env"]["MLOPS_MODEL_MONITOR"] == "${local.monitor_display_name}"

    takes_it = set()
    for template, parameters in platform["pipeline_parameters"].items():
        declared = load_template(str(COMPILED_DIR / template), max_age_seconds=0).parameters
        if "endpoint_display_name" in declared:
            takes_it.add(template)
            assert parameters.get("endpoint_display_name") == "${local.endpoint_display_name}", template
    assert takes_it == {"training_pipeline.json", "canary_decision_pipeline.json"}
    # Every deployment sends its template's parameters (new data and drift submit training).
    assert {kind["template"] for kind in platform["function_kinds"].values()} == {"training_pipeline.json", None}
    assert "local.pipeline_parameters[local.deployment_template[name]]" in " ".join(
        (PLATFORM_DIR / "config.tf").read_text().split())
    assert platform["function_kinds"]["drift_alert"]["env"]["MLOPS_MODEL"] == "${local.model_name}"
    # Monitoring: the release trigger hands Terraform's endpoint to `monitoring apply --endpoint`.
    cloudbuild = " ".join((PLATFORM_DIR / "cloudbuild.tf").read_text().split())
    assert "_ENDPOINT = google_vertex_ai_endpoint.serving.id" in cloudbuild


def _code_files() -> list:
    return sorted(path for pattern in CODE_FILES for path in PROJECT_ROOT.rglob(pattern)
                  if not NOT_CODE & set(path.relative_to(PROJECT_ROOT).parts))


def test_every_service_account_the_code_or_cloud_build_names_exists_in_terraform(terraform: Terraform):
    declared = set(terraform.locals()["service_accounts"])
    named = {}
    for path in _code_files():
        for account in SERVICE_ACCOUNT_EMAIL.findall(path.read_text(errors="replace")):
            named.setdefault(account, path.relative_to(PROJECT_ROOT).as_posix())
    assert "pipelines" in named  # triggers/config.py's example: the scan reaches the code
    unknown = {account: where for account, where in named.items() if account not in declared}
    assert not unknown, f"service accounts named but not declared in terraform: {unknown}"


def test_no_primitive_roles_no_keys_no_public_members(terraform: Terraform):
    text = terraform.text()
    roles = set(re.findall(r"roles/[A-Za-z0-9_.]+", text))
    assert "roles/aiplatform.user" in roles  # the scan sees the grants
    assert not roles & set(PRIMITIVE_ROLES), sorted(roles & set(PRIMITIVE_ROLES))
    assert not terraform.resources("google_service_account_key")
    assert "google_service_account_key" not in text
    assert not [member for member in PUBLIC_MEMBERS if member in text]


def test_each_function_runs_as_its_own_account_behind_internal_ingress(terraform: Terraform):
    platform = terraform.locals()
    accounts = [kind["account"] for kind in platform["function_kinds"].values()]
    assert len(set(accounts)) == len(accounts) and set(accounts) <= set(platform["service_accounts"])
    [function] = terraform.resources("google_cloudfunctions2_function")
    [service] = function.body["service_config"]
    assert literal(service["ingress_settings"]) == "ALLOW_INTERNAL_ONLY"
    # Who may invoke them: iam.tf's function_roles alone feeds the Cloud Run invoker grants (and the
    # permission map proves each is needed: tests/delivery/test_permission_map.py).
    assert platform["function_roles"] == {"fn-invoker": {"all": "roles/run.invoker"}}
    [grants] = terraform.resources("google_cloud_run_v2_service_iam_member")
    assert literal(grants.body["for_each"]) == "${local.function_grants}"


def test_the_dataflow_flags_terraform_outputs_pass_the_runs_beam_checks(terraform: Terraform):
    """The Beam steps refuse a DataflowRunner run that names no network or subnetwork (a project without a
    default VPC): what Terraform hands over for beam_pipeline_args must pass that check either way."""
    from dataprep.beam_options import beam_options

    [output] = [block['"dataflow_pipeline_args"'] for file in terraform.files.values() for block in
                file.get("output", []) if '"dataflow_pipeline_args"' in block]
    expression = literal(output["value"])
    fixed, choice = re.fullmatch(r"\$\{concat\(\[(.*)\], (var\.dataflow_subnetwork.*)\)\}", expression, re.S).groups()
    flags = re.findall(r'"(--[a-z_]+=[^"]*)"', fixed)
    values = {"var.project_id": "my-project", "var.region": "us-central1",
              "local.bucket_names.pipeline_root": "my-project-pipeline-root",
              'google_service_account.accounts["dataflow-worker"].email':
                  "dataflow-worker@my-project.iam.gserviceaccount.com"}
    branches = re.fullmatch(r'var\.dataflow_subnetwork == "" \? \[(.*?)\] : \[(.*?)\]', choice)
    assert branches, f"expected a choice between the default network and the subnetwork: {choice}"
    for branch in branches.groups():  # without a subnetwork variable, and with one
        args = [re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m[1], "regions/us-central1/subnetworks/dataflow"),
                       flag) for flag in (*flags, *re.findall(r'"([^"]*)"', branch))]
        assert beam_options("DataflowRunner", args).runner == "DataflowRunner", args
