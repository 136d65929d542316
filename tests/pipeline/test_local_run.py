"""The local run: what it prints (a line per step, a failed step's own error) and what it keeps in the run's folder."""

import json
import re

import pytest

from pipelines.local_run import step_error

# A step's output as kfp.local prints it: indented by four spaces, a chained exception at the end.
STEP_OUTPUT = """\
    [KFP Executor 2026-01-01 00:00:00,000 INFO]: Looking for component `validate_data`
    Traceback (most recent call last):
      File "/work/dataprep/ingest.py", line 12, in parse
        raise KeyError("fare")
    KeyError: 'fare'

    The above exception was the direct cause of the following exception:

    Traceback (most recent call last):
      File "<frozen runpy>", line 198, in _run_module_as_main
      File "/work/dataprep/validation.py", line 340, in raise_on_critical
        raise DataValidationError(f"{len(blocking)} critical data anomalies; "
        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    dataprep.validation.DataValidationError: 1 critical data anomaly; the data does not reach training. First: \
fare: FEATURE_TYPE_HIGH_NUMBER_VALUES: line 1: the header names 'fare' 2 times (/data/2014/04/01/0000/batch.csv)
      [critical] fare: FEATURE_TYPE_HIGH_NUMBER_VALUES: line 1: ...


""".splitlines()


def test_the_error_is_the_last_exceptions_first_line_without_its_module():
    assert step_error(STEP_OUTPUT) == (
        "DataValidationError: 1 critical data anomaly; the data does not reach training. First: fare: "
        "FEATURE_TYPE_HIGH_NUMBER_VALUES: line 1: the header names 'fare' 2 times (/data/2014/04/01/0000/batch.csv)")


def test_a_step_that_ends_without_a_traceback_shows_its_last_line():
    assert step_error(["    starting", "    Killed", ""]) == "no Python error in its output; it ends with: Killed"
    assert step_error([]) == "no output"


# Two real local runs that cost about a second each: a canary decision with nothing to decide, and a deploy of a
# version the registry does not have (its step fails with the registry's own error).
def _decision(local_dir, **options):
    from pipelines.local_run import run_pipeline

    return run_pipeline("canary_decision", local_dir, **options)


@pytest.mark.filterwarnings("default::UserWarning")  # kfp.local's display_name warnings, as a person's run has them
def test_a_local_run_prints_a_line_per_step_and_keeps_everything_in_its_folder(tmp_path, capsys):
    run = _decision(tmp_path)
    out, err = capsys.readouterr()

    assert run.succeeded and run.run_dir.parent == tmp_path / "pipeline_root"
    before_summary = out.split("=" * 72)[0].strip().splitlines()
    assert before_summary[0] == f"canary decision pipeline, local mode: run {run.run_dir.name}"
    assert before_summary[1] == f"  each step's log: {run.run_dir / '_logs'} (--verbose prints them here)"
    assert re.fullmatch(r"\d\d:\d\d:\d\d decide-canary +started", before_summary[2])
    assert re.fullmatch(r"\d\d:\d\d:\d\d decide-canary +succeeded in \d+\.\d s", before_summary[3])
    assert len(before_summary) == 4  # nothing else: no executor input, no kfp.local chatter, no warnings
    assert "display_name" not in out + err and "executor_input" not in out
    assert f"console: http://127.0.0.1:8095/runs/{run.run_dir.name}  (serve it with: make console" in out

    # Everything kfp.local and the step printed is kept: the whole run's log, and the step's own.
    whole = (run.run_dir / "_logs/run.log").read_text()
    assert "Running pipeline: 'canary-decision-pipeline'" in whole
    assert "settings ['display_name'] have no effect" in whole
    step_log = (run.run_dir / "_logs/decide-canary.log").read_text()
    assert step_log.startswith(next(line for line in whole.splitlines() if "Executing task" in line))
    assert "Got executor_input" in step_log and "finished with status SUCCESS" in step_log
    assert "Pipeline 'canary-decision-pipeline' finished" not in step_log  # the step's log ends with the step
    record = json.loads((run.run_dir / "_run.json").read_text())
    assert (record["pipeline"], record["state"], record["started_by"]) == ("canary_decision", "succeeded",
                                                                           "command line")
    assert record["parameters"] == {"registry_uri": str(tmp_path / "registry")}
    step = record["steps"]["decide-canary"]
    assert step["state"] == "succeeded"
    assert step["seconds"] == pytest.approx(run.step_seconds["decide-canary"], abs=1e-3)
    spec = json.loads((run.run_dir / "_pipeline_spec.json").read_text())
    assert spec["pipelineInfo"]["name"] == "canary-decision-pipeline"
    assert "decide-canary" in spec["root"]["dag"]["tasks"]


def test_verbose_streams_everything_kfp_local_prints(tmp_path, capsys):
    run = _decision(tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert run.succeeded
    assert "Got executor_input" in out and "Executing task" in out and " started\n" not in out


def test_a_failed_step_prints_its_own_error_and_where_its_log_is(tmp_path, capsys):
    from pipelines.local_run import run_pipeline

    run = run_pipeline("deploy", tmp_path, version="3")
    out = capsys.readouterr().out
    error = "RegistryError: model 'chicago-taxi-big-tipper' has no version '3'; registered: none"
    assert not run.succeeded and run.step_errors == {"deploy-model": error}
    during, summary, after = out.split("=" * 72)
    assert re.search(r"\d\d:\d\d:\d\d deploy-model +FAILED in \d+\.\d s\n", during)
    assert f"    registry.model_registry.{error}\n" in during  # the traceback's end, as the step printed it
    assert f"  its log: {run.run_dir / '_logs/deploy-model.log'}\n" in during
    assert f"registry.model_registry.{error}" in (run.run_dir / "_logs/deploy-model.log").read_text()
    assert after.strip().splitlines()[-1] == f"deploy-model failed: {error}"
    record = json.loads((run.run_dir / "_run.json").read_text())
    assert (record["state"], record["steps"]["deploy-model"]["state"]) == ("failed", "failed")
    assert record["steps"]["deploy-model"]["error"] == error and record["error"] == f"deploy-model failed: {error}"
