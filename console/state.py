"""The local state, read for the console's pages: runs, models, the endpoint, drift reports, batch runs.

Everything here only reads. State can be half-written (a run still going, or killed), missing (a report
a step never wrote) or from an older version of the code (a run without its record, a registry entry
without today's lineage fields): each reader keeps what it can and says what it could not read, in a
`notes` list the page shows in place. Nothing here raises for bad state.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from console.dag import step_order
from contract.paths import PROJECT_ROOT
from pipelines.local_run import LOCAL_PIPELINES, step_error
from pipelines.run_record import (
    FAILED,
    LOGS_DIR,
    PIPELINE_SPEC_FILE,
    RUN_LOG_FILE,
    RUNNING,
    SUCCEEDED,
    RunRecordError,
    read_run_record,
    step_log_path,
)
from serving.endpoint import _id_order  # the endpoint's own order of deployed model ids: 1, 2, ... 10

# Step and run states as the pages show them (beyond the record's running, succeeded, failed).
PENDING, SKIPPED, NOT_RUN, INTERRUPTED, UNKNOWN = "pending", "skipped", "not run", "interrupted", "unknown"
OLDER_CODE = "not recorded (by an older version of the code)"
# kfp.local names a run's folder PIPELINE-NAME-%Y-%m-%d-%H-%M-%S-%f (local time).
_RUN_FOLDER = re.compile(r"(?P<pipeline>[a-z0-9-]+?)-(?P<time>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d{6})")
_JOB_ID = re.compile(r"[a-z][-a-z0-9]{0,127}")
# Set by local mode itself, not by the person: left out of the run list's "parameters" column.
_LOCAL_MODE_PARAMETERS = ("registry_uri", "data_version")


def _pipeline_key(pipeline_name: str) -> str:
    """`training-pipeline` -> `training` (the `--pipeline` name); other names as they are."""
    return next((key for key, compiled in LOCAL_PIPELINES.items() if compiled.replace("_", "-") == pipeline_name),
                pipeline_name)


def read_json(path: Path, what: str, notes: list[str]) -> Any:
    """A JSON file, or None with a note saying why it could not be read (a missing file is no note)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        notes.append(f"{what} ({path}) could not be read: {type(error).__name__}: {error}")
        return None


def guarded(notes: list[str], what: str, read: Callable[[], Any], default: Any = None) -> Any:
    """`read()`, or `default` with a note: one unreadable part never takes the page down with it."""
    try:
        return read()
    except Exception as error:  # any surprise in the state becomes a note, never a 500
        notes.append(f"{what} could not be read: {type(error).__name__}: {error}")
        return default


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def _process_alive(pid: Any) -> bool:
    """Whether the Python process that wrote a run record is still there (a recycled pid running
    something else does not count)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in command


# --- pipeline specs and their DAGs ------------------------------------------------------------------------

def template_defaults(spec: dict) -> dict[str, Any]:
    """Each root parameter's default, as the spec declares it."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: definition["defaultValue"] for name, definition in declared.items()
            if isinstance(definition, dict) and "defaultValue" in definition}


def executor_tasks(spec: dict) -> dict[str, dict[str, Any]]:
    """Every task that runs a container (nested pipelines and conditions flattened), by its task name:
    its display name and its component's declared output artifacts (name -> schemaTitle)."""
    components = spec.get("components", {})
    found: dict[str, dict[str, Any]] = {}

    def walk(dag: dict) -> None:
        for name, task in dag.get("tasks", {}).items():
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            if "dag" in component:
                walk(component["dag"])
                continue
            artifacts = component.get("outputDefinitions", {}).get("artifacts", {})
            found[name] = {"display_name": task.get("taskInfo", {}).get("name", name),
                           "artifact_types": {artifact: definition.get("artifactType", {}).get("schemaTitle", "")
                                              for artifact, definition in artifacts.items()}}

    walk(spec.get("root", {}).get("dag", {}))
    return found


# --- runs --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Artifact:
    name: str
    uri: str
    type: str  # schemaTitle: system.HTML, system.Metrics, system.Dataset, system.Model...
    metadata: dict
    link: str | None  # the console's /files/ path, when the artifact is under the local state

    @property
    def is_report(self) -> bool:
        return self.type == "system.HTML" or self.uri.endswith(".html")

    @property
    def numbers(self) -> dict[str, float]:
        """A Metrics artifact's numbers (what the Vertex UI shows of it)."""
        return {key: value for key, value in self.metadata.items()
                if isinstance(value, int | float) and not isinstance(value, bool)}


