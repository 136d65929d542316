"""The drift demo end to end (`make demo-drift`): every part real and local. One flow replaces separate tests of
the chain's hops: the GCS emulator, the local pipelines API running kfp.local, the local endpoint and its request
log, the monitor, a Logging sink to the Pub/Sub emulator, and the drift-alert function from its deploy folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitoring.local_chain import ChainError, pubsub_emulator_command
from pipelines.local_jobs_api import SUCCEEDED
from tests.conftest import require_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def test_drifting_traffic_ends_in_one_retraining_run_and_a_new_version(tmp_path: Path) -> None:
    try:
        pubsub_emulator_command(0, tmp_path)  # the tools are there
    except ChainError as error:
        require_or_skip(False, str(error))
    from monitoring.demo import run_demo

    result = run_demo(tmp_path / "demo")

    assert result.clean_drifted == ()  # 2013 traffic against the 2013 model: no false positive
    assert {"trip_miles", "payment_type"} <= set(result.drifted)
    assert result.retraining_job["state"] == SUCCEEDED, result.retraining_job.get("error")
    assert result.retraining_job["labels"]["trigger"] == "drift-alert"
    data_uri = result.retraining_job["runtimeConfig"]["parameterValues"]["data_uri"].split(",")
    assert len(data_uri) == 24 and data_uri[-1].endswith("/data/processed/2016/12")
    assert result.versions == ["1", "2"] and result.runs_created == 1
    # The retraining run deployed its version beside the champion, and the decision had evidence to judge.
    assert sorted(result.canary_split.values()) == [10, 90]
    assert result.canary_decision in ("advance", "promote", "hold", "rollback")
    # The new version's lineage names the recent data it was trained on.
    version = json.loads((tmp_path / "demo/local/registry/chicago-taxi-big-tipper/versions/2/version.json").read_text())
    assert version["metadata"]["data_uri"] == ",".join(data_uri)
