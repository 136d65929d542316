"""The Cloud Build configs parse, run the release steps in the issue's order, declare every
substitution they use (and use every one they declare), and call only commands the repository has:
a Make target, a script, a module. External tools (docker, gcloud, apt-get) come with the step's image.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from contract.paths import PROJECT_ROOT
from release.terraform_model import PLATFORM_DIR, Terraform, literal

CONFIGS = ("cloudbuild.yaml", "cloudbuild-pr.yaml", "cloudbuild-promote.yaml")
RELEASE_ORDER = ["lint-and-test", "check-compiled", "build-pipeline-image", "build-serving-image", "push-images",
                 "compile-release", "publish-templates", "build-functions", "deploy-functions", "apply-monitoring",
                 "record-release"]
PROMOTE_ORDER = ["environment", "take-source-release", "copy-images", "publish-templates", "build-functions",
                 "deploy-functions", "apply-monitoring", "record-release"]
MONITORING_APPLY = ("python -m monitoring apply --config monitoring/chicago_taxi.yaml --project ${PROJECT_ID} "
                    "--location ${_REGION} --endpoint ${_ENDPOINT} --request-log-table ${_REQUEST_LOG_TABLE} "
                    "--output-uri ${_MONITORING_OUTPUT_URI}")
EXTERNAL = {"docker", "gcloud", "apt-get", "bash", "diff", "echo"}  # provided by the step images
SHELLS = {"bash", "sh", "/busybox/sh"}  # a shell running a script of the repository
PYTHONS = {"python", "python3", ".venv/bin/python"}
SUBSTITUTION = re.compile(r"\$\{?(_[A-Z0-9_]+)")


def _load(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / name).read_text())


def _command(step: dict) -> str:
    """The step's command line: its entrypoint (or the builder's) and arguments; `bash -c` unwrapped."""
    args = [str(arg) for arg in step.get("args", [])]
    if step.get("entrypoint") == "bash" and args[:1] == ["-c"]:
        return args[1]
    return shlex.join([step["entrypoint"], *args]) if "entrypoint" in step else shlex.join(
        [step["name"].rsplit("/", 1)[-1], *args])


def _simple_commands(command: str) -> list[list[str]]:
    commands = []
    for part in re.split(r"&&|\|\||;|\|", command):
        words = [word for word in shlex.split(part) if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word)]
        if words:
            commands.append(words)
    return commands


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_-]+):", (PROJECT_ROOT / "Makefile").read_text(), re.M))


def _module_exists(module: str) -> bool:
    base = PROJECT_ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


def _missing(words: list[str]) -> list[str]:
    """What this simple command needs from the repository and the repository lacks."""
    program, args = words[0], words[1:]
    if program in SHELLS and args and not args[0].startswith("-"):
        return [] if (PROJECT_ROOT / args[0]).is_file() else [f"{args[0]} (a script of the repository)"]
    if program == "make":
        return [f"make {target}" for target in args if not target.startswith("-") and target not in _make_targets()]
    if program in PYTHONS:
        missing = [f"python -m {args[i + 1]}" for i, arg in enumerate(args[:-1])
                   if arg == "-m" and not _module_exists(args[i + 1])]
        if args and args[0].endswith(".py") and not (PROJECT_ROOT / args[0]).is_file():
            missing.append(args[0])
        return missing
    if "/" in program:
        path = PROJECT_ROOT / program
        return [] if path.is_file() and path.stat().st_mode & 0o111 else [f"{program} (an executable script)"]
    return [] if program in EXTERNAL else [f"{program} (neither in the repository nor a known image tool)"]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_step_runs_a_command_the_repository_has(name):
    config = _load(name)
    assert config["steps"]
    missing = {step["id"]: _missing(words) for step in config["steps"] for words in _simple_commands(_command(step))}
    missing = {step: what for step, what in missing.items() if what}
    assert not missing, f"{name}: steps call what the repository does not have: {missing}"


@pytest.mark.parametrize("name", CONFIGS)
def test_substitutions_are_declared_once_and_all_used(name):
    text = (PROJECT_ROOT / name).read_text()
    config = yaml.safe_load(text)
    declared = set(config.get("substitutions", {}))
    body = yaml.safe_dump({key: value for key, value in config.items() if key != "substitutions"})
    used = set(SUBSTITUTION.findall(body)) | {name for value in config.get("substitutions", {}).values()
                                              for name in SUBSTITUTION.findall(str(value))}
    assert used - declared == set(), f"{name} uses undeclared substitutions {sorted(used - declared)}"
    assert declared - used == set(), f"{name} declares unused substitutions {sorted(declared - used)}"
    assert len(re.findall(r"^substitutions:", text, re.M)) == 1


def test_the_release_runs_the_steps_in_order_as_the_build_account_impersonating_the_deployers():
    config = _load("cloudbuild.yaml")
    assert [step["id"] for step in config["steps"]] == RELEASE_ORDER
    assert config["serviceAccount"].endswith("/release-build@${PROJECT_ID}.iam.gserviceaccount.com")
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    steps = {step["id"]: step for step in config["steps"]}
    image = "${_DOCKER_REPOSITORY}/pipeline:${COMMIT_SHA}"
    assert image in steps["build-pipeline-image"]["args"] and image in config["images"]
    # The templates name the images as pushed, by digest (push_images.sh records them; manifest compiles).
    assert steps["push-images"]["entrypoint"] == "release/push_images.sh"
    assert _command(steps["compile-release"]).startswith(".venv/bin/python -m release.manifest compile --images ")
    assert "${_DEPLOYER_SA}" in steps["deploy-functions"]["args"]
    _assert_monitoring_applied_with_terraforms_values(steps["apply-monitoring"])


def _assert_monitoring_applied_with_terraforms_values(step: dict) -> None:
    """Defect 3: `monitoring apply` gets the environment's endpoint, log table and output folder."""
    apply = shlex.split(_command(step))
    expected = shlex.split(MONITORING_APPLY)
    assert apply[-len(expected):] == expected  # the monitoring branch's entry point, exactly
    assert apply[:-len(expected)] == [".venv/bin/python", "-m", "release.impersonate", "${_MONITORING_SA}", "--"]