@dataclasses.dataclass
class Step:
    task: str
    display_name: str
    state: str
    started: datetime.datetime | None = None
    seconds: float | None = None
    error: str | None = None
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: list[Artifact] = dataclasses.field(default_factory=list)
    has_log: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Run:
    name: str
    pipeline: str
    state: str
    started: datetime.datetime | None
    ended: datetime.datetime | None
    seconds: float | None
    parameters: dict[str, Any]
    differing: dict[str, Any]  # parameters whose value is not the template's default
    parameter_sources: dict[str, str]
    started_by: str
    spec: dict | None
    spec_source: str
    steps: dict[str, Step]
    error: str | None
    notes: list[str]
    job: dict | None = None  # the local pipelines API job that started it

    @property
    def in_progress(self) -> bool:
        return self.state == RUNNING

    @property
    def shown_parameters(self) -> dict[str, Any]:
        """The differing parameters a person chose (local mode's own plumbing left out)."""
        return {name: value for name, value in self.differing.items() if name not in _LOCAL_MODE_PARAMETERS}

    @property
    def reports(self) -> list[tuple[Step, Artifact]]:
        return [(step, artifact) for step in self.steps.values() for artifact in step.artifacts if artifact.is_report]


class LocalState:
    """One local state folder (`MLOPS_LOCAL_DIR`, default `local/`), as the console reads it."""

    def __init__(self, local_dir: Path, compiled_dir: Path | None = None) -> None:
        from pipelines.compile import COMPILED_DIR

        self.local_dir = Path(local_dir).resolve()
        self.pipeline_root = self.local_dir / "pipeline_root"
        self.registry_dir = self.local_dir / "registry"
        self.compiled_dir = Path(compiled_dir or COMPILED_DIR)

    # -- links --------------------------------------------------------------------------------------------

    def file_link(self, location: str | Path | None) -> str | None:
        """The console's /files/ path of a file or folder under the local state; None elsewhere."""
        if not location or "://" in str(location):
            return None
        path = Path(location)
        if not path.is_absolute():  # as a run recorded it: relative to where runs start, the project's root
            path = PROJECT_ROOT / path
        try:
            relative = path.resolve().relative_to(self.local_dir)
        except (ValueError, OSError):
            return None
        return f"/files/{relative.as_posix()}" if path.exists() else None

    def resolve_file(self, relative: str) -> Path | None:
        """A path under the local state, or None for anything outside it (`..`, a symlink out)."""
        path = (self.local_dir / relative).resolve()
        return path if path == self.local_dir or path.is_relative_to(self.local_dir) else None

    # -- runs ---------------------------------------------------------------------------------------------

    def run_names(self) -> list[str]:
        if not self.pipeline_root.is_dir():
            return []
        return [path.name for path in self.pipeline_root.iterdir() if path.is_dir() and not path.name.startswith(".")]

    def runs(self) -> list[Run]:
        """Every run, newest first, with the API jobs that started them; API jobs that have no run yet
        (pending, or refused before running) are in `jobs_without_runs`."""
        jobs = self.api_jobs()
        by_job_name = {job.get("name"): job for job in jobs}
        runs = [self.run(name, by_job_name) for name in self.run_names()]
        runs = [run for run in runs if run is not None]
        epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        return sorted(runs, key=lambda run: (run.started or epoch, run.name), reverse=True)

    def jobs_without_runs(self, runs: Iterable[Run]) -> list[dict]:
        linked = {run.job.get("name") for run in runs if run.job}
        return [job for job in self.api_jobs() if job.get("name") not in linked]

    def api_jobs(self) -> list[dict]:
        """The local pipelines API's jobs (pipelines/local_jobs_api.py), as stored; unreadable ones left out."""
        root = self.local_dir / "pipeline_jobs"
        if not root.is_dir():
            return []
        jobs = []
        for path in root.iterdir():
            if _JOB_ID.fullmatch(path.name):
                job = read_json(path / "job.json", "job", [])
                if isinstance(job, dict) and isinstance(job.get("name"), str):
                    jobs.append(job)
        return jobs

    def run(self, name: str, jobs: dict[str, dict] | None = None) -> Run | None:
        """One run by its folder name; None if there is no such folder."""
        run_dir = self.pipeline_root / name
        if not _JOB_ID.fullmatch(name) or not run_dir.is_dir():
            return None
        notes: list[str] = []
        try:
            record = read_run_record(run_dir)
        except RunRecordError as error:
            notes.append(f"The run's record is unreadable ({error}); what is shown comes from the steps' outputs.")
            record = None
        if record is None and not notes:
            notes.append("This run has no run record (it was run by an older version of the code): its state, "
                         "parameters and step times are not known; steps are shown from their outputs.")
        folder = _RUN_FOLDER.fullmatch(name)
        pipeline_name = folder.group("pipeline") if folder else name
        spec, spec_source = self._spec(run_dir, pipeline_name, notes)
        record = record or {}
        started = _parse_time(record.get("started")) or (
            datetime.datetime.strptime(folder.group("time"), "%Y-%m-%d-%H-%M-%S-%f").astimezone() if folder else None)
        ended = _parse_time(record.get("ended"))
        state = record.get("state") if record.get("state") in (RUNNING, SUCCEEDED, FAILED) else UNKNOWN
        if state == RUNNING and not _process_alive(record.get("pid")):
            state = INTERRUPTED
            notes.append(f"The process that ran this run (pid {record.get('pid')}) is gone and the run never "
                         "finished: it was stopped or crashed. Steps it had not finished are shown as interrupted.")
        parameters = record.get("parameters") if isinstance(record.get("parameters"), dict) else {}
        defaults = template_defaults(spec) if spec else {}
        # A spec keeps integer defaults as floats (8 -> 8.0), which compare equal to the integers given.
        differing = {key: value for key, value in parameters.items() if key not in defaults or value != defaults[key]}
        steps = self._steps(run_dir, spec or {}, record.get("steps") if isinstance(record.get("steps"), dict) else {},
                            state, notes)
        seconds = (ended - started).total_seconds() if started and ended else None
        if state == RUNNING and started:
            seconds = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        started_by = str(record.get("started_by") or ("unknown" if record else OLDER_CODE))
        job = None
        if started_by.startswith("local pipelines API: "):
            job = (jobs if jobs is not None else {j.get("name"): j for j in self.api_jobs()}).get(
                started_by.removeprefix("local pipelines API: "))
        return Run(name, _pipeline_key(pipeline_name), state, started, ended, seconds, parameters, differing,
                   record.get("parameter_sources") or {}, started_by, spec, spec_source, steps,
                   record.get("error"), notes, job)

    def _spec(self, run_dir: Path, pipeline_name: str, notes: list[str]) -> tuple[dict | None, str]:
        spec = read_json(run_dir / PIPELINE_SPEC_FILE, "the run's pipeline spec", notes)
        if isinstance(spec, dict):
            return spec, "the pipeline spec this run ran"
        key = _pipeline_key(pipeline_name)
        if key in LOCAL_PIPELINES:
            compiled = self.compiled_dir / f"{LOCAL_PIPELINES[key]}.json"
            spec = read_json(compiled, "the compiled template", notes)
            if isinstance(spec, dict):
                return spec, (f"today's compiled template ({compiled.name}): this run did not keep the spec it "
                              "ran, which may have differed")
        notes.append(f"No pipeline spec for {pipeline_name!r}: the DAG cannot be drawn; steps are listed as found.")
        return None, "none"

    def _steps(self, run_dir: Path, spec: dict, recorded: dict, run_state: str, notes: list[str]) -> dict[str, Step]:
        tasks = executor_tasks(spec)
        ordered = [task for task in step_order(spec) if task in tasks] if spec else []
        found = [path.name for path in run_dir.iterdir() if path.is_dir() and not path.name.startswith("_")]
        names = ordered + sorted(set(found) - set(ordered)) + sorted(set(recorded) - set(ordered) - set(found))
        steps = {}
        for task in names:
            step = Step(task, tasks.get(task, {}).get("display_name", task), UNKNOWN)
            entry = recorded.get(task) if isinstance(recorded.get(task), dict) else {}
            output = read_json(run_dir / task / "executor_output.json", f"step {task}'s outputs", step.notes)
            output = output if isinstance(output, dict) else {}
            step.outputs = output.get("parameterValues") or {}
            step.artifacts = self._artifacts(output, tasks.get(task, {}).get("artifact_types", {}))
            step.has_log = step_log_path(run_dir, task).is_file()
            step.started = _parse_time(entry.get("started"))
            step.seconds = entry.get("seconds") if isinstance(entry.get("seconds"), int | float) else None
            step.error = entry.get("error")
            if entry.get("state") in (RUNNING, SUCCEEDED, FAILED):
                step.state = entry["state"]
                if step.state == RUNNING and run_state in (INTERRUPTED, FAILED, SUCCEEDED):
                    step.state = INTERRUPTED
            elif output:
                step.state = SUCCEEDED  # no record, but kfp.local wrote its outputs: it finished
            elif task in found:
                step.state = FAILED if run_state in (FAILED, UNKNOWN, INTERRUPTED) else RUNNING
                if not step.error and step.has_log:
                    step.error = step_error(step_log_path(run_dir, task).read_text(errors="replace").splitlines())
            else:
                step.state = {RUNNING: PENDING, SUCCEEDED: SKIPPED}.get(run_state, NOT_RUN)
            steps[task] = step
        return steps

    def _artifacts(self, output: dict, types: dict[str, str]) -> list[Artifact]:
        artifacts = []
        for name, listed in (output.get("artifacts") or {}).items():
            for artifact in (listed or {}).get("artifacts", []) if isinstance(listed, dict) else []:
                uri = str(artifact.get("uri", ""))
                artifacts.append(Artifact(name, uri, types.get(name, ""), artifact.get("metadata") or {},
                                          self.file_link(uri)))
        return artifacts

    def run_log(self, name: str, task: str | None) -> Path | None:
        run_dir = self.pipeline_root / name
        if not _JOB_ID.fullmatch(name) or (task is not None and not _JOB_ID.fullmatch(task)):
            return None
        path = step_log_path(run_dir, task) if task else run_dir / LOGS_DIR / RUN_LOG_FILE
        return path if path.is_file() else None

    # -- models -------------------------------------------------------------------------------------------

    def models(self, notes: list[str]) -> list[Model]:
        if not self.registry_dir.is_dir():
            return []
        return [self.model(path.name, notes) for path in sorted(self.registry_dir.iterdir())
                if path.is_dir() and (path / "versions").is_dir()]

    def model(self, name: str, notes: list[str] | None = None) -> Model:
        model_dir = self.registry_dir / name
        model = Model(name, [], {}, [])
        aliases = read_json(model_dir / "aliases.json", "the alias table", model.notes)
        if aliases is not None and not isinstance(aliases, dict):
            model.notes.append(f"{model_dir / 'aliases.json'} is not a table of alias -> version")
            aliases = None
        model.aliases = {str(alias): str(version) for alias, version in (aliases or {}).items()}
        versions_dir = model_dir / "versions"
        numbers = sorted((int(path.name) for path in versions_dir.iterdir() if path.name.isdigit()),
                         reverse=True) if versions_dir.is_dir() else []
        for number in numbers:
            model.versions.append(self._version(name, str(number), versions_dir / str(number), model.aliases))
        if notes is not None:
            notes.extend(f"{name}: {note}" for note in model.notes)
        return model

    def _version(self, model_name: str, version: str, version_dir: Path, aliases: dict[str, str]) -> ModelVersionView:
        view = ModelVersionView(version, tuple(sorted(alias for alias, v in aliases.items() if v == version)))
        record = read_json(version_dir / "version.json", f"version {version}'s record", view.notes)
        if record is None:
            if not view.notes:
                view.notes.append(f"version {version} has no version.json: it was never completely registered "
                                  "(a registration stopped half-way) and is not a version")
            view.complete = False
            return view
        metadata = record.get("metadata") if isinstance(record, dict) else None
        if not isinstance(metadata, dict):
            view.notes.append(f"version {version}'s record has no metadata table")
            metadata = {}
        view.created = (datetime.datetime.fromtimestamp(record["created"]).astimezone()
                        if isinstance(record.get("created"), int | float) else None)
        view.model_link = self.file_link(version_dir / "model")
        view.data_uri = metadata.get("data_uri")
        view.schema = metadata.get("schema")
        view.schema_link = self.file_link(metadata.get("schema"))
        view.pipeline_run = metadata.get("pipeline_run")
        view.run_exists = bool(view.pipeline_run) and (self.pipeline_root / str(view.pipeline_run)).is_dir()
        view.metrics = {key: value for key, value in (metadata.get("metrics") or {}).items()
                        if isinstance(value, int | float)} if isinstance(metadata.get("metrics"), dict) else {}
        view.data_version = metadata.get("data_version")
        if not view.data_version and metadata.get("examples"):
            # Older lineage: the version of the data is on the ingest step's output of the run that trained it.
            examples = Path(str(metadata["examples"]))
            ingested = read_json(examples.parent / "executor_output.json", "the training run's ingest outputs", [])
            recorded = (((ingested or {}).get("artifacts") or {}).get("examples") or {}).get("artifacts") or [{}]
            if recorded[0].get("metadata", {}).get("data_version"):
                view.data_version = recorded[0]["metadata"]["data_version"]
                view.data_version_source = "from the training run's ingest step"
        view.extra = {key: value for key, value in metadata.items() if key not in _SHOWN_LINEAGE}
        return view

    # -- the endpoint -------------------------------------------------------------------------------------

    def endpoint_dirs(self) -> list[tuple[str, Path]]:
        """(display name, state folder): `endpoint/` (the default, "") and `endpoints/NAME/`."""
        found = [("", self.local_dir / "endpoint")] if (self.local_dir / "endpoint").is_dir() else []
        named = self.local_dir / "endpoints"
        if named.is_dir():
            found += [(path.name, path) for path in sorted(named.iterdir()) if path.is_dir()]
        return found

    # -- monitoring and batch -----------------------------------------------------------------------------

    def drift_results(self, notes: list[str]) -> list[DriftResult]:
        """Every drift result: `python -m monitoring run`'s (local/monitoring/*/) and the pipelines' monitor
        steps' (RUN/monitor-drift/result/), newest first."""
        places = list((self.local_dir / "monitoring").glob("*/result.json"))
        places += list(self.pipeline_root.glob("*/*/result/result.json")) if self.pipeline_root.is_dir() else []
        results = []
        for path in places:
            result_notes: list[str] = []
            data = read_json(path, "a drift result", result_notes)
            report = path.parent / "report.html"
            if not report.is_file():
                step_report = path.parent.parent / "report.html"  # a step copies its report to its HTML artifact
                report = step_report if step_report.is_file() else report
            run = path.parent.parent.parent.name if path.is_relative_to(self.pipeline_root) else None
            results.append(DriftResult(path, data if isinstance(data, dict) else None,
                                       self.file_link(report) if report.is_file() else None, run, result_notes))
            if not report.is_file():
                result_notes.append(f"no report beside {path} (report.html is missing)")
        return sorted(results, key=lambda result: result.sort_key, reverse=True)


