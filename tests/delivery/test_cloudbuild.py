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

CONFIGS = ("cloudbuild.yaml", "cloudbuild-pr.yaml")
RELEASE_ORDER = ["lint-and-test", "check-compiled", "build-pipeline-image", "build-serving-image", "push-images",
                 "compile-release", "publish-templates", "build-functions", "deploy-functions", "apply-monitoring"]
MONITORING_APPLY = ("python -m monitoring apply --config monitoring/chicago_taxi.yaml "
                    "--project ${PROJECT_ID} --location ${_REGION}")
EXTERNAL = {"docker", "gcloud", "apt-get", "bash", "diff", "echo"}  # provided by the step images
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
    assert f"MLOPS_PIPELINE_IMAGE={image}" in steps["compile-release"]["env"]
    assert image in steps["build-pipeline-image"]["args"] and image in config["images"]
    assert "${_DEPLOYER_SA}" in steps["deploy-functions"]["args"]
    apply = shlex.split(_command(steps["apply-monitoring"]))
    expected = shlex.split(MONITORING_APPLY)
    assert apply[-len(expected):] == expected  # the monitoring branch's entry point, exactly
    assert apply[:-len(expected)] == [".venv/bin/python", "-m", "release.impersonate", "${_MONITORING_SA}", "--"]


def test_the_pr_check_pushes_and_deploys_nothing():
    config = _load("cloudbuild-pr.yaml")
    commands = " ".join(_command(step) for step in config["steps"])
    assert "images" not in config and "push" not in commands and "deploy" not in commands
    assert [step["id"] for step in config["steps"]] == RELEASE_ORDER[:4]
