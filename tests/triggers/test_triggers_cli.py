"""`python runner.py --submit`: the same submission module, from a terminal."""

from __future__ import annotations

import json

import pytest
from trigger_helpers import PROJECT, REGION, SERVICE_ACCOUNT, TRAINING_TEMPLATE, FakeVertex, PagingGcs

import runner
from tests.gcs_emulator import GcsEmulator
from triggers.cli import EXIT_INVALID, EXIT_TRANSIENT, main
from triggers.submission.data_version import listing_version

DATA_URI = "gs://landing-data/data/processed/2014/03"


def submit(*args: str) -> int:
    return runner.main(["--submit", "--template", str(TRAINING_TEMPLATE), *args])


def test_dry_run_shows_the_typed_request_and_sends_nothing(trigger_env, fake_vertex: FakeVertex, capsys) -> None:
    code = submit("--param", f"data_uri={DATA_URI}", "--param", "epochs=5", "--param", "learning_rate=1",
                  "--param", "hidden_units=[64, 32]", "--label", "reason=backfill", "--job-id", "backfill-2014-03",
                  "--dry-run")
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["url"] == (f"{fake_vertex.url}/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
                            "?pipelineJobId=backfill-2014-03")
    assert shown["body"]["runtimeConfig"]["parameterValues"] == {
        "data_uri": DATA_URI, "epochs": 5, "learning_rate": 1.0, "hidden_units": [64, 32],
        "data_version": listing_version(DATA_URI)}
    assert isinstance(shown["body"]["runtimeConfig"]["parameterValues"]["learning_rate"], float)
    assert shown["body"]["labels"] == {"trigger": "manual", "reason": "backfill"}
    assert fake_vertex.calls == []


def test_submit_twice_with_one_job_id_creates_one_run(trigger_env, fake_vertex: FakeVertex, capsys) -> None:
    assert submit("--param", f"data_uri={DATA_URI}", "--job-id", "backfill-2014-03") == 0
    assert submit("--param", f"data_uri={DATA_URI}", "--job-id", "backfill-2014-03") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"created projects/{PROJECT}/locations/{REGION}/pipelineJobs/backfill-2014-03"
    assert out[1].startswith("already exists, nothing to do:")
    assert [call["status"] for call in fake_vertex.calls] == [200, 409]
    assert fake_vertex.calls[0]["body"]["serviceAccount"] == SERVICE_ACCOUNT


def test_without_a_job_id_each_submission_is_a_new_manual_run(trigger_env, fake_vertex: FakeVertex) -> None:
    assert submit("--param", f"data_uri={DATA_URI}") == 0
    assert fake_vertex.calls[0]["job_id"].startswith("training-pipeline-manual-")


def test_flags_override_the_environment(trigger_env, fake_vertex: FakeVertex, capsys) -> None:
    assert submit("--param", f"data_uri={DATA_URI}", "--project", "other-project", "--region", "europe-west4",
                  "--api-endpoint", fake_vertex.url, "--dry-run") == 0
    assert "/v1/projects/other-project/locations/europe-west4/pipelineJobs" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "expected"), [
    (["--param", f"data_uri={DATA_URI}", "--param", "learning_rat=0.1"], "unknown parameter 'learning_rat'"),
    (["--param", f"data_uri={DATA_URI}", "--param", "epochs=five"], "parameter epochs='five': expected a whole number"),
    (["--param", "epochs=3"], "required parameter(s) not set: data_uri"),
    (["--param", "data_uri"], "--param 'data_uri': expected NAME=VALUE"),
    (["--param", f"data_uri={DATA_URI}", "--label", "Reason=x"], "label key 'Reason'"),
])
def test_invalid_requests_exit_2_and_say_what_was_expected(trigger_env, fake_vertex: FakeVertex, capsys,
                                                          args: list[str], expected: str) -> None:
    assert submit(*args) == EXIT_INVALID
    assert expected in capsys.readouterr().err
    assert fake_vertex.calls == []