_SHOWN_LINEAGE = {"data_uri", "data_version", "schema", "pipeline_run", "metrics", "input_contract", "labels",
                  "evaluation", "examples"}


@dataclasses.dataclass
class ModelVersionView:
    version: str
    aliases: tuple[str, ...]
    complete: bool = True
    created: datetime.datetime | None = None
    model_link: str | None = None
    data_uri: Any = None
    data_version: Any = None
    data_version_source: str = ""
    schema: Any = None
    schema_link: str | None = None
    pipeline_run: Any = None
    run_exists: bool = False
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Model:
    name: str
    versions: list[ModelVersionView]
    aliases: dict[str, str]
    notes: list[str]

    @property
    def metric_names(self) -> list[str]:
        preferred = ["auc", "accuracy", "precision", "recall", "calibration", "example_count"]
        found = {name for version in self.versions for name in version.metrics}
        return [name for name in preferred if name in found] + sorted(found - set(preferred))


@dataclasses.dataclass
class DriftResult:
    path: Path
    data: dict | None
    report_link: str | None
    run: str | None  # the pipeline run whose step wrote it
    notes: list[str]

    @property
    def sort_key(self) -> float:
        try:
            return os.path.getmtime(self.path)
        except OSError:
            return 0.0

    @property
    def features(self) -> list[dict]:
        features = (self.data or {}).get("features")
        return [feature for feature in features if isinstance(feature, dict)] if isinstance(features, list) else []

    @property
    def drifted(self) -> list[str]:
        return [str(feature.get("name")) for feature in self.features if feature.get("drifted")]


