"""Deploy folders: what each function uploads, what it imports on a cold start, and the docs that deploy it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from trigger_helpers import PROJECT_ROOT

from triggers.package import FUNCTIONS, build, vendored_modules

# Importing any of these on a cold start costs seconds or tens of MB.
HEAVY_MODULES = ("tensorflow", "kfp", "google.cloud.aiplatform", "vertexai", "apache_beam", "pandas", "numpy",
                 "grpc", "google.cloud.storage", "google.api_core", "yaml")
# Found by a library's optional import, not needed: urllib3 tries `backports.zstd`, and the `backports`
# namespace package of this environment happens to belong to backports.tarfile.
OPTIONAL_PROBES = {"backports.tarfile"}

_PROBE = """
import json, sys
before = set(sys.modules)
import main
import triggers
loaded = sorted(set(sys.modules) - before)
files = {m.__file__ for name in loaded if (m := sys.modules[name]) is not None and getattr(m, "__file__", None)}
import importlib.metadata, pathlib
owners = set()
for dist in importlib.metadata.distributions():
    for file in dist.files or ():
        if str(dist.locate_file(file)) in files:
            owners.add(dist.metadata["Name"].lower().replace("_", "-"))
print(json.dumps({"triggers": triggers.__file__, "loaded": loaded, "distributions": sorted(owners)}))
"""


def _closure(requirements: list[str]) -> set[str]:
    """The distributions a requirements list installs, following declared dependencies (without extras)."""
    import importlib.metadata

    seen: set[str] = set()
    pending = [Requirement(line).name for line in requirements]
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_deploy_folder_holds_the_function_and_the_shared_code_only(tmp_path: Path, name: str) -> None:
    folder = build(name, tmp_path)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    shared = [str(path) for path in vendored_modules()]
    assert "triggers/submission/pipeline_jobs.py" in shared and "contract/paths.py" in shared
    assert not any(path.startswith(("triggers/cli", "triggers/package", "serving", "trainer")) for path in shared)
    assert files == sorted(["main.py", "requirements.txt", *shared])
    requirements = (folder / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", pin) for pin in pins), pins
    lock = set((PROJECT_ROOT / "requirements.lock").read_text().split())
    assert set(pins) <= lock, "function pins must match requirements.lock"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_cold_start_imports_only_what_the_folder_declares(tmp_path: Path, trigger_env: dict, name: str) -> None:
    folder = build(name, tmp_path)
    # Run from the deploy folder, as Cloud Run functions do: its own copy of `triggers` must win.
    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=folder, env={**trigger_env, "PATH": "/usr/bin"},
                           capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(probe.stdout.splitlines()[-1])
    assert Path(report["triggers"]).parent.parent == folder
    heavy = [m for m in report["loaded"] if m.startswith(HEAVY_MODULES)]
    assert heavy == []
    requirements = [line for line in (folder / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    undeclared = set(report["distributions"]) - _closure(requirements) - OPTIONAL_PROBES
    assert undeclared == set(), f"imported but not installed by requirements.txt: {undeclared}"


def test_the_docs_deploy_lines_name_real_folders_and_entry_points() -> None:
    docs = (PROJECT_ROOT / "docs" / "triggers.md").read_text()
    commands = re.findall(r"gcloud functions deploy (?:[^\n]*\\\n)*[^\n]*", docs)
    assert len(commands) >= len(FUNCTIONS)
    deployed = set()
    for command in commands:
        source = re.search(r"--source=build/functions/(\w+)", command)
        entry_point = re.search(r"--entry-point=(\w+)", command)
        assert source and entry_point, command
        assert entry_point.group(1) in FUNCTIONS[source.group(1)].entry_points, command
        assert "--gen2" in command and "--env-vars-file=" in command, command
        deployed.add(source.group(1))
    assert deployed == set(FUNCTIONS)
    assert "python -m triggers.package --all" in docs
