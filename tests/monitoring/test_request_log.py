"""The endpoint's request log on its own: rows in Vertex's shape, bounded rotation, settings and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.request_log import RequestLog, RequestLogConfigError, RequestLogSettings, log_files, read_rows

REQUEST = b'{"instances": [{"trip_miles": 1.5, "company": "Flash Cab \xc3\xa9"}]}'
RESPONSE = b'{"predictions": [0.25], "deployedModelId": "1"}'


def test_rows_have_the_columns_vertex_logs_and_the_payloads_as_sent(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "local", RequestLogSettings())
    log.write("1", REQUEST, RESPONSE)
    log.write("2", REQUEST, RESPONSE)
    log.close()

    rows = list(read_rows(tmp_path))
    assert [set(row) for row in rows] == [{"endpoint", "deployed_model_id", "logging_time", "request_id",
                                           "request_payload", "response_payload"}] * 2
    assert [row["deployed_model_id"] for row in rows] == ["1", "2"]
    assert json.loads(rows[0]["request_payload"][0])["instances"][0]["company"] == "Flash Cab é"
    assert json.loads(rows[0]["response_payload"][0])["predictions"] == [0.25]
    assert rows[0]["request_id"] != rows[1]["request_id"] and rows[0]["logging_time"] <= rows[1]["logging_time"]


def test_files_rotate_at_the_size_limit_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    settings = RequestLogSettings(max_file_bytes=4096, max_files=3)
    log = RequestLog(tmp_path, "local", settings)
    for _ in range(200):
        log.write("1", REQUEST, RESPONSE)
    log.close()

    files = log_files(tmp_path)
    assert len(files) == 3
    assert all(path.stat().st_size <= 4096 for path in files)
    numbers = [int(path.stem.split("-")[1]) for path in files]
    assert numbers == sorted(numbers) and numbers[0] > 1  # the oldest were removed, the newest kept
    assert len(list(read_rows(tmp_path))) < 200


def test_a_restart_appends_a_new_file_and_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "local", RequestLogSettings())
    log.write("1", REQUEST, RESPONSE)
    log.close()
    (first,) = log_files(tmp_path)
    with open(first, "ab") as file:  # a crash in the middle of a write
        file.write(b'{"endpoint": "local", "deployed_mo')

    restarted = RequestLog(tmp_path, "local", RequestLogSettings())
    restarted.write("1", REQUEST, RESPONSE)
    restarted.close()

    assert len(log_files(tmp_path)) == 2
    assert len(list(read_rows(tmp_path))) == 2


def test_sampling_rate_zero_logs_nothing(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "local", RequestLogSettings(sampling_rate=0.0))
    log.write("1", REQUEST, RESPONSE)
    log.close()
    assert list(read_rows(tmp_path)) == []


def test_settings_from_the_environment() -> None:
    assert RequestLogSettings.from_env({}) == RequestLogSettings()
    assert not RequestLogSettings.from_env({"MLOPS_REQUEST_LOG": "off"}).enabled
    assert RequestLogSettings.from_env({"MLOPS_REQUEST_LOG_MAX_FILES": "2"}).max_files == 2
    for variable, value in [("MLOPS_REQUEST_LOG", "maybe"), ("MLOPS_REQUEST_LOG_MAX_BYTES", "12"),
                            ("MLOPS_REQUEST_LOG_MAX_FILES", "many"), ("MLOPS_REQUEST_LOG_SAMPLING_RATE", "1.5")]:
        with pytest.raises(RequestLogConfigError, match=variable):
            RequestLogSettings.from_env({variable: value})


def test_the_endpoint_logs_answered_predictions_and_not_when_turned_off(tmp_path: Path) -> None:
    """Two local endpoints (router + model server processes) on one demo model, the log on and off."""
    import contextlib

    from monitoring import local_chain
    from serving.client import LocalEndpoint
    from serving.endpoint import EndpointError
    from serving.testing import build_demo_model, demo_instances

    model = build_demo_model(tmp_path / "model")
    endpoints = {}
    with contextlib.ExitStack() as stack:
        for setting in ("on", "off"):
            endpoint = LocalEndpoint(tmp_path / f"endpoint-{setting}")
            endpoint.deploy(str(model), setting)
            stack.enter_context(local_chain.endpoint(endpoint.state_dir, tmp_path, {"MLOPS_REQUEST_LOG": setting}))
            endpoints[setting] = endpoint
        for endpoint in endpoints.values():
            local_chain.wait_for(lambda e=endpoint: e.describe()["deployedModels"][0]["state"] == "ready", 120,
                                 "the model server")
            for count in (1, 3):
                endpoint.predict(demo_instances(count))
            with pytest.raises(EndpointError):  # refused (400): not an answered prediction, not logged
                endpoint.predict([{"trip_miles": "far"}])

    rows = list(read_rows(tmp_path / "endpoint-on" / "request_log"))
    assert [len(json.loads(row["request_payload"][0])["instances"]) for row in rows] == [1, 3]
    assert [len(json.loads(row["response_payload"][0])["predictions"]) for row in rows] == [1, 3]
    assert {row["deployed_model_id"] for row in rows} == {"1"}
    assert list(read_rows(tmp_path / "endpoint-off" / "request_log")) == []