def test_missing_configuration_exits_2_naming_the_variable(trigger_env, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLOPS_SERVICE_ACCOUNT")
    assert submit("--param", f"data_uri={DATA_URI}") == EXIT_INVALID
    assert "MLOPS_SERVICE_ACCOUNT is not set" in capsys.readouterr().err


def test_a_transient_failure_exits_75(trigger_env, fake_vertex: FakeVertex, capsys) -> None:
    fake_vertex.fail_next(503)
    assert main(["--template", str(TRAINING_TEMPLATE), "--param", f"data_uri={DATA_URI}"]) == EXIT_TRANSIENT
    assert "try again" in capsys.readouterr().err


def _shown_parameters(capsys) -> dict:
    return json.loads(capsys.readouterr().out)["body"]["runtimeConfig"]["parameterValues"]


def test_the_data_version_is_the_listing_fingerprint_unless_given(trigger_env, paging_gcs: PagingGcs, gcs: GcsEmulator,
                                                                  capsys) -> None:
    batch = "data/processed/2014/03/09/0000/batch.csv"
    gcs.upload("landing-data", batch, b"a,b\n1,2\n")
    assert submit("--param", f"data_uri={DATA_URI}", "--dry-run") == 0
    first = _shown_parameters(capsys)["data_version"]
    gcs.upload("landing-data", batch, b"a,b\n1,3\n")  # a corrected batch under the same data_uri
    assert submit("--param", f"data_uri={DATA_URI}", "--dry-run") == 0
    second = _shown_parameters(capsys)["data_version"]
    assert first != second == listing_version(DATA_URI)

    paging_gcs.requests.clear()
    assert submit("--param", f"data_uri={DATA_URI}", "--param", "data_version=backfill-1", "--dry-run") == 0
    assert _shown_parameters(capsys)["data_version"] == "backfill-1"
    assert paging_gcs.requests == []  # given: nothing listed


def test_a_local_data_uri_is_versioned_by_stat(trigger_env, tmp_path, capsys) -> None:
    (tmp_path / "2014/03/01/0000").mkdir(parents=True)
    (tmp_path / "2014/03/01/0000/batch.csv").write_text("a,b\n1,2\n")
    assert submit("--param", f"data_uri={tmp_path}", "--dry-run") == 0
    assert _shown_parameters(capsys)["data_version"] == listing_version(str(tmp_path))

    assert submit("--param", f"data_uri={tmp_path / 'nowhere'}") == EXIT_INVALID
    assert "no such folder or file here" in capsys.readouterr().err


def test_the_cache_switch_is_shown_by_a_dry_run(trigger_env, capsys) -> None:
    assert submit("--param", f"data_uri={DATA_URI}", "--no-cache", "--dry-run") == 0
    assert json.loads(capsys.readouterr().out)["body"]["pipelineSpec"].endswith(", caching off for every task>")
    assert submit("--param", f"data_uri={DATA_URI}", "--dry-run") == 0
    assert "caching" not in json.loads(capsys.readouterr().out)["body"]["pipelineSpec"]


def test_a_missing_template_at_a_terminal_is_a_wrong_path_not_a_retry(trigger_env, fake_vertex: FakeVertex,
                                                                      tmp_path, capsys) -> None:
    code = runner.main(["--submit", "--template", str(tmp_path / "training.json"), "--param", f"data_uri={DATA_URI}"])
    assert code == EXIT_INVALID
    assert "training.json does not exist (expected a compiled JSON file)" in capsys.readouterr().err
    assert fake_vertex.calls == []


def test_a_dry_run_needs_no_credentials_to_list_the_data(trigger_env, fake_vertex: FakeVertex, capsys,
                                                           monkeypatch, tmp_path) -> None:
    from triggers.submission import transport

    # No emulator and no Application Default Credentials: the listing cannot be made.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    monkeypatch.setattr(transport, "_sessions", {})
    assert submit("--param", f"data_uri={DATA_URI}", "--dry-run") == 0
    out, err = capsys.readouterr()
    assert "data_version" not in json.loads(out)["body"]["runtimeConfig"]["parameterValues"]
    assert "data_version is left out of this dry run" in err and "no Google credentials" in err
    # A real submission refuses instead: it must not send a run without the data's version.
    assert submit("--param", f"data_uri={DATA_URI}") == EXIT_INVALID
    assert "no Google credentials" in capsys.readouterr().err and fake_vertex.calls == []
