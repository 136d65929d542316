"""The triggers bench's cold-start figures: each child's own peak memory, whoever starts it."""

from __future__ import annotations

import os
from pathlib import Path

from bench.bench_triggers import cold_process

BALLAST_MB = 512


def test_cold_start_peak_rss_is_the_childs_own_not_its_parents(tmp_path: Path) -> None:
    # A parent as big as the bench process after the serving bench loaded TensorFlow:
    # the rusage that os.wait4 reports for a child starts from the parent's peak.
    ballast = bytearray(BALLAST_MB * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # make every page resident

    _, small_mb = cold_process("pass", tmp_path, {"PATH": os.environ["PATH"]}, runs=1)
    _, bigger_mb = cold_process("ballast = bytearray(64 * 2**20); ballast[::4096] = b'1' * (16 * 1024)", tmp_path,
                                {"PATH": os.environ["PATH"]}, runs=1)

    assert ballast[4096] == 1
    assert 3 < small_mb < 64, small_mb  # a bare interpreter, far below the parent's 512 MB
    assert 60 < bigger_mb - small_mb < 70, (small_mb, bigger_mb)  # what the child itself touched