def test_terraform_gives_each_release_trigger_the_values_its_build_declares():
    """Defect 3: the per-environment values come from Terraform, as the triggers' substitutions, and the
    build declares each one (substitution_option MUST_MATCH refuses one it does not)."""
    # release_substitutions is a merge(...): its keys are read from the text.
    text = " ".join((PLATFORM_DIR / "cloudbuild.tf").read_text().split())
    keys = set(re.findall(r"\b(_[A-Z_]+) =", text))
    assert {"_ENV", "_REGION", "_ENDPOINT", "_REQUEST_LOG_TABLE", "_MONITORING_OUTPUT_URI", "_SOURCE_PROJECT"} <= keys
    for config in ("cloudbuild.yaml", "cloudbuild-promote.yaml"):
        declared = set(_load(config)["substitutions"])
        needed = keys - ({"_SOURCE_PROJECT"} if config == "cloudbuild.yaml" else set())
        assert needed <= declared, f"{config} lacks {sorted(needed - declared)}"


def test_repositories_follow_the_region():
    """Defect 7: no region typed into a repository name; `${_REGION}` everywhere."""
    for config in ("cloudbuild.yaml", "cloudbuild-promote.yaml"):
        substitutions = _load(config)["substitutions"]
        assert substitutions["_DOCKER_REPOSITORY"] == "${_REGION}-docker.pkg.dev/${PROJECT_ID}/mlops"
        assert substitutions["_KFP_REPOSITORY"] == "https://${_REGION}-kfp.pkg.dev/${PROJECT_ID}/mlops-templates"
        text = (PROJECT_ROOT / config).read_text()
        assert text.count("us-central1") == 1, f"{config}: a region typed outside _REGION's default"


