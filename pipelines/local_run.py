"""Local mode: any pipeline on this machine with kfp.local.

The same pipeline definition Vertex runs; each step a subprocess of this
environment. Prints one line per step as it starts and as it ends (a failed step
with its own error and where its log is) and ends with a summary; when a step
fails, the summary's last lines are that step's own error message. Everything
kfp.local and the steps print goes to the run's logs (`pipelines/run_record.py`),
and to the terminal as well with `verbose`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
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

from console.address import console_address
from contract.artifacts import ANOMALIES_JSON_FILE, OUTCOME_FILE
from contract.paths import DEFAULT_DATA_URI, DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from pipelines.run_record import LOGS_DIR, RUN_LOG_FILE, RunRecorder, step_log_path
from pipelines.settings import SETTINGS

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '?([\w-]+)'?")
_FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
_TRACEBACK = "Traceback (most recent call last):"
_RULE = re.compile(r"-{20,}")  # kfp.local's horizontal rule after each step's outputs
# Lines of each step's output kept for its error message: a traceback's end is all it needs.
_KEPT_LINES = 500


class StepTimer(logging.Filter):
    """Reads kfp.local's own task log lines: times each step, keeps the run record, and unless `verbose`
    prints one line per step as it starts and as it ends (kfp.local's own lines then go to the logs only).
    A filter on the root logger, because kfp.local swaps that logger's handlers for every task."""

    def __init__(self, recorder: RunRecorder, terminal, verbose: bool) -> None:
        super().__init__()
        self.recorder, self.terminal, self.verbose = recorder, terminal, verbose
        self.output: StepOutput | None = None  # set by the StepOutput that shares this run
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self.current: str | None = None
        self.failed: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", str(record.msg))
        if match := _STARTED.search(message):
            task = match.group(1)
            self.started[task] = time.perf_counter()
            self.current = task
            if self.output:
                self.output.open_step(task)
            self.recorder.step_started(task)
            self._say(f"{task:<24} started")
        elif (match := _FINISHED.search(message)) and match.group(1) in self.started:
            task, succeeded = match.group(1), match.group(2) != "FAILURE"
            seconds = time.perf_counter() - self.started[task]
            self.durations[task] = seconds
            record.msg = f"{record.msg} in {seconds:.1f} s"
            self.recorder.step_ended(task, succeeded, seconds)
            if self.output:
                self.output.step_finished()
            if succeeded:
                self._say(f"{task:<24} succeeded in {seconds:.1f} s")
            else:
                self.failed.append(task)
                self._say(f"{task:<24} FAILED in {seconds:.1f} s")
                self._show_failure(task)
        return True

    def _say(self, line: str) -> None:
        if not self.verbose:
            print(f"{datetime.datetime.now():%H:%M:%S} {line}", file=self.terminal, flush=True)

    def _show_failure(self, task: str) -> None:
        """A failed step's own error where the person is looking, and where its whole log is."""
        if self.output is None:
            return
        error = self.output.error(task)
        self.recorder.step_error(task, error)
        if not self.verbose:
            for line in failure_excerpt(list(self.output.tails.get(task, []))):
                print(f"    {line}", file=self.terminal)
            if self.recorder.run_dir is not None:
                print(f"  its log: {step_log_path(self.recorder.run_dir, task)}", file=self.terminal, flush=True)


class StepOutput:
    """Stands in for sys.stdout during a run. kfp.local prints every step's output there (its traceback
    included) and raises an error that only names the step. Each line goes to the run's log and to the
    running step's log, and the end of each step's output is kept for its error message; with `verbose`
    everything also goes to the terminal as it comes."""

    def __init__(self, stream, timer: StepTimer, verbose: bool) -> None:
        self.stream = stream
        self.timer = timer
        timer.output = self
        self.verbose = verbose
        self.tails: dict[str, collections.deque[str]] = collections.defaultdict(
            lambda: collections.deque(maxlen=_KEPT_LINES))
        self._partial = ""
        self._waiting: list[str] = []  # lines before the run has a folder to log into
        self._run_log = None
        self._step_log = None
        self._step_closing = False

    def begin(self, run_dir: Path) -> None:
        """The run has its folder: the logs open there, with what came before."""
        # Line-buffered: the console shows a running step's log as it grows.
        self._run_log = open(run_dir / LOGS_DIR / RUN_LOG_FILE, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._run_log.writelines(self._waiting)
        self._waiting = []

    def open_step(self, task: str) -> None:
        self._close_step()
        if self.timer.recorder.run_dir is not None:
            self._step_log = open(step_log_path(self.timer.recorder.run_dir, task), "a", encoding="utf-8",  # noqa: SIM115
                                  buffering=1)

    def step_finished(self) -> None:
        """The step's outputs follow its end line, up to kfp.local's horizontal rule: still its log."""
        self._step_closing = True

    def _close_step(self) -> None:
        if self._step_log is not None:
            self._step_log.close()
        self._step_log, self._step_closing = None, False

    def write(self, text: str) -> int:
        if self.verbose:
            self.stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            plain = _ANSI.sub("", line) + "\n"
            if self._run_log is None:
                self._waiting.append(plain)
            else:
                self._run_log.write(plain)
            if self._step_log is not None:
                self._step_log.write(plain)
                if self._step_closing and _RULE.fullmatch(line):
                    self._close_step()
            if self.timer.current:
                self.tails[self.timer.current].append(line)
        return len(text)

    def __getattr__(self, name: str):  # flush, encoding, isatty, fileno: the real stream's
        return getattr(self.stream, name)

    def close(self) -> None:
        if self._partial:
            self.write("\n")
        self._close_step()
        if self._run_log is not None:
            self._run_log.close()

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


def failure_excerpt(lines: list[str], most: int = 12) -> list[str]:
    """What a person needs to see of a failed step's output: its last traceback (at most `most` lines,
    the end kept), or its last lines when it printed none."""
    clean = [_ANSI.sub("", line).rstrip() for line in lines]
    while clean and not clean[-1].strip():
        clean.pop()
    starts = [index for index, line in enumerate(clean) if line.strip() == _TRACEBACK]
    excerpt = clean[starts[-1]:] if starts else clean
    excerpt = excerpt[-most:] if starts else excerpt[-10:]
    indent = min((len(line) - len(line.lstrip()) for line in excerpt if line.strip()), default=0)
    return [line[indent:] for line in excerpt]


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
    for name, expected in (("data_uri", "a folder or gs:// prefix of batches, or bq://PROJECT.DATASET.TABLE"),
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


@contextlib.contextmanager
def _named_run(on_name):
    """Calls `on_name(name)` with the run's folder name the moment kfp.local chooses it, before its first
    step: kfp.local (2.17) names a run once per pipeline, through this function, and offers no hook."""
    from kfp.local import executor_input_utils

    original = executor_input_utils.get_local_pipeline_resource_name

    def named(pipeline_name: str) -> str:
        name = original(pipeline_name)
        on_name(name)
        return name

    executor_input_utils.get_local_pipeline_resource_name = named
    try:
        yield
    finally:
        executor_input_utils.get_local_pipeline_resource_name = original


def run_pipeline(pipeline: str, local_dir: Path | None = None, *, verbose: bool = False,
                 started_by: str = "command line", parameter_sources: Mapping[str, str] | None = None,
                 **parameters) -> LocalRun:
    """Any pipeline of `LOCAL_PIPELINES` with kfp.local: a line per step as it starts and ends (or, with
    `verbose`, everything kfp.local and the steps print), then a summary whose last lines are each failed
    step's own error. The run's record and logs are kept in its folder. The registry defaults to the local
    state's."""
    from google.protobuf import json_format
    from kfp import local

    from dataprep.bigquery_source import BACKEND_ENV, DUCKDB_BACKEND

    if pipeline not in LOCAL_PIPELINES:
        raise LocalRunError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(sorted(LOCAL_PIPELINES))}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter drowns the step logs
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
    definition = _local_form(pipeline)

    terminal = sys.stdout
    recorder = RunRecorder(pipeline, parameters, started_by, parameter_sources)
    timer = StepTimer(recorder, terminal, verbose)
    output = StepOutput(terminal, timer, verbose)

    def begin(name: str) -> None:
        recorder.begin(pipeline_root / name, json_format.MessageToDict(definition.pipeline_spec))
        output.begin(pipeline_root / name)
        if not verbose:
            print(f"{pipeline.replace('_', ' ')} pipeline, local mode: run {name}\n"
                  f"  each step's log: {_shown_path(pipeline_root / name / LOGS_DIR)} (--verbose prints them here)",
                  file=terminal, flush=True)

    logging.getLogger().addFilter(timer)
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        # Steps find bq:// tables (DuckDB files) under this run's local state folder, through the stand-in.
        with warnings.catch_warnings(), _environment({"MLOPS_LOCAL_DIR": str(state), BACKEND_ENV: DUCKDB_BACKEND}), \
                _named_run(begin), contextlib.redirect_stdout(output):
            # Locally every step runs this environment's code on purpose (it is what the image holds).
            warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
            if not verbose:  # kfp.local's warnings (display_name has no effect locally...) go to the run's log
                warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
                    output.write(warnings.formatwarning(message, category, filename, lineno, line))
            definition(**parameters)
    except RuntimeError as error:  # kfp.local raises when a step fails; the step's own error is kept
        failure = error
    except Exception as error:  # kfp.local itself failed: show where, and still print the summary
        traceback.print_exc()
        failure = error
    except BaseException as error:  # Ctrl-C: the record says the run did not finish, then it stops
        recorder.end(False, f"stopped: {type(error).__name__}")
        raise
    finally:
        logging.getLogger().removeFilter(timer)
        output.close()
    wall = time.perf_counter() - started

    run = LocalRun(failure is None, recorder.run_dir, timer.durations, wall,
                   {task: output.error(task) for task in timer.failed})
    recorder.end(run.succeeded, "; ".join(f"{task} failed: {error}" for task, error in run.step_errors.items())
                 or (f"{type(failure).__name__}: {_first_line(failure)}" if failure else None))
    shown = {"training": "data_uri", "batch_prediction": "source"}.get(pipeline)
    headline = f"{shown}={parameters.get(shown)}" if shown else None
    print_summary(run, pipeline, headline, failure)
    return run


def _first_line(error: BaseException) -> str:
    return (_ANSI.sub("", str(error)).splitlines() or [""])[0]


def _shown_path(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def run_local_cli(pipeline: str, texts: Mapping[str, str], data_uri: str | None, dataset_config: str | None,
                  local_dir: Path | None = None, verbose: bool = False) -> int:
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
    run = run_pipeline(pipeline, local_dir, verbose=verbose, parameter_sources=sources, **values)
    return 0 if run.succeeded else 1


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
        print(f"console: {console_address(run.run_dir)}")
    print("=" * 72)
    for task, error in run.step_errors.items():
        print(f"{task} failed: {error}")
    if failure and not run.step_errors:
        print(f"failed: {type(failure).__name__}: {_first_line(failure)}")


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

    pinned = _task_outputs(run_dir, "snapshot-data")
    if str(pinned.get("data_uri", "")).startswith("bq://"):
        print(f"data: {pinned['data_uri']} (data_version {pinned.get('data_version')})")
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
    print(f"artifacts: {_shown_path(run_dir)}")
