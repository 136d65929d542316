"""Runs every benchmark module (or those named: `python -m bench serving`).

Each `bench/bench_<name>.py` has a `main() -> None` that prints its figures,
as ratios against a baseline measured in the same process where a ratio fits.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path


def describe_machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, {cpu}"


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    print(f"machine: {describe_machine()}")
    for name in names:
        print(f"\n=== {name}")
        started = time.perf_counter()
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"=== {name} done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