def test_the_pr_check_runs_as_its_own_account_and_pushes_and_deploys_nothing():
    """Defect 8: a pull request's build runs as pr-check, which writes logs and nothing else (the trigger's
    account governs a triggered build; its build file cannot choose another), and an outside contributor's
    pull request waits for a maintainer's comment."""
    config = _load("cloudbuild-pr.yaml")
    commands = " ".join(_command(step) for step in config["steps"])
    assert "images" not in config and "push" not in commands and "deploy" not in commands
    assert [step["id"] for step in config["steps"]] == RELEASE_ORDER[:4]
    assert config["serviceAccount"].endswith("/pr-check@${PROJECT_ID}.iam.gserviceaccount.com")
    terraform = Terraform.load()
    triggers = {trigger.name: trigger.body for trigger in terraform.resources("google_cloudbuild_trigger")}
    assert set(triggers) == {"release", "pr_check"}
    assert literal(triggers["pr_check"]["service_account"]) == '${google_service_account.accounts["pr-check"].id}'
    assert literal(triggers["pr_check"]["filename"]) == "cloudbuild-pr.yaml"
    [github] = triggers["pr_check"]["github"]
    [pull_request] = github["pull_request"]
    assert literal(pull_request["comment_control"]) == "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
    assert literal(triggers["release"]["service_account"]) == '${google_service_account.accounts["release-build"].id}'
    platform = terraform.locals()
    assert platform["project_roles"]["pr-check"] == ["roles/logging.logWriter"]
    assert not [table for table in ("bucket_roles", "repository_roles", "dataset_roles", "account_roles")
                if "pr-check" in platform[table]]
    environments = {env: (PROJECT_ROOT / "terraform" / "envs" / env / "main.tf").read_text()
                    for env in ("dev", "staging", "prod")}
    assert [env for env, text in environments.items() if "pull_request_checks = true" in text] == ["dev"]


def test_prod_promotes_what_staging_built_and_released_behind_approval():
    """Defect 12: staging builds a tag once; prod builds nothing: behind Cloud Build's approval, and only
    once staging's release of the same commit passed (its manifest, written last), it copies staging's
    images by digest and publishes staging's templates retargeted to its own registry."""
    release, promote = _load("cloudbuild.yaml"), _load("cloudbuild-promote.yaml")
    assert release["steps"][-1]["id"] == "record-release" == promote["steps"][-1]["id"]
    assert _command(release["steps"][-1]).startswith(".venv/bin/python -m release.manifest record ")
    assert [step["id"] for step in promote["steps"]] == PROMOTE_ORDER
    commands = " ".join(_command(step) for step in promote["steps"])
    assert "docker" not in commands and "build -f" not in commands and "release.manifest compile" not in commands
    steps = {step["id"]: step for step in promote["steps"]}
    assert shlex.split(_command(steps["take-source-release"]))[:8] == [
        ".venv/bin/python", "-m", "release.manifest", "promote", "--source-bucket", "${_SOURCE_PROJECT}-templates",
        "--commit", "${COMMIT_SHA}"]
    assert steps["copy-images"]["args"] == ["release/copy_images.sh", "build/release/copies.txt"]
    assert "--templates build/release/templates" in _command(steps["publish-templates"])
    _assert_monitoring_applied_with_terraforms_values(steps["apply-monitoring"])
    [trigger] = [t for t in Terraform.load().resources("google_cloudbuild_trigger") if t.name == "release"]
    text = " ".join((PLATFORM_DIR / "cloudbuild.tf").read_text().split())
    assert 'filename = local.promoting ? "cloudbuild-promote.yaml" : "cloudbuild.yaml"' in text
    [approval] = trigger.body["approval_config"]
    assert literal(approval["approval_required"]) == "${local.promoting}"
    envs = {env: " ".join((PROJECT_ROOT / "terraform" / "envs" / env / "main.tf").read_text().split())
            for env in ("dev", "staging", "prod")}
    assert 'promote_from = { project_id = var.staging_project_id }' in envs["prod"]
    assert 'tag = "^v[0-9].*$"' in envs["prod"] and 'tag = "^v[0-9].*$"' in envs["staging"]
    assert 'promotion_reader = "serviceAccount:release-build@${var.prod_project_id}.iam.gserviceaccount.com"' \
        in envs["staging"]
    assert "promote_from" not in envs["staging"] and "promote_from" not in envs["dev"]
