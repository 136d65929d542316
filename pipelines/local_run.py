"""Local mode: the training pipeline on this machine with kfp.local.

The same pipeline definition Vertex runs; each step a subprocess of this
environment. Prints each step with its duration and ends with a summary; when
a step fails, the summary's last lines are that step's own error message.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path

from contract.artifacts import ANOMALIES_JSON_FILE, OUTCOME_FILE
from contract.paths import DEFAULT_DATA_URI, DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from pipelines.settings import SETTINGS

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '?([\w-]+)'?")
_FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
_TRACEBACK = "Traceback (most recent call last):"
# Lines of each step's output kept for its error message: a traceback's end is all it needs.
_KEPT_LINES = 500


class StepTimer(logging.Filter):
    """Reads kfp.local's own task log lines, adds each step's duration to them and
    keeps the durations, the running step and the failed ones for the summary. A
    filter on the root logger, because kfp.local swaps that logger's handlers for
    every task."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self.current: str | None = None
        self.failed: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", str(record.msg))
        if match := _STARTED.search(message):
            self.started[match.group(1)] = time.perf_counter()
            self.current = match.group(1)
        elif (match := _FINISHED.search(message)) and match.group(1) in self.started:
            seconds = time.perf_counter() - self.started[match.group(1)]
            self.durations[match.group(1)] = seconds
            if match.group(2) == "FAILURE":
                self.failed.append(match.group(1))
            record.msg = f"{record.msg} in {seconds:.1f} s"
        return True


class StepOutput:
    """Stands in for sys.stdout during a run: passes everything through and keeps the
    end of each step's output, because kfp.local prints a step's output (its
    traceback included) there and raises an error that only names the step."""

    def __init__(self, stream, timer: StepTimer) -> None:
        self.stream = stream
        self.timer = timer
        self.tails: dict[str, collections.deque[str]] = collections.defaultdict(
            lambda: collections.deque(maxlen=_KEPT_LINES))
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if self.timer.current:
            self.tails[self.timer.current].extend(lines)
        return len(text)

    def __getattr__(self, name: str):  # flush, encoding, isatty, fileno: the real stream's
        return getattr(self.stream, name)

    def error(self, task: str) -> str:
        return step_error(list(self.tails.get(task, [])))