# --- the endpoint ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DeployedView:
    id: str
    display_name: str
    model_uri: str
    model_name: str | None
    version: str | None
    created: str
    state: str
    percent: int
    role: str = ""  # champion, canary


@dataclasses.dataclass
class HistoryEvent:
    run: Run
    step: Step
    what: str  # "deploy: canary, version 2" or "decision: promote"


@dataclasses.dataclass
class EndpointView:
    name: str
    state_dir: Path
    serving_url: str | None
    deployed: list[DeployedView]
    split: dict[str, int]
    live_stats: dict[str, dict]
    metrics: list[dict]
    transition: dict | None
    history: list[HistoryEvent]
    notes: list[str]

    @property
    def canary(self) -> DeployedView | None:
        return next((model for model in self.deployed if model.role == "canary"), None)

    @property
    def champion(self) -> DeployedView | None:
        return next((model for model in self.deployed if model.role == "champion"), None)

    def rollout(self) -> tuple[list[int], int | None] | None:
        """The canary's declared steps (the newest deploy or decision run's `step_weights`, then 100) and which
        of them it is at now (by its share of traffic); None when no run declared steps (a fixed canary)."""
        for event in self.history:
            weights = event.run.parameters.get("step_weights")
            if isinstance(weights, list) and weights and all(isinstance(weight, int | float) for weight in weights):
                steps = [int(weight) for weight in weights] + ([] if int(weights[-1]) == 100 else [100])
                current = self.canary.percent if self.canary else None
                return steps, (steps.index(current) if current in steps else None)
        return None

    def totals(self) -> dict[str, dict[str, int]]:
        """Requests, errors and client errors per deployed model over the whole metrics log (models since
        undeployed included), in deployed model order."""
        totals: dict[str, dict[str, int]] = {}
        for row in sorted(self.metrics, key=lambda row: _id_order(str(row.get("deployed_model_id")))):
            counts = totals.setdefault(str(row.get("deployed_model_id")),
                                       {"requests": 0, "errors": 0, "client_errors": 0})
            for key in counts:
                counts[key] += int(row.get(key) or 0)
        return totals

    def model_ids(self) -> list[str]:
        """Every deployed model the page speaks of: deployed now, or seen in the metrics log."""
        seen = {model.id for model in self.deployed} | {str(row.get("deployed_model_id")) for row in self.metrics}
        return sorted(seen, key=_id_order)

    def labels(self) -> dict[str, str]:
        """What to call each deployed model, present or past: `2: v2`, `1: v1 (undeployed)`."""
        versions = {str(event.step.outputs.get("deployed_model_id")): str(event.step.outputs.get("version"))
                    for event in reversed(self.history) if event.step.outputs.get("deployed_model_id")}
        versions |= {model.id: model.version for model in self.deployed if model.version}
        live = {model.id for model in self.deployed}
        known = set(versions) | live | {str(row.get("deployed_model_id")) for row in self.metrics}
        return {deployed_id: (f"{deployed_id}: v{versions[deployed_id]}" if deployed_id in versions else deployed_id)
                + ("" if deployed_id in live else " (undeployed)") for deployed_id in known}


