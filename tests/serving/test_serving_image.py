"""The serving image cannot be built here (no Docker engine): check what can be checked without it."""

from __future__ import annotations

import re

from serving_helpers import PROJECT_ROOT, image_command

SERVING = PROJECT_ROOT / "serving"


def test_image_command_is_the_prediction_server() -> None:
    # The tests start this command (serving_helpers.start_server); that the local
    # endpoint starts it too is checked on its running processes in test_serving_router.py.
    assert image_command() == ["python", "-m", "serving.server"]


def test_image_pins_match_the_lock_file() -> None:
    lock = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (PROJECT_ROOT / "requirements.lock").read_text(), re.M))
    normalized_lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}

    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (SERVING / "requirements.txt").read_text(), re.M)

    assert pins, "serving/requirements.txt pins nothing"
    for name, version in pins:
        assert normalized_lock.get(name.lower()) == version, f"{name}=={version} differs from requirements.lock"