def step_error(lines: list[str]) -> str:
    """The exception a step's output ends with, as `ErrorType: first line of its message`.

    A traceback's frames are indented beyond its first line and its exception
    line is not (kfp.local indents the whole step's output by the same amount)."""
    clean = [_ANSI.sub("", line).rstrip() for line in lines]
    starts = [index for index, line in enumerate(clean) if line.strip() == _TRACEBACK]
    if not starts:
        last = next((line.strip() for line in reversed(clean) if line.strip()), "")
        return f"no Python error in its output; it ends with: {last}" if last else "no output"
    indent = len(clean[starts[-1]]) - len(clean[starts[-1]].lstrip())
    for line in clean[starts[-1] + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            exception, separator, message = line.strip().partition(": ")
            return exception.rsplit(".", 1)[-1] + separator + message
    return "its traceback ends before the exception line"


def _executor_output(run_dir: Path, task: str) -> dict:
    """What a task recorded (kfp.local keeps it in executor_output.json)."""
    path = run_dir / task / "executor_output.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _task_outputs(run_dir: Path, task: str) -> dict:
    """Parameter outputs a task wrote."""
    return _executor_output(run_dir, task).get("parameterValues", {})


def _artifact_uri(run_dir: Path, task: str, artifact: str) -> str | None:
    """The URI a task recorded for an output artifact (a step may rename its file, as evaluate does)."""
    recorded = _executor_output(run_dir, task).get("artifacts", {}).get(artifact, {}).get("artifacts", [])
    return recorded[0].get("uri") if recorded else None


@dataclasses.dataclass
class LocalRun:
    succeeded: bool
    run_dir: Path | None
    step_seconds: dict[str, float]
    wall_seconds: float
    step_errors: dict[str, str]  # each failed step's own error message


# A name for `--pipeline` -> the compiled template whose parameters are the contract a local run is
# checked against (the same definition, so the same parameters), and the builder of its local form.
LOCAL_PIPELINES: dict[str, str] = {"training": "training_pipeline", "deploy": "deploy_pipeline",
                                   "canary_decision": "canary_decision_pipeline", "evaluation": "evaluation_pipeline",
                                   "batch_prediction": "batch_prediction_pipeline"}


class LocalRunError(ValueError):
    """A local run asked for something wrong (a parameter, a pipeline name); the message says what."""


def local_parameters(pipeline: str = "training", texts: Mapping[str, str] | None = None,
                     data_uri: str | None = None, dataset_config: str | None = None) -> tuple[dict, dict]:
    """The parameters of a local run and where each came from.

    Precedence, lowest first: the template's defaults, the data set config's `parameters:`
    section, `--data-uri`/`--dataset-config`, then `--param NAME=VALUE`. Every value is
    checked against the compiled template's declared parameters (names and types).
    Returns (values, sources).
    """
    from contract.dataset import load_dataset_config
    from pipelines.compile import COMPILED_DIR
    from triggers.submission.errors import ParameterError
    from triggers.submission.templates import load_template

    if pipeline not in LOCAL_PIPELINES:
        raise LocalRunError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(sorted(LOCAL_PIPELINES))}")
    template = load_template(str(COMPILED_DIR / f"{LOCAL_PIPELINES[pipeline]}.json"), max_age_seconds=0)
    try:
        given = template.typed(dict(texts or {}))
    except ParameterError as error:
        raise LocalRunError(f"--param: {error}") from None
    flags = {name: value for name, value in (("data_uri", data_uri), ("dataset_config", dataset_config))
             if value is not None}
    for name in set(flags) & set(given):
        if flags[name] != given[name]:
            raise LocalRunError(f"{name} is given twice, as --{name.replace('_', '-')} {flags[name]!r} and "
                                f"--param {name}={given[name]!r}: give it once")
    declared = template.parameters
    for name in set(flags) - set(declared):
        raise LocalRunError(f"--{name.replace('_', '-')}: pipeline {pipeline!r} has no parameter {name}; "
                            f"expected --param NAME=VALUE with NAME one of {', '.join(declared)}")
    config_location = given.get("dataset_config") or flags.get("dataset_config") or DEFAULT_DATASET_CONFIG
    config = load_dataset_config(config_location)
    defaults = {"data_uri": DEFAULT_DATA_URI, "dataset_config": DEFAULT_DATASET_CONFIG}
    values: dict = {name: value for name, value in defaults.items() if name in declared}
    sources = dict.fromkeys(values, "default")
    # The data set config's `parameters:` are the training pipeline's; another pipeline takes those it declares.
    config_parameters = config.parameters if pipeline == "training" else {
        name: value for name, value in config.parameters.items() if name in declared}
    for layer, source in ((config_parameters, f"data set config {config.source}"), (flags, "flag"),
                          (given, "--param")):
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    for name, expected in (("data_uri", "a folder or gs:// prefix of batches"),
                           ("dataset_config", "a data set config's path or gs:// URI"),
                           ("source", "a folder, a gs:// prefix or bq://PROJECT.DATASET.TABLE"),
                           ("destination", "a folder, a gs:// prefix or bq://PROJECT.DATASET")):
        if name in values and not str(values[name]).strip():
            raise LocalRunError(f"{name} is empty (set by: {sources[name]}); expected {expected}")
    if values.get("registry_uri") == "vertex":
        raise LocalRunError("registry_uri=vertex needs Vertex AI: a local run registers into a local folder "
                            "(default local/registry); pass a folder path or leave it unset")
    try:
        template.check_values(values)
    except ParameterError as error:
        culprits = sorted({sources.get(name, "--param") for name in values if str(name) in str(error)} - {"default"})
        raise LocalRunError(f"{error} (set by: {', '.join(culprits) or 'the defaults'})") from None
    return values, sources


def _local_form(pipeline: str):
    """The definition kfp.local runs for a `LOCAL_PIPELINES` name: the same one Vertex runs, in its local
    form where a pipeline has two (training, batch prediction swap Vertex-only steps for local ones)."""
    if pipeline == "training":
        from pipelines.training_pipeline import build_training_pipeline

        return build_training_pipeline("local")
    if pipeline == "batch_prediction":
        from pipelines.batch_prediction_pipeline import build_batch_prediction_pipeline

        return build_batch_prediction_pipeline("local")
    from pipelines.compile import pipelines_to_compile

    return pipelines_to_compile()[LOCAL_PIPELINES[pipeline]]()