def endpoint_view(state: LocalState, name: str, state_dir: Path, runs: list[Run]) -> EndpointView:
    from serving.client import LocalEndpoint
    from serving.endpoint import EndpointError
    from serving.metrics_log import read_metrics

    notes: list[str] = []
    endpoint = LocalEndpoint(state_dir)
    try:
        stored = endpoint.store.read()
    except EndpointError as error:
        notes.append(str(error))
        stored = None
    url = guarded(notes, "whether the endpoint serves", endpoint.router_url)
    described = guarded(notes, "the serving endpoint's models", endpoint.describe, {}) if url else {}
    live = guarded(notes, "the serving endpoint's counters", endpoint.stats, {}) if url else {}
    states = {model.get("id"): model.get("state", "") for model in described.get("deployedModels", [])}
    split = dict(stored.traffic_split) if stored else {}
    deployed = []
    for model in stored.deployed_models if stored else ():
        model_name, version = _registry_version(state.registry_dir, model.model_uri)
        deployed.append(DeployedView(model.id, model.display_name, model.model_uri, model_name, version,
                                     model.create_time, states.get(model.id, "not serving"),
                                     int(split.get(model.id, 0))))
    champions = {}
    for model in {view.model_name for view in deployed if view.model_name}:
        aliases = read_json(state.registry_dir / model / "aliases.json", f"{model}'s aliases", notes)
        champions[model] = aliases.get("champion") if isinstance(aliases, dict) else None
    for view in deployed:
        if view.model_name and champions.get(view.model_name) == view.version:
            view.role = "champion"
    if any(view.role == "champion" for view in deployed):
        for view in deployed:
            if not view.role and view.percent > 0:
                view.role = "canary"
    from deploy.local import JOURNAL_FILE

    transition = read_json(state_dir / JOURNAL_FILE, "the transition journal", notes)
    metrics = guarded(notes, "the endpoint's metrics log", lambda: list(read_metrics(state_dir)), [])
    return EndpointView(name, state_dir, url, deployed, split, live or {}, metrics,
                        transition if isinstance(transition, dict) else None, _history(runs, name), notes)


