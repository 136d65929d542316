"""The console as a person meets it: `python runner.py console` in its own process over a local state; and what a
screenshot of a page shows."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from contract.paths import PROJECT_ROOT


class ConsoleProcess:
    """`python runner.py console --port 0 --local-dir DIR`, and the URL it says it serves on."""

    def __init__(self, local_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "runner.py"), "console", "--port", "0",
                                             "--local-dir", str(local_dir)], cwd=PROJECT_ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url:
            assert self.process.poll() is None, f"the console exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"the console did not start:\n{self.log()}"
            first = self.log().split("\n", 1)[0]
            if first.startswith("local console on http://"):
                self.url = first.split()[3]
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextlib.contextmanager
def running_console(local_dir: Path, log_path: Path) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(local_dir, log_path)
    try:
        yield console
    finally:
        console.stop()


def painted_share(png: Path) -> float:
    """The share of a screenshot's pixels that are not the page's white background."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((pixels < 245).any(axis=2).mean())


def pixels_near(png: Path, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((abs(pixels - colour).max(axis=2) <= tolerance).sum())
