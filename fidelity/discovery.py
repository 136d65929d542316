"""Requests and replies held to a Google API's discovery document: the one validator every stand-in uses.

A stand-in written by the same hands as the client shares the client's assumptions, so the shape of
what crosses the wire is taken from Google, not from us: the discovery documents that
google-api-python-client 2.x ships (`googleapiclient/discovery_cache/documents/NAME.VERSION.json`,
installed into `.venv/google-discovery` by `make env` from requirements-discovery.lock; it is not
importable beside tfx-bsl, which pins the client below 2, and only its JSON is read here).

For each request: the HTTP method and path name a method of the API; every query parameter is one of
the method's, a dotted sub-field of a message parameter, or a system parameter; every body field
exists in the request schema with a JSON value its type accepts (recursively). A request that fails
gets the 400 INVALID_ARGUMENT Google's front end answers, in its wording. For each reply: every field
exists in the response schema (a stand-in may not invent fields), and payloads that name their type
(`@type`: type.googleapis.com/google.cloud.aiplatform.v1.Endpoint) are checked against that type.

How JSON maps to the schema types follows the proto3 JSON mapping
(https://protobuf.dev/programming-guides/json/): a field may be named in lowerCamelCase or by its
proto name, int64 may be a number or a string, an enum its name or its number (the GAPIC REST
transports send numbers: `$alt=json;enum-encoding=int`), null is the default value. docs/fidelity.md
lists these rules with their sources.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from contract.paths import PROJECT_ROOT

DISCOVERY_DIR_ENV = "MLOPS_DISCOVERY_DIR"
DEFAULT_DISCOVERY_DIR = PROJECT_ROOT / ".venv/google-discovery/googleapiclient/discovery_cache/documents"
# Query parameters every Google API takes (https://cloud.google.com/apis/docs/system-parameters); `$alt` is
# what the GAPIC REST transports send (google/cloud/aiplatform_v1/services/*/transports/rest_base.py).
SYSTEM_PARAMETERS = frozenset({"$alt", "alt", "$.xgafv", "$callback", "callback", "$fields", "fields", "key",
                               "access_token", "oauth_token", "prettyPrint", "$prettyPrint", "quotaUser",
                               "$quotaUser", "upload_protocol", "uploadType", "$userProject", "userProject"})
# The aiplatform REST transports poll long-running operations at /ui/{name} (the first http rule of
# operations.get in rest_base.py), an alias the discovery document does not list: read as v1.
_PATH_ALIASES = (("ui/", "v1/"),)
# Query parameters Google's own client libraries send that a discovery document does not list for that method,
# with the parameter it copies: google-cloud-bigquery's `Client.get_job` (google/cloud/bigquery/client.py,
# `extra_params = {"projection": "full"}`), which every `QueryJob.reload()` calls, sends jobs.list's
# `projection` to jobs.get; BigQuery answers it (the library's system tests run it against BigQuery).
UNLISTED_PARAMETERS: Mapping[str, Mapping[str, str]] = {"bigquery.jobs.get": {"projection": "bigquery.jobs.list"}}
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_DURATION = re.compile(r"-?\d+(\.\d{1,9})?s")
_INTEGER_TEXT = re.compile(r"-?\d+")
_NUMBER_TEXT = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|NaN|-?Infinity")


class DiscoveryNotFound(FileNotFoundError):
    pass


class Invalid(ValueError):
    """What Google answers a request that does not fit the API: status, canonical code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code

    def body(self) -> dict:
        return {"error": {"code": self.status, "status": self.code, "message": str(self)}}


@dataclasses.dataclass(frozen=True)
class Method:
    api: str  # aiplatform.v1
    id: str  # aiplatform.projects.locations.endpoints.patch
    http_method: str
    template: str  # the path as the document gives it, service path included
    pattern: re.Pattern
    parameters: Mapping[str, Mapping[str, Any]]
    request: str | None  # schema id
    response: str | None
    literal_length: int  # how much of the template is not a variable: the more, the more specific


def discovery_dir() -> Path:
    return Path(os.environ.get(DISCOVERY_DIR_ENV) or DEFAULT_DISCOVERY_DIR)


@functools.cache
def load(api: str) -> DiscoveryApi:
    """The API `NAME.VERSION` (aiplatform.v1beta1, bigquery.v2, ...) from its discovery document."""
    path = discovery_dir() / f"{api}.json"
    if not path.is_file():
        raise DiscoveryNotFound(f"{path}: no discovery document for {api}; `make env` installs them "
                                f"(requirements-discovery.lock), or point {DISCOVERY_DIR_ENV} at a folder of them")
    return DiscoveryApi(api, json.loads(path.read_text()))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