@contextlib.contextmanager
def _environment(values: Mapping[str, str]):
    """`values` in os.environ for the run (its steps are subprocesses and inherit them), restored after."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_pipeline(pipeline: str, local_dir: Path | None = None, **parameters) -> LocalRun:
    """Any pipeline of `LOCAL_PIPELINES` with kfp.local: each step with its duration, then a summary whose
    last lines are each failed step's own error. The registry defaults to the local state's."""
    from kfp import local

    if pipeline not in LOCAL_PIPELINES:
        raise LocalRunError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(sorted(LOCAL_PIPELINES))}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter drowns the step logs
    # Locally every step runs this environment's code on purpose (it is what the image holds).
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    state = Path(local_dir or SETTINGS.local_dir)
    pipeline_root = state / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    parameters = {"registry_uri": str(state / "registry")} | parameters
    if pipeline == "training":
        parameters["data_uri"] = parameters.get("data_uri") or DEFAULT_DATA_URI
        parameters["dataset_config"] = parameters.get("dataset_config") or DEFAULT_DATASET_CONFIG
        # The same rule as on Vertex: ingest takes the version of the bytes it reads. kfp.local has no
        # cache today; if it ever keys one on the inputs, new bytes under the same data_uri miss it.
        parameters.setdefault("data_version", _data_version(parameters["data_uri"]))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    before = set(pipeline_root.iterdir())

    timer = StepTimer()
    output = StepOutput(sys.stdout, timer)
    logging.getLogger().addFilter(timer)
    started = time.perf_counter()
    failure: Exception | None = None
    try:
        # Steps find bq:// destinations (DuckDB files) under this run's local state folder.
        with _environment({"MLOPS_LOCAL_DIR": str(state)}), contextlib.redirect_stdout(output):
            _local_form(pipeline)(**parameters)
    except RuntimeError as error:  # kfp.local raises when a step fails; the step's own error is kept
        failure = error
    except Exception as error:  # kfp.local itself failed: show where, and still print the summary
        traceback.print_exc()
        failure = error
    finally:
        logging.getLogger().removeFilter(timer)
    wall = time.perf_counter() - started

    new_runs = sorted(set(pipeline_root.iterdir()) - before)
    run = LocalRun(failure is None, new_runs[-1] if new_runs else None, timer.durations, wall,
                   {task: output.error(task) for task in timer.failed})
    shown = {"training": "data_uri", "batch_prediction": "source"}.get(pipeline)
    headline = f"{shown}={parameters.get(shown)}" if shown else None
    print_summary(run, pipeline, headline, failure)
    return run


def run_local_cli(pipeline: str, texts: Mapping[str, str], data_uri: str | None, dataset_config: str | None,
                  local_dir: Path | None = None) -> int:
    """`python runner.py --run local [--pipeline NAME] [--param NAME=VALUE ...]`: the exit code."""
    from contract.dataset import DatasetConfigError

    try:
        values, sources = local_parameters(pipeline, texts, data_uri, dataset_config)
    except (LocalRunError, DatasetConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chosen = ", ".join(f"{name}={values[name]!r} ({source})" for name, source in sources.items()
                       if source not in ("default",))
    if chosen:
        print(f"parameters: {chosen}")
    return 0 if run_pipeline(pipeline, local_dir, **values).succeeded else 1


def _data_version(data_uri: str) -> str:
    from triggers.submission.data_version import listing_version
    from triggers.submission.errors import TriggerError

    try:
        return listing_version(data_uri)
    except TriggerError:  # nothing there to list: ingest names what is missing, in the run's own log
        return ""


def print_summary(run: LocalRun, pipeline: str = "training", headline: str | None = None,
                  failure: Exception | None = None) -> None:
    """The run at a glance. After a failure its last lines say why: each failed step's own error
    (for bad data: the feature, the rule and the batch), never only kfp.local's "task failed"."""
    print("\n" + "=" * 72)
    print(f"{pipeline.replace('_', ' ')} pipeline, local mode: {'done' if run.succeeded else 'FAILED'} in "
          f"{run.wall_seconds:.1f} s" + (f"  ({headline})" if headline else ""))
    for task, seconds in run.step_seconds.items():
        print(f"  {task:<22} {seconds:6.1f} s")
    if run.run_dir is not None:
        {"training": _print_outcome, "batch_prediction": _print_batch_outcome}.get(pipeline, _print_task_outputs)(
            run.run_dir)
    print("=" * 72)
    for task, error in run.step_errors.items():
        print(f"{task} failed: {error}")
    if failure and not run.step_errors:
        print(f"failed: {type(failure).__name__}: {_ANSI.sub('', str(failure)).splitlines()[0]}")