def _registry_version(registry_dir: Path, model_uri: str) -> tuple[str | None, str | None]:
    """A deployed model's registry model and version, from its folder (`REGISTRY/MODEL/versions/N/model`)."""
    try:
        parts = Path(model_uri).resolve().relative_to(registry_dir.resolve()).parts
    except ValueError:
        return None, None
    return (parts[0], parts[2]) if len(parts) == 4 and parts[1] == "versions" and parts[3] == "model" else (None, None)


def _history(runs: list[Run], endpoint_name: str) -> list[HistoryEvent]:
    """What changed this endpoint, newest first: each deploy (nested in training, or on its own) and each
    canary decision, from the runs' own step outputs."""
    events = []
    for run in runs:
        if str(run.parameters.get("endpoint_display_name") or "") != endpoint_name:
            continue
        for step in run.steps.values():
            if step.task == "deploy-model" and step.state != SKIPPED and step.state != NOT_RUN:
                what = (f"deploy ({step.outputs.get('transition')}): version {step.outputs.get('version')} as deployed "
                        f"model {step.outputs.get('deployed_model_id')}, split {step.outputs.get('traffic_split')}"
                        if step.outputs else f"deploy: {step.state}" + (f": {step.error}" if step.error else ""))
                events.append(HistoryEvent(run, step, what))
            elif run.pipeline == "canary_decision" and step.state not in (SKIPPED, NOT_RUN):
                decided = step.outputs.get("Output")
                events.append(HistoryEvent(run, step, f"decision: {decided}" if decided else
                                           f"decision: {step.state}" + (f": {step.error}" if step.error else "")))
    return events