class DiscoveryApi:
    def __init__(self, name: str, document: Mapping[str, Any]) -> None:
        self.name = name
        self.schemas: Mapping[str, Mapping[str, Any]] = document["schemas"]
        self.global_parameters = frozenset(document.get("parameters", {}))
        service_path = document.get("servicePath", "")
        self.methods = sorted(self._methods(name, document, service_path), key=lambda m: -m.literal_length)
        # google.cloud.aiplatform.v1.Endpoint -> GoogleCloudAiplatformV1Endpoint (the documents' naming)
        self._schema_by_type = {_type_name(schema_id): schema_id for schema_id in self.schemas}

    @staticmethod
    def _methods(api: str, resource: Mapping[str, Any], service_path: str) -> Iterator[Method]:
        for method in resource.get("methods", {}).values():
            template = service_path + (method.get("flatPath") or method["path"])
            regex, literal = "", 0
            for part in re.split(r"(\{\+?[^}]+\})", template):
                if part.startswith("{+"):
                    regex += r"(.+?)"
                elif part.startswith("{"):
                    regex += r"([^/]+?)"
                else:
                    regex += re.escape(part)
                    literal += len(part)
            yield Method(api=api, id=method["id"], http_method=method["httpMethod"], template=template,
                         pattern=re.compile(regex), parameters=method.get("parameters", {}),
                         request=method.get("request", {}).get("$ref"), response=method.get("response", {}).get("$ref"),
                         literal_length=literal)
        for child in resource.get("resources", {}).values():
            yield from DiscoveryApi._methods(api, child, service_path)

    # --- requests ------------------------------------------------------------------------------------
    def match(self, http_method: str, path: str) -> Method | None:
        """The method a request path names (path without its leading '/', still percent-encoded)."""
        candidates = [path] + [alias + path[len(short):] for short, alias in _PATH_ALIASES if path.startswith(short)]
        for method in self.methods:
            if method.http_method == http_method and any(method.pattern.fullmatch(c) for c in candidates):
                return method
        return None

    def check_request(self, method: Method, query: str, body: bytes) -> None:
        """Raises Invalid, as Google would, for an unknown or mistyped query parameter or body field."""
        for name, value in parse_qsl(query, keep_blank_values=True):
            self._check_query_parameter(method, name, value)
        if not body.strip():
            return
        if method.request is None:
            raise Invalid(400, "INVALID_ARGUMENT", f"{method.id} takes no request body")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise Invalid(400, "INVALID_ARGUMENT", f"Invalid JSON payload received: the body is not JSON ({error})"
                          ) from None
        problem = next(self.problems(payload, {"$ref": method.request}, ""), None)
        if problem:
            raise Invalid(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {problem}")

    def _check_query_parameter(self, method: Method, name: str, value: str) -> None:
        if name in SYSTEM_PARAMETERS or name in self.global_parameters:
            return
        spec = method.parameters.get(name) or method.parameters.get(_camel(name))
        if spec is None and name in UNLISTED_PARAMETERS.get(method.id, {}):
            copied = next(m for m in self.methods if m.id == UNLISTED_PARAMETERS[method.id][name])
            spec = copied.parameters[name]
        if spec is None:
            # A message-typed request field may be bound by its sub-fields (aggregation.alignmentPeriod).
            head, _, rest = name.partition(".")
            if rest and any(key.startswith(f"{_camel(head)}.") for key in method.parameters):
                spec = method.parameters.get(f"{_camel(head)}.{_camel(rest)}")
            if spec is None:
                raise Invalid(400, "INVALID_ARGUMENT",
                              f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                              f"Field '{name}' could not be found in request message.")
        problem = _scalar_problem(value, spec, name, from_query=True)
        if problem:
            raise Invalid(400, "INVALID_ARGUMENT", problem)

    # --- values against schemas -------------------------------------------------------------------------
    def problems(self, value: Any, schema: Mapping[str, Any], at: str) -> Iterator[str]:
        """Every way `value` does not fit `schema` (a discovery schema or {"$ref": id}); `at` its field path."""
        if value is None:
            return  # proto3 JSON: null is the field's default value
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        kind = schema.get("type")
        if kind == "any":
            return
        if kind == "array":
            if not isinstance(value, list):
                yield _invalid(at, "TYPE_MESSAGE" if "$ref" in schema.get("items", {}) else "TYPE_ARRAY", value)
                return
            for index, item in enumerate(value):
                yield from self.problems(item, schema.get("items", {}), f"{at}[{index}]")
            return
        if kind == "object":
            if not isinstance(value, dict):
                yield _invalid(at, "TYPE_MESSAGE", value)
                return
            properties = schema.get("properties")
            if properties is None:  # a map (labels, trafficSplit) or a Struct
                for key, item in value.items():
                    yield from self.problems(item, schema.get("additionalProperties", {"type": "any"}),
                                             f"{at}[{key}]" if at else key)
                return
            for key, item in value.items():
                if key == "@type" and isinstance(item, str):
                    continue
                field = properties.get(key) or properties.get(_camel(key))
                if field is None:
                    where = f" at '{at}'" if at else ""
                    yield f'Unknown name "{key}"{where}: Cannot find field.'
                    continue
                yield from self.problems(item, field, f"{at}.{_snake(key)}" if at else _snake(key))
            return
        problem = _scalar_problem(value, schema, at)
        if problem:
            yield problem

    # --- replies ----------------------------------------------------------------------------------------
    def reply_problems(self, method: Method, reply: Any) -> list[str]:
        """How a stand-in's 2xx reply strays from the method's response schema (and from any typed payload)."""
        if method.response is None:
            return [] if reply in ({}, None, b"") else [f"{method.id} answers an empty body, not {reply!r:.80}"]
        return list(self.problems(reply, {"$ref": method.response}, "")) + list(self._typed_problems(reply, ""))

    def typed(self, type_url: str) -> str | None:
        """The schema id of `type.googleapis.com/google.cloud.aiplatform.v1.X`, if this API defines it."""
        return self._schema_by_type.get(type_url.rsplit("/", 1)[-1])

    def _typed_problems(self, value: Any, at: str) -> Iterator[str]:
        if isinstance(value, dict):
            if isinstance(value.get("@type"), str) and (schema := self.typed(value["@type"])):
                yield from self.problems(value, {"$ref": schema}, at or value["@type"].rsplit(".", 1)[-1])
            for key, item in value.items():
                yield from self._typed_problems(item, f"{at}.{key}" if at else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from self._typed_problems(item, f"{at}[{index}]")


def _type_name(schema_id: str) -> str:
    """GoogleCloudAiplatformV1beta1ModelMonitor -> google.cloud.aiplatform.v1beta1.ModelMonitor."""
    match = re.fullmatch(r"GoogleCloudAiplatform(V1(?:beta1)?)(\w+)", schema_id)
    if match:
        return f"google.cloud.aiplatform.{match[1].lower()}.{match[2]}"
    return schema_id


def _invalid(at: str, type_name: str, value: Any) -> str:
    return f"Invalid value at '{at}' ({type_name}), {json.dumps(value)[:80]}"


def _scalar_problem(value: Any, schema: Mapping[str, Any], at: str, from_query: bool = False) -> str | None:
    """Why a scalar does not fit its schema (type, format, enum), or None. Query values are all text."""
    kind, fmt = schema.get("type"), schema.get("format", "")
    if "enum" in schema:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(schema["enum"]):
            return None
        if isinstance(value, str) and (value in schema["enum"] or (from_query and value.isdigit())):
            return None
        return _invalid(at, "TYPE_ENUM", value) + f"; expected one of {', '.join(schema['enum'])}"
    if kind == "boolean":
        # A query string's booleans are read case-blind: google-cloud-bigquery sends Python's "True"
        # (client.py `_list_rows_from_query_results`: params["formatOptions.useInt64Timestamp"] = True) on every
        # paged read, and BigQuery answers it.
        ok = isinstance(value, bool) or (from_query and isinstance(value, str) and value.lower() in ("true", "false"))
        return None if ok else _invalid(at, "TYPE_BOOL", value)
    if kind == "integer" or fmt in ("int64", "uint64"):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)) or (
            isinstance(value, float) and value.is_integer())
        return None if ok else _invalid(at, f"TYPE_{(fmt or 'int32').upper()}", value)
    if kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and _NUMBER_TEXT.fullmatch(value))
        return None if ok else _invalid(at, f"TYPE_{(fmt or 'double').upper()}", value)
    if kind == "string":
        if not isinstance(value, str):
            return _invalid(at, "TYPE_STRING", value)
        if fmt == "google-datetime" and not _DATETIME.fullmatch(value):
            return _invalid(at, "google.protobuf.Timestamp", value)
        if fmt == "google-duration" and not _DURATION.fullmatch(value):
            return _invalid(at, "google.protobuf.Duration", value)
        if fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                return _invalid(at, "TYPE_BYTES", value)
        return None
    return None


def route(apis: tuple[DiscoveryApi, ...], http_method: str, raw_path: str) -> Method:
    """The method of one of `apis` that a request names; Invalid 404 if none does (as Google answers)."""
    path = urlsplit(raw_path).path.lstrip("/")
    for api in apis:
        method = api.match(http_method, path)
        if method:
            return method
    names = ", ".join(api.name for api in apis)
    raise Invalid(404, "NOT_FOUND", f"{http_method} /{path} is no method of {names} (per its discovery document)")


def api_of(apis: tuple[DiscoveryApi, ...], method: Method) -> DiscoveryApi:
    return next(api for api in apis if api.name == method.api)
