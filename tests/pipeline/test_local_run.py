"""The local run's summary names a failed step's own error (the e2e tests run whole pipelines)."""

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
