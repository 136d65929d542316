"""A local run's own record, kept in its folder beside what kfp.local writes there.

kfp.local keeps each step's outputs (`RUN/TASK/executor_output.json`) and nothing else: not which
pipeline ran with which parameters, nor when, nor how each step went, nor what it printed. A local
run (`pipelines/local_run.py`) keeps that here while it goes, and the console reads it:

    RUN/_run.json             the pipeline, its parameters, the run's state, start and end, each step's
                              state, times and error; rewritten whole at every change (atomically)
    RUN/_pipeline_spec.json   the pipeline spec kfp.local ran: its DAG, nested pipelines and conditions
    RUN/_logs/run.log         everything the run printed (what `--verbose` streams)
    RUN/_logs/TASK.log        one step's own output

The names start with "_", which no KFP task name can (they are [a-z0-9-], see
kfp.dsl.utils.maybe_rename_for_k8s), so they never meet a step's folder.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storage.local_files import write_json_atomically

RUN_RECORD_FILE = "_run.json"
PIPELINE_SPEC_FILE = "_pipeline_spec.json"
LOGS_DIR = "_logs"
RUN_LOG_FILE = "run.log"
# Bumped when a field changes meaning; the console names a record of another format instead of misreading it.
RECORD_FORMAT = 1
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def step_log_path(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / LOGS_DIR / f"{task}.log"


class RunRecorder:
    """Writes `_run.json` of one run as it goes. `begin` once kfp.local has named the run; before that
    (and for a run that never got a name) nothing is written."""

    def __init__(self, pipeline: str, parameters: Mapping[str, Any], started_by: str,
                 parameter_sources: Mapping[str, str] | None = None) -> None:
        self.run_dir: Path | None = None
        self.record: dict[str, Any] = {
            "format": RECORD_FORMAT, "pipeline": pipeline, "state": RUNNING, "started": now(), "ended": None,
            "pid": os.getpid(), "started_by": started_by, "parameters": dict(parameters),
            "parameter_sources": dict(parameter_sources or {}), "steps": {}, "error": None}

    def begin(self, run_dir: Path, pipeline_spec: Mapping[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        (self.run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        self.record["run"] = self.run_dir.name
        write_json_atomically(self.run_dir / PIPELINE_SPEC_FILE, dict(pipeline_spec))
        self._write()

    def step_started(self, task: str) -> None:
        self.record["steps"][task] = {"state": RUNNING, "started": now(), "ended": None, "seconds": None}
        self._write()

    def step_ended(self, task: str, succeeded: bool, seconds: float) -> None:
        step = self.record["steps"].setdefault(task, {"started": None})
        step.update(state=SUCCEEDED if succeeded else FAILED, ended=now(), seconds=round(seconds, 3))
        self._write()

    def step_error(self, task: str, error: str) -> None:
        self.record["steps"].setdefault(task, {"state": FAILED})["error"] = error
        self._write()

    def end(self, succeeded: bool, error: str | None = None) -> None:
        self.record.update(state=SUCCEEDED if succeeded else FAILED, ended=now(), error=error)
        self._write()

    def _write(self) -> None:
        if self.run_dir is not None:
            write_json_atomically(self.run_dir / RUN_RECORD_FILE, self.record)


class RunRecordError(ValueError):
    """A run record that cannot be read as one; the message says what is wrong with it."""


def read_run_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's record; None for a run without one (run by code older than the record)."""
    path = Path(run_dir) / RUN_RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunRecordError(f"{path} is not readable JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RunRecordError(f"{path} has record format {found!r}; this code reads format {RECORD_FORMAT}")
    if not isinstance(record.get("steps"), dict) or not isinstance(record.get("parameters"), dict):
        raise RunRecordError(f"{path} lacks its steps or parameters")
    return record