# --- batch prediction --------------------------------------------------------------------------------------

@dataclasses.dataclass
class BatchRun:
    run: Run
    model: str
    rows_predicted: Any
    rows_failed: Any
    output: str | None
    output_link: str | None
    manifest: dict | None
    notes: list[str]


def batch_runs(state: LocalState, runs: list[Run]) -> list[BatchRun]:
    from batch_prediction.output import MANIFEST_FILE

    found = []
    for run in runs:
        if run.pipeline != "batch_prediction":
            continue
        notes: list[str] = []
        resolved = run.steps.get("resolve-batch-model")
        predicted = run.steps.get("predict-batch")
        model = (f"version {resolved.outputs.get('model_version')} of {resolved.outputs.get('model_resource_name')}"
                 if resolved and resolved.outputs else "not resolved")
        outputs = predicted.outputs if predicted else {}
        output = outputs.get("output")
        manifest = None
        if output and "://" not in str(output):
            manifest = read_json(Path(str(output)) / MANIFEST_FILE, "the output's manifest", notes)
            if manifest is None and not notes:
                notes.append(f"no {MANIFEST_FILE} in {output}: the output was not published whole")
        if predicted is None or not outputs:
            notes.append("no prediction output: " + (predicted.error if predicted and predicted.error else
                                                     f"the step is {predicted.state if predicted else 'missing'}"))
        found.append(BatchRun(run, model, outputs.get("rows_predicted"), outputs.get("rows_failed"),
                              output, state.file_link(output), manifest if isinstance(manifest, dict) else None, notes))
    return found
