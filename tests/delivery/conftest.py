"""Session fixtures for the delivery checks: terraform/ parsed once, checkov run once (seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from contract.paths import PROJECT_ROOT
from release.permissions import GoogleIam, PermissionMap, Proof
from release.terraform_model import TERRAFORM_DIR, Terraform
from tests.conftest import require_or_skip

# `make tools` builds checkov's own venv here (its pins conflict with requirements.lock).
CHECKOV = PROJECT_ROOT / ".tools" / "checkov" / "bin" / "checkov"


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    return Terraform.load()


@pytest.fixture(scope="session")
def google_iam() -> GoogleIam:
    """Google's IAM data (roles.json, methods.json): ../shared/data/gcp beside the clone, or release/gcp_data."""
    return GoogleIam.load()


@pytest.fixture(scope="session")
def permission_map() -> PermissionMap:
    return PermissionMap.load()


@pytest.fixture(scope="session")
def proof(permission_map: PermissionMap, google_iam: GoogleIam, terraform: Terraform) -> Proof:
    return Proof(permission_map, google_iam, terraform.locals())


@pytest.fixture(scope="session")
def checkov_report() -> dict:
    """checkov's JSON report over terraform/ (every env, so the modules are checked as each env calls them)."""
    binary = str(CHECKOV) if CHECKOV.is_file() else shutil.which("checkov")
    require_or_skip(binary is not None, "checkov is not installed: `make tools` builds it in .tools/checkov")
    # Offline and self-contained: no external module downloads, no guideline look-ups on the network.
    environ = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run([binary, "--directory", str(TERRAFORM_DIR), "--framework", "terraform",
                             "--skip-download", "--output", "json", "--soft-fail"],
                            capture_output=True, text=True, timeout=300, env=environ)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not print a JSON report (exit {result.returncode}):\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    reports = report if isinstance(report, list) else [report]
    [terraform_report] = [entry for entry in reports if entry.get("check_type") == "terraform"]
    return terraform_report
