"""Compiled KFP v2 templates: read once per process, their parameters checked before submission.

The template is the contract between a pipeline and its triggers: parameter
names and types come from `root.inputDefinitions.parameters` at run time, never
from a list typed here. Values are checked the way Vertex AI will read them, so
a wrong name or type is refused locally with a message that lists what the
template expects, instead of as a failed run an hour later.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from triggers.submission import transport
from triggers.submission.errors import InvalidRequest, ParameterError, TemplateUnavailable

# ASCII digits only: str.isdigit() also accepts "２" and "²" (which int() then refuses).
SCHEMA_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
# KFP parameter types → the JSON values Vertex accepts for them (bool is not a number here).
PARAMETER_TYPES: dict[str, str] = {
    "STRING": "a string",
    "NUMBER_INTEGER": "a whole number",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "true or false",
    "LIST": "a JSON list",
    "STRUCT": "a JSON object",
}


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    optional: bool
    default: Any = None

    def describe(self) -> str:
        default = f" = {json.dumps(self.default)}" if self.optional else " (required)"
        return f"{self.name}: {self.type}{default}"

    def accepts(self, value: Any) -> bool:
        if self.type == "STRING":
            return isinstance(value, str)
        if self.type == "NUMBER_INTEGER":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.type == "NUMBER_DOUBLE":
            return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if self.type == "BOOLEAN":
            return isinstance(value, bool)
        if self.type == "LIST":
            return isinstance(value, list)
        if self.type == "STRUCT":
            return isinstance(value, dict)
        return False

    def parse_text(self, text: str) -> Any:
        """A command-line value (`--param name=text`) converted to this parameter's type."""
        if self.type == "STRING":
            return text
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ParameterError(f"parameter {self.name}={text!r}: expected {PARAMETER_TYPES[self.type]}") from None
        if self.type == "NUMBER_DOUBLE" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not self.accepts(value):
            raise ParameterError(f"parameter {self.name}={text!r}: expected {PARAMETER_TYPES[self.type]}")
        return value


@dataclasses.dataclass(frozen=True)
class PipelineTemplate:
    uri: str
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    @property
    def parameters(self) -> dict[str, Parameter]:
        declared = self.spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
        return {name: Parameter(name, spec.get("parameterType", "?"), bool(spec.get("isOptional", False)),
                                spec.get("defaultValue"))
                for name, spec in sorted(declared.items())}

    def expected(self) -> str:
        return "; ".join(p.describe() for p in self.parameters.values()) or "no parameters"

    def typed(self, texts: Mapping[str, str]) -> dict[str, Any]:
        """Command-line texts (`--param name=text`) typed by the declared parameters. Unknown names pass
        through as text, so that `check_values` reports them with the list of what is expected."""
        declared = self.parameters
        return {name: declared[name].parse_text(text) if name in declared else text for name, text in texts.items()}

    def check_values(self, values: Mapping[str, Any]) -> None:
        """Raises ParameterError naming every unknown, mistyped or missing parameter."""
        declared = self.parameters
        problems = []
        for name, value in values.items():
            if name not in declared:
                problems.append(f"unknown parameter {name!r}")
            elif not declared[name].accepts(value):
                expected = PARAMETER_TYPES.get(declared[name].type, declared[name].type)
                problems.append(f"parameter {name}={value!r} ({type(value).__name__}): expected {expected}")
        missing = [p.name for p in declared.values() if not p.optional and p.name not in values]
        if missing:
            problems.append(f"required parameter(s) not set: {', '.join(missing)}")
        if problems:
            raise ParameterError(f"template {self.uri} ({self.name}): " + "; ".join(problems)
                                 + f". Expected: {self.expected()}")


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """`NAME=VALUE` command-line items as {name: text}; a malformed or repeated name is refused."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"{flag} {item!r}: expected NAME=VALUE")
        if key in pairs:
            raise InvalidRequest(f"{flag} {key} is given twice ({pairs[key]!r} and {value!r}): give it once")
        pairs[key] = value
    return pairs


def parse_template(uri: str, text: str | bytes) -> PipelineTemplate:
    """Checks that `text` is a KFP v2 PipelineSpec (JSON) whose parameters Vertex reads as parameterValues.

    Anything else is `TemplateUnavailable`: retried, since a deploy may be halfway through writing it."""
    try:
        spec = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TemplateUnavailable(f"template {uri} is not JSON ({error}); expected a compiled KFP PipelineSpec"
                                  ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("pipelineInfo"), dict) or "root" not in spec:
        raise TemplateUnavailable(f"template {uri} is not a KFP PipelineSpec: expected pipelineInfo and root")
    version = SCHEMA_VERSION.fullmatch(str(spec.get("schemaVersion", "")))
    # Before 2.1.0, runtime values go in `parameters` with typed wrappers; every KFP 2 compiler writes 2.1.0+.
    if not version or tuple(int(part) for part in version.groups()) < (2, 1, 0):
        raise TemplateUnavailable(f"template {uri} has schemaVersion {spec.get('schemaVersion')!r}: "
                                  "expected 2.1.0 or later (compile with the KFP v2 SDK)")
    return PipelineTemplate(uri=uri, spec=spec)


def _read(uri: str) -> bytes:
    """The template's bytes. Missing or unreadable: `TemplateUnavailable` (a deploy racing with an event);
    throttled or a server error: `TransientError`."""
    if uri.startswith("gs://"):
        bucket, _, name = uri[len("gs://"):].partition("/")
        url = f"{transport.storage_api_base()}/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"
        response = transport.send("GET", url)
        if not response.ok and response.status_code not in transport.TRANSIENT_STATUSES:
            raise TemplateUnavailable(f"reading template {uri}: HTTP {response.status_code} "
                                      f"{transport.google_error_message(response)}")
        transport.raise_for_status(response, f"reading template {uri}")  # 429/5xx: transient
        return response.content
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise TemplateUnavailable(f"template {uri} does not exist (expected a compiled JSON file)") from None
    except OSError as error:
        raise TemplateUnavailable(f"reading template {uri} failed: {error}") from None


# uri → (monotonic time read, template). Warm invocations skip the read; the
# age limit bounds how long an instance keeps a template that was overwritten.
_cache: dict[str, tuple[float, PipelineTemplate]] = {}


def load_template(uri: str, *, max_age_seconds: float) -> PipelineTemplate:
    now = time.monotonic()
    cached = _cache.get(uri)
    if cached and now - cached[0] < max_age_seconds:
        return cached[1]
    template = parse_template(uri, _read(uri))
    _cache[uri] = (now, template)
    return template
