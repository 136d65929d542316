"""Cloud Logging and a Logging sink, on this machine.

`LocalLogging.write(entry)` appends the LogEntry to `LOCAL_DIR/logging/entries.jsonl`
(what Cloud Logging would store) and hands it to each sink whose filter matches. A
`PubSubSink` publishes the entry as a Logging sink does: the LogEntry as JSON in the
message data, to a topic, here on the Pub/Sub emulator (`PUBSUB_EMULATOR_HOST`).

Filters: the subset of the Logging query language a sink on this pipeline uses,
comparisons `FIELD="VALUE"` (or `FIELD=VALUE`) joined by AND and OR, AND binding
tighter; FIELD is a dotted path whose parts may be quoted (`jsonPayload."@type"`).
Anything else is refused with that explanation, never silently matched.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from storage.local_files import file_lock

_COMPARISON = re.compile(r'\s*((?:"[^"]+"|[A-Za-z_@][\w@]*)(?:\.(?:"[^"]+"|[A-Za-z_@][\w@]*))*)\s*=\s*'
                         r'("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')
_PART = re.compile(r'"([^"]+)"|([A-Za-z_@][\w@]*)')


class FilterError(ValueError):
    """A sink filter this local sink does not understand; the message says what it understands."""


class LogFilter:
    def __init__(self, text: str) -> None:
        self.text = text
        self.alternatives: list[list[tuple[list[str], str]]] = []
        for alternative in re.split(r"\s+OR\s+", text.strip()):
            terms = []
            for term in re.split(r"\s+AND\s+", alternative):
                match = _COMPARISON.fullmatch(term.strip().strip("()"))
                if not match:
                    raise FilterError(f"sink filter {text!r}: cannot read {term!r}; this local sink understands "
                                      'FIELD="VALUE" comparisons joined by AND and OR, e.g. '
                                      'logName="projects/P/logs/NAME" OR jsonPayload."@type"="TYPE"')
                path = [quoted or plain for quoted, plain in _PART.findall(match.group(1))]
                value = match.group(2)
                terms.append((path, json.loads(value) if value.startswith('"') else value))
            self.alternatives.append(terms)

    def matches(self, entry: dict[str, Any]) -> bool:
        def field(path: list[str]) -> Any:
            value: Any = entry
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            return value

        return any(all(field(path) == value for path, value in terms) for terms in self.alternatives)


class PubSubSink:
    """A Logging sink to a Pub/Sub topic (`projects/P/topics/T`), created on first use on the emulator."""

    def __init__(self, log_filter: str, topic: str) -> None:
        from google.cloud import pubsub_v1  # only the chain needs it

        self.filter = LogFilter(log_filter)
        self.topic = topic
        self._publisher = pubsub_v1.PublisherClient()
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.AlreadyExists):
            self._publisher.create_topic(name=topic)

    def publish(self, entry: dict[str, Any]) -> str:
        """Publishes the entry; returns the message id."""
        future = self._publisher.publish(self.topic, json.dumps(entry).encode(),
                                         **{"logging.googleapis.com/timestamp": entry.get("timestamp", "")})
        return future.result(timeout=30)


class LocalLogging:
    def __init__(self, folder: Path, sinks: list[PubSubSink] | None = None) -> None:
        self.folder = Path(folder)
        self.sinks = list(sinks or [])

    @property
    def entries_file(self) -> Path:
        return self.folder / "entries.jsonl"

    def write(self, entry: dict[str, Any]) -> list[str]:
        """Stores the entry and forwards it to each matching sink; returns the published message ids."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with file_lock(self.folder / ".lock"), open(self.entries_file, "a") as file:
            file.write(json.dumps(entry) + "\n")
        return [sink.publish(entry) for sink in self.sinks if sink.filter.matches(entry)]

    def entries(self) -> list[dict[str, Any]]:
        if not self.entries_file.exists():
            return []
        return [json.loads(line) for line in self.entries_file.read_text().splitlines() if line.strip()]
