"""The local endpoint's request-response log, in the shape Vertex AI request-response logging writes.

Vertex logs a sample of an endpoint's requests to a BigQuery table, one row per request
with the columns `endpoint`, `deployed_model_id`, `logging_time`, `request_id`,
`request_payload` and `response_payload` (the payloads as JSON text). Here each row is
one JSON line, in append-only files under `STATE_DIR/request_log/`:
`requests-000001.jsonl`, `requests-000002.jsonl`, ... A file is closed once it reaches
`MLOPS_REQUEST_LOG_MAX_BYTES`, and only the newest `MLOPS_REQUEST_LOG_MAX_FILES` are
kept, so the log is bounded. Only answered predictions (200) are logged, as on Vertex.

The payloads are written as they went over the wire (the request body is not parsed
again): the cost is one JSON encoding of two strings and one write per request.
Readers (the monitor) take the lines of every file in order; a line cut short by a
crash is skipped by them, never fixed up here.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from serving.endpoint import EndpointError

REQUEST_LOG_DIR = "request_log"
_FILE = re.compile(r"requests-(\d{6,})\.jsonl")


class RequestLogConfigError(EndpointError):
    """A request-log variable holds something unusable; the message names it and what was expected."""


@dataclasses.dataclass(frozen=True)
class RequestLogSettings:
    enabled: bool = True
    max_file_bytes: int = 64 * 1024 * 1024
    max_files: int = 8
    # Vertex's samplingRate: the share of requests logged (1.0: every one).
    sampling_rate: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RequestLogSettings:
        environ = os.environ if environ is None else environ
        defaults = cls()
        switch = environ.get("MLOPS_REQUEST_LOG", "on").strip().lower()
        if switch not in ("on", "off"):
            raise RequestLogConfigError(f"MLOPS_REQUEST_LOG={switch!r}: expected on or off")

        def number(name: str, default: float, kind: type, low: float, high: float) -> Any:
            text = environ.get(name, "").strip()
            if not text:
                return default
            try:
                value = kind(text)
            except ValueError:
                value = None
            if value is None or not low <= value <= high:
                raise RequestLogConfigError(f"{name}={text!r}: expected {kind.__name__} from {low} to {high}")
            return value

        return cls(enabled=switch == "on",
                   max_file_bytes=number("MLOPS_REQUEST_LOG_MAX_BYTES", defaults.max_file_bytes, int, 4096, 2**40),
                   max_files=number("MLOPS_REQUEST_LOG_MAX_FILES", defaults.max_files, int, 1, 10_000),
                   sampling_rate=number("MLOPS_REQUEST_LOG_SAMPLING_RATE", defaults.sampling_rate, float, 0.0, 1.0))


def log_files(folder: Path) -> list[Path]:
    """The log's files, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    numbered = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _FILE.fullmatch(path.name))]
    return [path for _, path in sorted(numbered)]


class RequestLog:
    """Appends one row per logged request; rotates and prunes by size. Used from one thread (the router's loop)."""

    def __init__(self, folder: Path, endpoint: str, settings: RequestLogSettings) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.settings = settings
        existing = log_files(self.folder)
        self._number = int(_FILE.fullmatch(existing[-1].name).group(1)) if existing else 0
        self._request_id = 0
        self._sampler = random.Random()
        self._file = None
        self._size = 0
        self._open_next()

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        self._number += 1
        # Never appended to after a restart: a file a crash cut short stays as it was.
        self._file = open(self.folder / f"requests-{self._number:06d}.jsonl", "xb", buffering=0)  # noqa: SIM115
        self._size = 0
        for old in log_files(self.folder)[:-self.settings.max_files]:
            old.unlink(missing_ok=True)

    def write(self, deployed_model_id: str, request_body: bytes, response_body: bytes) -> None:
        if self.settings.sampling_rate < 1.0 and self._sampler.random() >= self.settings.sampling_rate:
            return
        self._request_id += 1
        row = orjson.dumps({
            "endpoint": self.endpoint, "deployed_model_id": deployed_model_id,
            "logging_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
            "request_id": f"{os.getpid()}-{self._request_id}",
            "request_payload": [request_body.decode("utf-8", errors="replace")],
            "response_payload": [response_body.decode("utf-8", errors="replace")],
        }, option=orjson.OPT_APPEND_NEWLINE)
        if self._size and self._size + len(row) > self.settings.max_file_bytes:
            self._open_next()
        self._file.write(row)
        self._size += len(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """Every complete row of the log, oldest first; a line a crash cut short is skipped."""
    for path in log_files(folder):
        with open(path, "rb") as file:
            for line in file:
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    yield row
