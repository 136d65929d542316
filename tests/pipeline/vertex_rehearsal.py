"""The Vertex form of a compiled template, rehearsed here: its steps, in its DAG's order, on gs:// URIs.

What Vertex AI Pipelines does for each step, and what stands in for it here:

- It resolves the step's inputs from the run's parameters and upstream outputs, as the template's
  DAG says (`dependentTasks`, `taskOutputArtifact`, `taskOutputParameter`, a `dsl.If` sub-DAG and
  its `triggerPolicy`). Here: the same, read from the same JSON.
- It runs the program the template carries for the step (the component function's source) in the
  pipeline image through `kfp.dsl.executor_main`, i.e. kfp's `Executor`. Here: that source, through
  that `Executor`, in this process. A container op has no such program, except the train step's
  Vertex Training CustomJob, whose worker runs the same component program: here it runs it directly.
- Artifacts live at `gs://BUCKET/ROOT/JOB/TASK/OUTPUT`; a step sees them at `artifact.path`,
  `/gcs/BUCKET/...`, through Cloud Storage FUSE. Here: a fresh folder per step is that mount (KFP's
  `/gcs/` prefix and `MLOPS_GCS_MOUNT` both point at it). The step's input artifacts are downloaded
  into it from the GCS emulator before the step, its outputs uploaded to the emulator after: nothing
  passes between steps except through the emulator. Anything else a step reads by URI (a champion's
  gs:// model, a gs:// dataset config) is not in the mount: it is read from the emulator through
  storage.uri, the project's one way to read by URI.

- The train step's CustomJob is created by GCPC's launcher from the `--payload` its executor carries, the
  step's parameters substituted into it (`{{$.inputs.parameters['x']}}`), the run-level placeholders
  (`{{$.pipeline_service_account}}`, the project, the location) resolved first, as Vertex resolves them
  for the run. Here: the same substitution, and the result parsed into aiplatform_v1's `CustomJob`, which
  refuses a field the API does not have; the request is kept on the step (`Step.custom_job`).
- A GCPC container op other than the CustomJob (ModelGetOp, ModelBatchPredictOp, ...) calls a Vertex
  service. Here: a stand-in for that service, given to `VertexRehearsal(container_ops=...)` under the
  op's launcher module; it gets the step's resolved parameters and input artifacts, as the launcher
  would, and returns the step's outputs (tests/batch_prediction/vertex_batch_stand_in.py has some).

A step the rehearsal cannot run yet (a new kind of container op, an input source it does not
know) stops the run with an error that says what to add here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import graphlib
import json
import re
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.uri import GCS_MOUNT_ENV
from tests.gcs_emulator import GcsEmulator

LIGHTWEIGHT_LAUNCHER = "kfp.dsl.executor_main"
# What Vertex resolves `{{$.pipeline_service_account}}` to when the run names no service account: the
# Compute Engine default service account (google_cloud_pipeline_components/_placeholders.py).
DEFAULT_RUN_SERVICE_ACCOUNT = "123456789012-compute@developer.gserviceaccount.com"
# An optional parameter with no default gets its type's default (kfp pipeline_spec.proto, ParameterSpec.is_optional).
_TYPE_DEFAULTS = {"STRING": "", "NUMBER_INTEGER": 0, "NUMBER_DOUBLE": 0.0, "BOOLEAN": False, "LIST": [],
                  "STRUCT": {}}
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(?P<name>[^']+)'\]\}\}")
CUSTOM_JOB_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"
_CONDITION = re.compile(r"^inputs\.parameter_values\['(?P<name>[^']+)'\]\s*(?P<op>==|!=)\s*(?P<value>.+)$")


# A stand-in for the Vertex service a container op calls: (parameters, input artifacts by name, each
# {"uri", "metadata"}, the step's output prefix) -> {"parameters": {...}, "artifacts": {name: {"uri", "metadata"}}}.
ContainerOp = Callable[[dict[str, Any], dict[str, dict], str], dict[str, dict]]


def container_launcher(spec: dict, component_name: str) -> str | None:
    """The GCPC launcher module a container op's step runs (`python3 -u -m LAUNCHER ...`), if it is one."""
    component = spec["components"][component_name]
    command = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"].get("command", [])
    return next((part for part in command if part.startswith("google_cloud_pipeline_components.container.")), None)


