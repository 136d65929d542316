"""The serving image cannot be built here (no Docker engine): check what can be checked without it."""

from __future__ import annotations

import json
import re

from serving_helpers import PROJECT_ROOT

SERVING = PROJECT_ROOT / "serving"


def test_image_command_is_the_command_tests_and_the_endpoint_start() -> None:
    dockerfile = (SERVING / "Dockerfile").read_text()

    commands = [json.loads(line.removeprefix("CMD ")) for line in dockerfile.splitlines() if line.startswith("CMD ")]

    assert commands == [["python", "-m", "serving.server"]]
    assert '"-m", "serving.server"' in (SERVING / "router.py").read_text()


def test_image_pins_match_the_lock_file() -> None:
    lock = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (PROJECT_ROOT / "requirements.lock").read_text(), re.M))
    normalized_lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}

    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (SERVING / "requirements.txt").read_text(), re.M)

    assert pins, "serving/requirements.txt pins nothing"
    for name, version in pins:
        assert normalized_lock.get(name.lower()) == version, f"{name}=={version} differs from requirements.lock"
