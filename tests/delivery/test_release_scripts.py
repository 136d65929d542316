"""The release's own plumbing: release/deploy_functions.sh and delivery/impersonate.py.

gcloud cannot reach Google Cloud from here: the deploy script runs against a stand-in `gcloud` on
PATH that records its calls and answers `functions list` as Cloud Functions would for the labels
Terraform sets. The zips it uploads are real and are checked. The impersonation cannot mint a token
here (no IAM API): its test checks the credentials every client library would be handed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT
from release import impersonate
from release.terraform_model import Terraform
from triggers.package import FUNCTIONS, build

SCRIPT = PROJECT_ROOT / "release" / "deploy_functions.sh"
FAKE_GCLOUD = """#!/usr/bin/env bash
# Records each call; `storage cp` keeps a copy of what it uploads; `functions list` answers from
# $FUNCTIONS_LISTED/KIND (one function name per line; none when the file is missing).
printf '%s\\n' "$*" >> "$GCLOUD_LOG"
if [[ $1 == storage && $2 == cp ]]; then mkdir -p "$UPLOADS"; cp "$3" "$UPLOADS/$(basename "$3")"; fi
if [[ $1 == functions && $2 == list ]]; then
  kind=$(printf '%s\\n' "$@" | sed -n 's/^--filter=labels.mlops-function=//p')
  cat "$FUNCTIONS_LISTED/$kind" 2>/dev/null || true
fi
"""


def _deployed_names(terraform: Terraform) -> dict[str, list[str]]:
    """What Terraform deploys per function kind, as `functions list` names it."""
    deployments = {"new_data": ["new-data"], "drift_alert": ["drift-alert"], "schedule": [
        "schedule-" + name.replace("_", "-") for name in terraform.locals()["schedules"]]}
    return {kind: [f"projects/p/locations/us-central1/functions/mlops-{name}" for name in names]
            for kind, names in deployments.items()}


def _run(tmp_path: Path, functions_by_kind: dict, with_folders: bool = True) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    (work / "release").mkdir(parents=True)
    if with_folders:
        for name in FUNCTIONS:
            build(name, work / "build" / "functions")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    listed = tmp_path / "listed"
    listed.mkdir()
    for kind, names in functions_by_kind.items():
        (listed / kind).write_text("".join(f"{name}\n" for name in names))
    environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GCLOUD_LOG": str(tmp_path / "calls"),
               "UPLOADS": str(tmp_path / "uploads"), "FUNCTIONS_LISTED": str(listed)}
    return subprocess.run(["bash", str(SCRIPT), "p", "us-central1", "p-templates", "abc123",
                           "deployer@p.iam.gserviceaccount.com"], cwd=work, env=environ, capture_output=True,
                          text=True, timeout=60)


def test_deploys_each_kinds_code_to_every_function_terraform_made_for_it_as_the_deployer(tmp_path, terraform):
    names = _deployed_names(terraform)
    result = _run(tmp_path, names)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    deploys = [call for call in calls if call.startswith("functions deploy")]
    assert len(deploys) == sum(len(v) for v in names.values()) == 2 + len(terraform.locals()["schedules"])
    for kind, full_names in names.items():
        source = f"gs://p-templates/functions/{kind}/abc123.zip"
        assert any(call.startswith("storage cp ") and call.endswith(f"{kind}.zip {source} --project=p --quiet")
                   for call in calls), calls
        for full_name in full_names:
            assert (f"functions deploy {full_name.rsplit('/', 1)[1]} --gen2 --project=p --region=us-central1 "
                    f"--source={source} --impersonate-service-account=deployer@p.iam.gserviceaccount.com --quiet"
                    ) in deploys
        with zipfile.ZipFile(tmp_path / "uploads" / f"{kind}.zip") as archive:
            listed = set(archive.namelist())
        assert {"main.py", "requirements.txt", "triggers/config.py", "contract/paths.py"} <= listed, listed
    assert all("--impersonate-service-account=deployer@" in call for call in calls if call.startswith("functions"))


def test_a_kind_without_a_deployed_function_stops_the_release_with_the_reason(tmp_path, terraform):
    names = _deployed_names(terraform)
    del names["drift_alert"]
    result = _run(tmp_path, names)
    assert result.returncode == 1
    assert "no function labelled mlops-function=drift_alert in p/us-central1: terraform apply" in result.stderr


def test_without_make_functions_it_says_so(tmp_path):
    result = _run(tmp_path, {}, with_folders=False)
    assert result.returncode == 2 and "run `make functions` first" in result.stderr


def test_the_label_the_script_reads_is_the_one_terraform_sets(terraform):
    [function] = terraform.resources("google_cloudfunctions2_function")
    assert "mlops-function = each.value.kind" in " ".join(function.file.read_text().split())
    assert "labels.mlops-function=" in SCRIPT.read_text()


def test_impersonation_hands_every_client_credentials_of_the_target(monkeypatch):
    import google.auth
    from google.auth import impersonated_credentials
    from google.auth.credentials import AnonymousCredentials

    source = AnonymousCredentials()
    monkeypatch.setattr(google.auth, "default", lambda **_: (source, "p"))  # the build's own (no metadata server)
    with impersonate.impersonating("monitoring@p.iam.gserviceaccount.com"):
        credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials.service_account_email == "monitoring@p.iam.gserviceaccount.com"
    assert isinstance(credentials._source_credentials, AnonymousCredentials) and project == "p"
    assert google.auth.default()[0] is source  # restored after the block


@pytest.mark.parametrize(("argv", "expected"), [
    ([], "usage: python -m release.impersonate"),
    (["monitoring@p.iam.gserviceaccount.com", "python", "-m", "monitoring"], "usage:"),
    (["monitoring@p.iam.gserviceaccount.com", "--", "gcloud", "-m", "x"], "usage:"),
    (["monitoring", "--", "python", "-m", "monitoring"], "'monitoring' is not a service account email"),
])
def test_impersonate_refuses_what_it_cannot_run(argv, expected, capsys):
    assert impersonate.main(argv) == 2
    assert expected in capsys.readouterr().err


def test_impersonate_runs_the_module_with_its_arguments_and_returns_its_exit_code(tmp_path):
    code = ("import sys\nfrom release import impersonate\n"
            "sys.exit(impersonate.main(['monitoring@p.iam.gserviceaccount.com', '--', 'python', '-m', 'json.tool', "
            f"'{tmp_path / 'missing.json'}']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    # Without credentials to start from, it says so before running anything.
    assert result.returncode == 1 and "needs credentials of its own" in result.stderr, result.stderr
