"""Every command of README.md's deploy walk-through, run as written, in order, as a new user would: in a
fresh working directory (the sample data linked in, local state of its own), `endpoint serve &` in the
background. It checks what the README says each step leaves: v1 alone at 100%, v2 a 10% canary beside
it, each replay's traffic reaching both with its labels written, and the progressive canary going
10% -> 25% -> 50% -> 100%, one decision run per step, each applied to the endpoint."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT
from serving.client import LocalEndpoint

pytestmark = pytest.mark.e2e


def walkthrough_commands() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", readme, re.S)
    assert block, "README.md has no walk-through block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    commands = walkthrough_commands()
    assert commands[0].startswith("python runner.py --run local") and "canary replay" in " ".join(commands)
    (tmp_path / "data").symlink_to(PROJECT_ROOT / "data")
    env = {**os.environ, "MLOPS_LOCAL_DIR": str(tmp_path / "local"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    endpoint = LocalEndpoint(tmp_path / "local" / "endpoint")
    outputs, server, decisions = [], None, []
    try:
        for command in commands:
            argv = shlex.split(command.removesuffix("&").strip())
            assert argv[:2] == ["python", "runner.py"], command
            argv = [sys.executable, str(PROJECT_ROOT / "runner.py"), *argv[2:]]
            if command.endswith("&"):
                server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
                deadline = time.monotonic() + 120
                while not endpoint.router_url() or {m["state"] for m in endpoint.describe()["deployedModels"]} != {
                        "ready"}:
                    assert server.poll() is None and time.monotonic() < deadline, "endpoint serve did not start"
                    time.sleep(0.2)
                continue
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            outputs.append((command, done.stdout))
            if command == commands[0]:
                assert re.search(r'deployed: version 1 \(first\) as deployed model 1; split \{"1": 100\}', done.stdout)
            if "seed=7" in command:
                assert re.search(r'deployed: version 2 \(canary\) as deployed model 2; split \{"1": 90, "2": 10\}',
                                 done.stdout), done.stdout[-2000:]
            if "canary replay" in command:
                replayed = re.search(r"replayed (\d+) requests in [\d.]+ s: 0 errors; .*; (\d+) labels written",
                                     done.stdout)
                assert replayed and replayed.group(1) == replayed.group(2), done.stdout[-1000:]
                assert "'2'" in done.stdout.rsplit("answered by", 1)[1]  # the canary got traffic
            if "canary_decision" in command:
                verdict = re.search(r"decide-canary: Output=(\w+)", done.stdout).group(1)
                decisions.append((verdict, endpoint.describe()["trafficSplit"]))
                assert verdict != "rollback", done.stdout[-3000:]
        steps = [("advance", {"1": 75, "2": 25}), ("advance", {"1": 50, "2": 50}), ("promote", {"2": 100})]
        assert decisions == steps, outputs[-2][1][-3000:]
        report = Path(re.findall(r"^report: (\S+)$", outputs[-2][1], re.M)[-1])
        assert "Canary decision for chicago-taxi-big-tipper" in report.read_text() and "PROMOTE" in report.read_text()
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