@dataclasses.dataclass(frozen=True)
class Program:
    """What a step runs: a component function's source, exactly as the template carries it."""

    function_name: str
    source: str
    image: str
    form: str  # "lightweight component" or "Vertex Training CustomJob"


def _program(command: list[str], args: list[str], image: str, form: str, where: str) -> Program:
    # The lightweight form: ["sh", "-ec", SCRIPT that writes "$0" to ephemeral_component.py, SOURCE].
    if len(command) != 4 or command[:2] != ["sh", "-ec"] or LIGHTWEIGHT_LAUNCHER not in command[2]:
        raise NotImplementedError(f"{where}: not a KFP lightweight component command: {command[:3]}")
    return Program(args[args.index("--function_to_execute") + 1], command[3], image, form)


def step_program(spec: dict, component_name: str) -> Program:
    """The program a component's step runs on Vertex."""
    component = spec["components"][component_name]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    command = container.get("command", [])
    if any(LIGHTWEIGHT_LAUNCHER in part for part in command[:3]):
        return _program(command, container["args"], container["image"], "lightweight component", component_name)
    if CUSTOM_JOB_LAUNCHER in command:
        [pool] = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
        job = pool["container_spec"]
        return _program(job["command"], job["args"], job["image_uri"], "Vertex Training CustomJob", component_name)
    raise NotImplementedError(
        f"{component_name} runs the container op {command[:4]}: the rehearsal has no stand-in for it yet; "
        f"add one to tests/pipeline/vertex_rehearsal.py (step_program and VertexRehearsal._run_step)")