def _print_task_outputs(run_dir: Path) -> None:
    """Each step's output parameters, and its report where it wrote one (deploy, canary decision, evaluation)."""
    for task in sorted(path.name for path in run_dir.iterdir() if path.is_dir()):
        outputs = ", ".join(f"{name}={value}" for name, value in _task_outputs(run_dir, task).items())
        report = _artifact_uri(run_dir, task, "report")
        if outputs or report:
            print(f"{task}: {outputs}" + (f"\nreport: {report}" if report else ""))


def _print_batch_outcome(run_dir: Path) -> None:
    model = _task_outputs(run_dir, "resolve-batch-model")
    predicted = _task_outputs(run_dir, "predict-batch")
    if predicted:
        print(f"model: version {model.get('model_version')} of {model.get('model_resource_name')}")
        print(f"rows: {predicted.get('rows_predicted')} predicted, {predicted.get('rows_failed')} in errors")
        print(f"output: {predicted.get('output')}")
    print(f"artifacts: {run_dir}")


def _print_outcome(run_dir: Path) -> None:
    from dataprep.ingest import load_manifest
    from dataprep.validation import Anomaly

    ingest = _task_outputs(run_dir, "ingest-data")
    if ingest:
        batches = load_manifest(run_dir / "ingest-data" / "examples").batches
        left_out = sum(1 for batch in batches if batch.problems)
        print(f"rows: {ingest.get('rows')} in {ingest.get('batches')} batch(es)"
              + (f", {left_out} left out for problems (below)" if left_out else "")
              + f"; train {ingest.get('train_rows')}, eval {ingest.get('eval_rows')}")
    anomalies_file = run_dir / "validate-data" / "anomalies" / ANOMALIES_JSON_FILE
    if anomalies_file.exists():
        anomalies = json.loads(anomalies_file.read_text())
        critical = [a for a in anomalies if a["severity"] == "critical"]
        print(f"anomalies: {len(critical)} critical, {len(anomalies) - len(critical)} warning(s)")
        for anomaly in critical[:5]:
            print(f"  {Anomaly(**anomaly).summary()}")
        if len(critical) > 5:
            print(f"  ... and {len(critical) - 5} more in {anomalies_file}")
    outcome_file = run_dir / "evaluate-model" / "evaluation" / OUTCOME_FILE
    if outcome_file.exists():
        outcome = json.loads(outcome_file.read_text())
        overall = outcome["metrics"]["overall"]
        shown = ", ".join(f"{k} {'undefined' if v is None else f'{v:.4f}'}" for k, v in overall["candidate"].items()
                          if k in ("auc", "accuracy", "precision", "recall", "calibration"))
        print(f"metrics (eval, overall): {shown}")
        if "champion" in overall:
            print(f"champion's auc on the same data: {overall['champion']['auc']:.4f}")
        print(f"blessed: {outcome['blessed']}" + (f"  ({'; '.join(outcome['failures'])})" if outcome["failures"]
                                                  else ""))
        print(f"report: {_artifact_uri(run_dir, 'evaluate-model', 'report')}")
    model_name = _task_outputs(run_dir, "lookup-champion").get("model_name")
    registered = _task_outputs(run_dir, "register-model")
    if registered.get("identical_to"):
        print(f"registered: nothing: version {registered['identical_to']} of {model_name} was made from the same "
              "data version, parameters and code (not deployed again)")
    elif registered:
        print(f"registered: version {registered.get('version')} of {model_name} as {registered.get('aliases')}")
    elif outcome_file.exists():
        print("registered: nothing (the model was not blessed)")
    deployed = _task_outputs(run_dir, "deploy-model")
    if deployed:
        print(f"deployed: version {deployed.get('version')} ({deployed.get('transition')}) as deployed model "
              f"{deployed.get('deployed_model_id')}; split {deployed.get('traffic_split')}")
        print(f"  {deployed.get('smoke_test')}")
    print(f"artifacts: {run_dir.relative_to(PROJECT_ROOT) if run_dir.is_relative_to(PROJECT_ROOT) else run_dir}")
