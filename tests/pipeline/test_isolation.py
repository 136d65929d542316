"""dataprep.isolation: the fix for tf.Transform's exit-time segfault must neither fail
a step that finished nor hide one that did not."""

import subprocess
import sys

import pytest

from dataprep.isolation import IsolatedStepError, run_isolated

TARGETS = "tests.pipeline.isolation_targets"


def test_result_comes_back():
    assert run_isolated(f"{TARGETS}:add", a=2, b=3) == {"sum": 5}


def test_an_exception_in_the_work_fails_with_its_own_message():
    with pytest.raises(IsolatedStepError, match="failed with exit code 1(.|\n)*bad input: negative"):
        run_isolated(f"{TARGETS}:fail", reason="negative")


def test_a_crash_before_the_result_is_a_failure_naming_the_signal():
    with pytest.raises(IsolatedStepError, match="killed by SIGSEGV before it finished"):
        run_isolated(f"{TARGETS}:crash")


def test_real_tft_run_succeeds_in_isolation_though_a_plain_process_crashes_at_exit():
    assert run_isolated(f"{TARGETS}:tft_then_return") == {"transformed": ["v", "y"]}
    # The problem being solved is real: the same work in a plain process exits with SIGSEGV.
    plain = subprocess.run([sys.executable, "-c", f"import {TARGETS} as t; print(t.tft_then_return())"],
                           capture_output=True, text=True, timeout=300)
    assert "'transformed': ['v', 'y']" in plain.stdout
    assert plain.returncode == -11, f"expected the known teardown SIGSEGV, got exit {plain.returncode}"