def custom_job_request(spec: dict, component_name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The CustomJob GCPC's launcher creates for a step: the executor's `--payload` with the step's resolved
    parameters in it (a string as is, anything else as JSON, as Vertex fills the placeholders), read as the
    launcher reads it (container/v1/custom_job/remote_runner.py: json.loads; `max_wait_duration` dropped
    unless FLEX_START) and checked against aiplatform_v1's CustomJob, as the JobServiceClient would."""
    from google.cloud.aiplatform_v1.types import CustomJob

    container = spec["deploymentSpec"]["executors"][spec["components"][component_name]["executorLabel"]]["container"]
    payload = container["args"][container["args"].index("--payload") + 1]

    def value(match: re.Match) -> str:
        found = parameters[match["name"]]
        return found if isinstance(found, str) else json.dumps(_protobuf_json(found))

    job = json.loads(_INPUT_PLACEHOLDER.sub(value, payload))
    scheduling = job.get("job_spec", {}).get("scheduling", {})
    if scheduling.get("strategy") != "FLEX_START":
        scheduling.pop("max_wait_duration", None)
    CustomJob(job)  # ValueError/KeyError on a field CustomJob does not have
    return job


def _protobuf_json(value: Any) -> Any:
    """A parameter value as Vertex writes it into a placeholder: a google.protobuf.Value in protobuf's JSON,
    where a whole double has no fraction (Go's protojson writes 100.0 as 100). It matters: the launcher's
    dict goes to proto-plus, which refuses 100.0 for an int32 field such as boot_disk_size_gb."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_protobuf_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _protobuf_json(item) for key, item in value.items()}
    return value


def step_programs(spec: dict) -> dict[str, Program]:
    """Every executor component of a template -> its program."""
    return {name: step_program(spec, name) for name, component in spec["components"].items()
            if "executorLabel" in component}


@dataclasses.dataclass
class Step:
    task: str  # qualified by its sub-DAG: "condition-1/register-model"
    program: Program
    mount: Path
    parameters: dict[str, Any]  # as the step received them
    inputs: dict[str, dict]  # input artifact -> {"uri", "path", "metadata"}
    outputs: dict[str, dict]  # output artifact -> {"uri", "path", "metadata"}
    output_parameters: dict[str, Any]
    seconds: float
    custom_job: dict[str, Any] | None = None  # the CustomJob GCPC's launcher would create (the train step)


@dataclasses.dataclass
class RehearsedRun:
    job_name: str
    service_account: str  # what `{{$.pipeline_service_account}}` resolved to
    order: list[str] = dataclasses.field(default_factory=list)  # every task, as reached
    steps: dict[str, Step] = dataclasses.field(default_factory=dict)  # bare task name -> step
    skipped: list[str] = dataclasses.field(default_factory=list)
    failure: str = ""  # "TASK failed: traceback" of the step that stopped the run


def _typed(value: Any, parameter_type: str, where: str) -> Any:
    """A value as Vertex hands it to the step for its declared type (JSON numbers are doubles)."""
    if parameter_type == "NUMBER_INTEGER":
        if float(value) != int(value):
            raise TypeError(f"{where}: {value!r} is not a whole number")
        return int(value)
    if parameter_type == "NUMBER_DOUBLE":
        return float(value)
    if parameter_type == "BOOLEAN" and not isinstance(value, bool):
        raise TypeError(f"{where}: {value!r} is not a boolean")
    if parameter_type == "STRING" and not isinstance(value, str):
        raise TypeError(f"{where}: {value!r} is not a string")
    return value


def _condition_holds(condition: str, parameters: dict[str, Any]) -> bool:
    match = _CONDITION.match(condition.strip())
    if not match:
        raise NotImplementedError(f"condition {condition!r}: the rehearsal reads only "
                                  "inputs.parameter_values['X'] ==/!= a JSON value; extend _condition_holds")
    expected = json.loads(match["value"].replace("'", '"'))
    equal = parameters[match["name"]] == expected
    return equal if match["op"] == "==" else not equal


class VertexRehearsal:
    """Runs a compiled template the way Vertex AI Pipelines would, against the GCS emulator."""

    def __init__(self, template: Path, pipeline_root: str, scratch: Path, gcs: GcsEmulator,
                 project: str, location: str, container_ops: dict[str, ContainerOp] | None = None) -> None:
        self.spec = json.loads(Path(template).read_text())
        self.container_ops = container_ops or {}
        self.pipeline_root = pipeline_root.rstrip("/")
        self.scratch = scratch
        self.gcs = gcs
        self.project, self.location = project, location

    def run(self, job_name: str, parameters: dict[str, Any], service_account: str = "") -> RehearsedRun:
        """One pipeline run (as the PipelineJob's `serviceAccount`, or Vertex's default when empty); a failing
        step stops it and is recorded in `failure`, as Vertex would show it."""
        run = RehearsedRun(job_name, service_account or DEFAULT_RUN_SERVICE_ACCOUNT)
        definitions = self.spec["root"]["inputDefinitions"]["parameters"]
        unknown = set(parameters) - set(definitions)
        if unknown:
            raise ValueError(f"unknown pipeline parameters {sorted(unknown)}; the template has {sorted(definitions)}")
        values = {}
        for name, definition in definitions.items():
            if name not in parameters and "defaultValue" not in definition:
                raise ValueError(f"pipeline parameter {name!r} is required")
            values[name] = _typed(parameters.get(name, definition.get("defaultValue")), definition["parameterType"],
                                  name)
        try:
            self._run_dag(self.spec["root"]["dag"], {"parameters": values, "artifacts": {}}, run, "")
        except _StepFailed as failed:
            run.failure = str(failed)
        return run

    # --- the DAG ---------------------------------------------------------------------------------

    def _run_dag(self, dag: dict, scope: dict, run: RehearsedRun, prefix: str) -> None:
        tasks = dag["tasks"]
        graph = {}
        for name in sorted(tasks):
            task = tasks[name]
            producers = {source[kind]["producerTask"] for sources in task.get("inputs", {}).values()
                         for source in sources.values() for kind in ("taskOutputArtifact", "taskOutputParameter")
                         if kind in source}
            graph[name] = set(task.get("dependentTasks", [])) | producers
        done: dict[str, dict] = {}
        for name in graphlib.TopologicalSorter(graph).static_order():
            task = tasks[name]
            run.order.append(prefix + name)
            inputs = self._resolve(task, scope, done, run)
            condition = task.get("triggerPolicy", {}).get("condition")
            component = self.spec["components"][task["componentRef"]["name"]]
            if condition and not _condition_holds(condition, inputs["parameters"]):
                run.skipped.append(prefix + name)
                done[name] = {"parameters": {}, "artifacts": {}}
            elif "dag" in component:
                self._run_dag(component["dag"], inputs, run, f"{prefix}{name}/")
                done[name] = {"parameters": {}, "artifacts": {}}  # no sub-DAG here has outputs yet
            else:
                done[name] = self._run_step(prefix + name, task, component, inputs, run)

    def _substitute(self, value: Any, run: RehearsedRun) -> Any:
        if not isinstance(value, str):
            return value
        # GCPC's placeholders (google_cloud_pipeline_components/_placeholders.py): a run here sets no network,
        # persistent resource or CMEK key, which Vertex then resolves to empty.
        for placeholder, actual in {"{{$.pipeline_job_name}}": run.job_name,
                                    "{{$.pipeline_google_cloud_project_id}}": self.project,
                                    "{{$.pipeline_google_cloud_location}}": self.location,
                                    "{{$.pipeline_service_account}}": run.service_account,
                                    "{{$.pipeline_network}}": "", "{{$.pipeline_persistent_resource_id}}": "",
                                    "{{$.pipeline_encryption_key_name}}": ""}.items():
            value = value.replace(placeholder, actual)
        return value

    def _resolve(self, task: dict, scope: dict, done: dict[str, dict], run: RehearsedRun) -> dict:
        resolved: dict[str, dict] = {"parameters": {}, "artifacts": {}}
        for name, source in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                value = scope["parameters"][source["componentInputParameter"]]
            elif "taskOutputParameter" in source:
                ref = source["taskOutputParameter"]
                value = _output(done, ref["producerTask"], "parameters", ref["outputParameterKey"])
            elif "runtimeValue" in source:
                value = self._substitute(source["runtimeValue"]["constant"], run)
            else:
                raise NotImplementedError(f"input parameter {name}: source {source} is not rehearsed yet")
            resolved["parameters"][name] = value
        for name, source in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in source:
                resolved["artifacts"][name] = scope["artifacts"][source["componentInputArtifact"]]
            elif "taskOutputArtifact" in source:
                ref = source["taskOutputArtifact"]
                resolved["artifacts"][name] = _output(done, ref["producerTask"], "artifacts", ref["outputArtifactKey"])
            else:
                raise NotImplementedError(f"input artifact {name}: source {source} is not rehearsed yet")
        return resolved

    # --- one step ----------------------------------------------------------------------------------

    def _run_step(self, task_name: str, task: dict, component: dict, inputs: dict, run: RehearsedRun) -> dict:
        from kfp.dsl.executor import Executor

        launcher = container_launcher(self.spec, task["componentRef"]["name"])
        if launcher in self.container_ops:
            return self._run_container_op(task_name, component, inputs, run, launcher)
        program = step_program(self.spec, task["componentRef"]["name"])
        bare = task_name.rsplit("/", 1)[-1]
        step_dir = self.scratch / run.job_name / bare
        shutil.rmtree(step_dir, ignore_errors=True)
        mount = step_dir / "gcs"
        mount.mkdir(parents=True)

        parameters = {}
        for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if name in inputs["parameters"]:
                value = inputs["parameters"][name]
            elif "defaultValue" in definition:
                value = self._substitute(definition["defaultValue"], run)
            elif definition.get("isOptional"):
                continue
            else:
                raise ValueError(f"{task_name}: input parameter {name!r} has no value")
            parameters[name] = _typed(value, definition["parameterType"], f"{task_name}.{name}")
        custom_job = None
        if program.form == "Vertex Training CustomJob":
            custom_job = custom_job_request(self.spec, task["componentRef"]["name"], {
                name: parameters.get(name, _TYPE_DEFAULTS[definition["parameterType"]])
                for name, definition in component["inputDefinitions"]["parameters"].items()})
        for artifact in inputs["artifacts"].values():
            if artifact["uri"].startswith("gs://"):  # a VertexModel's URI is an API address: nothing mounted
                self.gcs.download_tree(artifact["uri"], mount)
        outputs = {name: {"name": name, "uri": f"{self.pipeline_root}/{run.job_name}/{bare}/{name}",
                          "type": {"schemaTitle": definition["artifactType"]["schemaTitle"]}, "metadata": {}}
                   for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()}
        executor_output = step_dir / "executor_output.json"
        executor_input = {
            "inputs": {"parameterValues": parameters, "artifacts": {
                name: {"artifacts": [artifact]} for name, artifact in inputs["artifacts"].items()}},
            "outputs": {"artifacts": {name: {"artifacts": [artifact]} for name, artifact in outputs.items()},
                        "parameters": {name: {"outputFile": str(step_dir / "outputs" / name)}
                                       for name in component.get("outputDefinitions", {}).get("parameters", {})},
                        "outputFile": str(executor_output)},
        }
        (step_dir / "executor_input.json").write_text(json.dumps(executor_input, indent=1))

        started = time.perf_counter()
        with self._mounted(mount):
            try:
                executor = Executor(executor_input, _load(program, step_dir))
                input_paths = {name: artifact.path for name, artifact in executor.input_artifacts.items()}
                output_paths = {name: artifact.path for name, artifact in executor.output_artifacts.items()}
                executor.execute()
            except Exception:
                raise _StepFailed(f"{task_name} failed:\n{traceback.format_exc()}") from None
        seconds = time.perf_counter() - started

        # The mount writes through to the bucket, as Cloud Storage FUSE does: outputs, and files a step adds
        # to an input artifact's folder (register adds the smoke-test record beside the model).
        for artifact in [*outputs.values(), *inputs["artifacts"].values()]:
            written = mount / artifact["uri"].removeprefix("gs://")
            if written.exists():
                self.gcs.upload_tree(written, artifact["uri"])
        result = json.loads(executor_output.read_text())
        produced = {name: {**outputs[name], "metadata": entry["artifacts"][0].get("metadata", {})}
                    for name, entry in result.get("artifacts", {}).items()}
        run.steps[bare] = Step(
            task=task_name, program=program, mount=mount, parameters=parameters,
            inputs={name: {"uri": artifact["uri"], "path": input_paths[name], "metadata": artifact["metadata"]}
                    for name, artifact in inputs["artifacts"].items()},
            outputs={name: {"uri": artifact["uri"], "path": output_paths[name], "metadata": artifact["metadata"]}
                     for name, artifact in produced.items()},
            output_parameters=result.get("parameterValues", {}), seconds=seconds, custom_job=custom_job)
        return {"parameters": result.get("parameterValues", {}), "artifacts": produced}

    def _run_container_op(self, task_name: str, component: dict, inputs: dict, run: RehearsedRun,
                          launcher: str) -> dict:
        bare = task_name.rsplit("/", 1)[-1]
        parameters = {name: self._substitute(inputs["parameters"].get(name, definition.get("defaultValue")), run)
                      for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items()
                      if name in inputs["parameters"] or "defaultValue" in definition}
        started = time.perf_counter()
        try:
            result = self.container_ops[launcher](parameters, inputs["artifacts"],
                                                  f"{self.pipeline_root}/{run.job_name}/{bare}")
        except Exception:
            raise _StepFailed(f"{task_name} failed:\n{traceback.format_exc()}") from None
        produced = {name: {"name": name, **artifact} for name, artifact in result.get("artifacts", {}).items()}
        run.steps[bare] = Step(
            task=task_name, program=Program(launcher, "", "", "Vertex service stand-in"), mount=self.scratch,
            parameters=parameters,
            inputs={name: {"uri": artifact["uri"], "path": "", "metadata": artifact["metadata"]}
                    for name, artifact in inputs["artifacts"].items()},
            outputs={name: {"uri": artifact["uri"], "path": "", "metadata": artifact["metadata"]}
                     for name, artifact in produced.items()},
            output_parameters=result.get("parameters", {}), seconds=time.perf_counter() - started)
        return {"parameters": result.get("parameters", {}), "artifacts": produced}

    @staticmethod
    @contextlib.contextmanager
    def _mounted(mount: Path) -> Iterator[None]:
        """`mount` stands for `/gcs/` during one step: for KFP's `Artifact.path` and for storage.uri."""
        from kfp.dsl.types import artifact_types

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(artifact_types, "_GCS_LOCAL_MOUNT_PREFIX", f"{mount}/")
            patch.setenv(GCS_MOUNT_ENV, str(mount))
            yield


class _StepFailed(Exception):
    pass


def _output(done: dict[str, dict], producer: str, kind: str, key: str) -> Any:
    if key not in done[producer][kind]:
        raise NotImplementedError(f"{producer} produced no {kind} {key!r} here (a skipped task, or a sub-DAG or "
                                  "container op whose outputs the rehearsal does not produce yet)")
    return done[producer][kind][key]


def _load(program: Program, step_dir: Path):
    """The step's function from the template's source, as executor_main loads ephemeral_component.py."""
    path = step_dir / "ephemeral_component.py"
    path.write_text(program.source)
    namespace: dict[str, Any] = {"__name__": "ephemeral_component"}
    # dont_inherit: this module's `from __future__ import annotations` must not turn the step's annotations,
    # which kfp's Executor reads, into strings.
    exec(compile(program.source, str(path), "exec", dont_inherit=True), namespace)
    return namespace[program.function_name]
