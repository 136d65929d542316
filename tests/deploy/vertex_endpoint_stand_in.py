"""A local stand-in for the Vertex AI Endpoints REST API (and the Model Registry calls deploy makes),
for the real google-cloud-aiplatform client (REST transport). Mocked, because no Google Cloud is
reachable here: only the server side of the API. Requests and replies are held to aiplatform.v1's
discovery document (tests/stand_in_http.StandInServer); the endpoints are kept as the official
`google.cloud.aiplatform_v1.types.Endpoint` (a create or an update is parsed into it, so every field Vertex
defines is accepted and kept, and nothing else), and every reply is built from the official types.

Vertex's rules it enforces, each with its source (docs/fidelity.md, "Endpoints and Model Registry"):
- a traffic split's values sum to 100 and its keys are deployed model ids, `"0"` only in a deploy, where it
  names the model being deployed (`DeployModelRequest.traffic_split`, `Endpoint.traffic_split`);
- undeploying a model that keeps traffic is refused, unless the request's split unassigns it or it is the
  last deployed model (`UndeployModelRequest.traffic_split`);
- deploy, undeploy and create are long-running operations, answered not done and finished when polled
  (`GET /ui/{operation}`, where the aiplatform REST transport polls);
- an update carrying a stale `etag` is refused with ABORTED (`Endpoint.etag`; AIP-154);
- request-response logging (`predictRequestResponseLoggingConfig`): a sampling rate in (0, 1]; a full table
  reference needs its dataset to exist and the table not to (`BigQueryDestination.output_uri`); a bare
  project gets dataset `logging_<display name>_<id>`, a dataset a table `request_response_logging`
  (`PredictRequestResponseLoggingConfig.bigquery_destination`).

Every request is recorded (method, path, body) for the tests to compare with what Vertex expects.
Predictions stand in for the serving container: a deployed version answers the instances its
smoke-test record holds with the recorded predictions (`wrong_answers` makes a version answer otherwise),
any other instance with 0.5. Each prediction is counted per deployed model, and Cloud Monitoring's
`timeSeries.list` (same server, `/v3/projects/P/timeSeries`) answers those counts, the errors of
versions in `failing`, and `latency_ms` per version, refusing a query of another shape.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from contract.artifacts import SMOKE_TEST_FILE
from deploy.monitoring import MONITORING_API_ENV
from storage import uri as storage_uri
from tests.pipeline.model_registry_stand_in import LOCATION, PARENT, PROJECT, FakeModelRegistry
from tests.stand_in_http import aiplatform_pointed_at, google_error, message_json, operation_json

# The update masks a PATCH of an endpoint may name here, in either JSON form (FieldMask's JSON is camelCase).
UPDATABLE = {"labels", "traffic_split", "display_name", "description", "predict_request_response_logging_config"}
LOG_TABLE = "request_response_logging"  # PredictRequestResponseLoggingConfig: the table Vertex names itself


class FakeVertex(FakeModelRegistry):
    APIS = ("aiplatform.v1", "monitoring.v3")

    def __init__(self) -> None:
        from google.cloud.aiplatform_v1 import types

        self.types = types
        self.requests: list[tuple[str, str, dict]] = []
        self.endpoints: dict[str, types.Endpoint] = {}
        self.operations: dict[str, dict] = {}
        self.polled: list[str] = []
        self.wrong_answers: set[str] = set()  # versions whose "container" answers differently
        self.failing: set[str] = set()  # versions whose "container" answers 500
        self.latency_ms: dict[str, float] = {}  # per version, as Cloud Monitoring reports it
        self.served: dict[str, dict[str, int]] = {}  # deployed id -> {"requests", "errors"}
        self.monitoring_queries: list[dict[str, str]] = []
        # BigQuery as request-response logging sees it: datasets that exist (per environment, made by Terraform)
        # and tables that exist (Vertex creates a logging table; it refuses one that exists).
        self.bigquery_datasets: set[str] = {f"{PROJECT}.mlops_logs"}
        self.bigquery_tables: set[str] = set()
        # Run once, between answering the next read of an endpoint and sending that answer: a competing writer.
        self._after_next_read: list[Callable[[], None]] = []
        # Called with (endpoint name, deployed model id, instances, predictions) for each answered request, as
        # the endpoint's request-response logging writes them (tests/deploy/canary_data.VertexRequestLogging).
        self.request_logging: Callable[[str, str, list, list], None] | None = None
        self._ids = itertools.count(1001)
        self._etags = itertools.count(1)
        self._random = random.Random(3)
        super().__init__()

    def model_message(self, version: dict):
        # A custom-container model, as Vertex describes one: it deploys on dedicated machines.
        model = super().model_message(version)
        model.supported_deployment_resources_types = [
            self.types.Model.DeploymentResourcesType.DEDICATED_RESOURCES]
        return model

    def after_next_read(self, action: Callable[[], None]) -> None:
        """`action` runs once, after the next `GET` of an endpoint is answered and before the answer is sent:
        a write another client makes between a reader's read and its write."""
        self._after_next_read.append(action)

    # --- dispatch ------------------------------------------------------------------------------
    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        url = urlsplit(path)
        route = unquote(url.path)
        payload = json.loads(body) if body else {}
        if "/endpoints" in route or "/operations/" in route or route.endswith(":mergeVersionAliases"):
            mask = parse_qs(url.query).get("updateMask", [""])[0]
            self.requests.append((method, route + (f"?updateMask={mask}" if mask else ""), payload))
        if route == f"/v3/projects/{PROJECT}/timeSeries":
            return self._time_series({key: values[0] for key, values in parse_qs(url.query).items()})
        if "/operations/" in route:
            return self._poll(route)
        if route.endswith(":mergeVersionAliases"):
            return self._merge_aliases(route, payload)
        if "/endpoints" not in route:
            return super()._answer(method, path, body, headers)
        base = f"/v1/{PARENT}/endpoints"
        if route == base and method == "GET":
            wanted = parse_qs(url.query).get("filter", [""])[0]
            found = [e for e in self.endpoints.values() if f'display_name="{e.display_name}"' == wanted]
            return 200, message_json(self.types.ListEndpointsResponse(endpoints=found))
        if route == base and method == "POST":
            return self._create(payload)
        endpoint_id, _, verb = route.removeprefix(base + "/").partition(":")
        if endpoint_id not in self.endpoints:
            return 404, google_error(404, "NOT_FOUND", f"endpoint {endpoint_id} not found")
        endpoint = self.endpoints[endpoint_id]
        if method == "GET" and not verb:
            reply = message_json(endpoint)
            while self._after_next_read:
                self._after_next_read.pop(0)()
            return 200, reply
        if method == "PATCH" and not verb:
            return self._update(endpoint, payload, parse_qs(url.query).get("updateMask", [""])[0])
        if verb == "deployModel":
            return self._deploy(endpoint, payload)
        if verb == "undeployModel":
            return self._undeploy(endpoint, payload)
        if verb == "predict":
            return self._predict(endpoint, payload)
        return 405, google_error(405, "METHOD_NOT_ALLOWED", f"{method} {route} is not stood in for")

    def calls(self, since: int = 0) -> list[str]:
        """The recorded requests as `METHOD path`, ids elided (E endpoint, O operation, M@V model version),
        with what decides the call: the split of a deploy or update, the aliases of a merge."""
        shown = []
        for method, route, body in self.requests[since:]:
            path = re.sub(r"^/(v1|ui)/projects/[^/]+/locations/[^/]+/", "", route)
            path = re.sub(r"operations/\d+", "operations/O", re.sub(r"endpoints/\d+", "endpoints/E", path))
            path = re.sub(r"models/\d+@\w+", "models/M@V", path)
            if path.endswith(":deployModel") or path.endswith("updateMask=trafficSplit"):
                path += f" split={_split_shape(body.get('trafficSplit', {}))}"
            elif path.endswith("updateMask=labels"):
                path += " labels=" + ",".join(sorted(key.removeprefix("mlops-") for key in body.get("labels", {})))
            elif path.endswith(":mergeVersionAliases"):
                path += " " + ",".join(body["versionAliases"])
            if path == "endpoints/E" and method == "GET":
                continue  # reads: the client re-reads the endpoint before most calls
            if shown and shown[-1].split(" x")[0] == f"{method} {path}" and path.endswith(":predict"):
                count = int(shown[-1].split(" x")[1]) if " x" in shown[-1] else 1
                shown[-1] = f"{method} {path} x{count + 1}"
                continue
            shown.append(f"{method} {path}")
        return shown

    # --- long-running operations ------------------------------------------------------------------
    def _operation(self, resource: str, response) -> tuple[int, dict]:
        # Answered not done, and done once polled, as on Vertex: the client must poll (create, deploy and
        # undeploy return google.longrunning.Operation: EndpointService in aiplatform_v1).
        name = f"{resource}/operations/{next(self._ids)}"
        self.operations[name] = operation_json(name, response)
        return 200, operation_json(name)

    def _poll(self, route: str) -> tuple[int, dict]:
        # The aiplatform REST transport polls at /ui/{name} (its first http rule for operations.get:
        # google/cloud/aiplatform_v1/services/endpoint_service/transports/rest_base.py).
        name = route.removeprefix("/v1/").removeprefix("/ui/")
        if name not in self.operations:
            return 404, google_error(404, "NOT_FOUND", f"operation {name} not found")
        self.polled.append(name)
        return 200, self.operations[name]

    def _touch(self, endpoint) -> None:
        # Endpoint.etag: "Used to perform consistent read-modify-write updates": every change makes a new one.
        endpoint.etag = f"etag-{next(self._etags)}"

    # --- endpoints --------------------------------------------------------------------------------
    def _create(self, payload: dict) -> tuple[int, dict]:
        endpoint = self.types.Endpoint.from_json(json.dumps(payload))
        endpoint_id = str(next(self._ids))
        endpoint.name = f"{PARENT}/endpoints/{endpoint_id}"
        # createTime: without it the SDK takes the resource as partly read and re-reads it before each use.
        endpoint.create_time = datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)
        problem = self._claim_log_table(endpoint, endpoint_id, None)
        if problem:
            return 400, google_error(400, "INVALID_ARGUMENT", problem)
        self._touch(endpoint)
        self.endpoints[endpoint_id] = endpoint
        return self._operation(endpoint.name, endpoint)

    def _claim_log_table(self, endpoint, endpoint_id: str, current_table: str | None) -> str | None:
        """Vertex's rules for the logging destination (BigQueryDestination.output_uri: "When only the project is
        specified, the Dataset and Table is created. When the full table reference is specified, the Dataset must
        exist and table must not exist"); records the table it now logs to. A problem as Vertex would name it."""
        config = endpoint.predict_request_response_logging_config
        if not config.enabled:
            return None
        if not 0 < config.sampling_rate <= 1:  # PredictRequestResponseLoggingConfig.sampling_rate: range(0,1]
            return f"request-response logging sampling rate {config.sampling_rate} is not in (0, 1]"
        uri = config.bigquery_destination.output_uri
        parts = uri.removeprefix("bq://").split(".") if uri.startswith("bq://") else []
        if not 1 <= len(parts) <= 3 or not all(parts):
            return f"BigQuery destination {uri!r} is not bq://PROJECT[.DATASET[.TABLE]]"
        if len(parts) == 1:
            dataset = f"{parts[0]}.logging_{re.sub(r'[^A-Za-z0-9_]', '_', endpoint.display_name)}_{endpoint_id}"
            self.bigquery_datasets.add(dataset)
            parts = dataset.split(".")
        table = ".".join(parts) if len(parts) == 3 else f"{'.'.join(parts)}.{LOG_TABLE}"
        if table.rsplit(".", 1)[0] not in self.bigquery_datasets:
            return f"BigQuery dataset {table.rsplit('.', 1)[0]} not found: create it before logging to it"
        if table in self.bigquery_tables and table != current_table:
            return f"BigQuery table {table} already exists: request-response logging creates its table"
        self.bigquery_tables.add(table)
        return None

    def log_table(self, endpoint) -> str | None:
        """The table an endpoint logs to (as the rules above name it), or None."""
        config = endpoint.predict_request_response_logging_config
        if not config.enabled:
            return None
        parts = config.bigquery_destination.output_uri.removeprefix("bq://").split(".")
        if len(parts) == 1:
            endpoint_id = endpoint.name.rsplit("/", 1)[1]
            parts = [parts[0], f"logging_{re.sub(r'[^A-Za-z0-9_]', '_', endpoint.display_name)}_{endpoint_id}"]
        return ".".join(parts) if len(parts) == 3 else f"{'.'.join(parts)}.{LOG_TABLE}"

    def _check_split(self, split: dict, allowed: set[str]) -> str | None:
        if any(key not in allowed for key in split):
            return f"traffic split keys {sorted(split)} are not all deployed model ids (allowed {sorted(allowed)})"
        if split and sum(int(v) for v in split.values()) != 100:
            return f"traffic split {split} does not sum to 100"
        return None

    def _update(self, endpoint, payload: dict, mask: str) -> tuple[int, dict]:
        if payload.get("etag") and payload["etag"] != endpoint.etag:
            # AIP-154 (resource freshness): a stale etag is refused with ABORTED (HTTP 409).
            return 409, google_error(409, "ABORTED", f"etag {payload['etag']} is stale (now {endpoint.etag})")
        fields = {_snake(field) for field in mask.split(",")} if mask else set()
        if not fields or not fields <= UPDATABLE:
            return 400, google_error(400, "INVALID_ARGUMENT", f"update mask {mask!r} is not stood in for")
        sent = self.types.Endpoint.from_json(json.dumps(payload))
        if "traffic_split" in fields:
            split = dict(sent.traffic_split)
            problem = self._check_split(split, {m.id for m in endpoint.deployed_models})  # "0" only in a deploy
            if problem:
                return 400, google_error(400, "INVALID_ARGUMENT", problem)
        if "predict_request_response_logging_config" in fields:
            current = self.log_table(endpoint)
            candidate = self.types.Endpoint(endpoint)
            candidate.predict_request_response_logging_config = sent.predict_request_response_logging_config
            problem = self._claim_log_table(candidate, endpoint.name.rsplit("/", 1)[1], current)
            if problem:
                return 400, google_error(400, "INVALID_ARGUMENT", problem)
        for field in fields:  # a field in the mask is replaced by the request's, absent meaning empty
            setattr(endpoint, field, getattr(sent, field))
        self._touch(endpoint)
        return 200, message_json(endpoint)

    def _deploy(self, endpoint, payload: dict) -> tuple[int, dict]:
        split = {k: int(v) for k, v in payload.get("trafficSplit", {}).items()}
        problem = self._check_split(split, {m.id for m in endpoint.deployed_models} | {"0"})
        if problem:
            return 400, google_error(400, "INVALID_ARGUMENT", problem)
        deployed = self.types.DeployedModel.from_json(json.dumps(payload["deployedModel"]))
        model, _, version = deployed.model.partition("@")
        deployed.id, deployed.model, deployed.model_version_id = str(next(self._ids)), model, version or "1"
        endpoint.deployed_models.append(deployed)
        if split:  # "0" is the model this call deploys: its id is filled in
            endpoint.traffic_split = {(deployed.id if k == "0" else k): v for k, v in split.items()}
        elif len(endpoint.deployed_models) == 1:
            endpoint.traffic_split = {deployed.id: 100}
        self._touch(endpoint)
        return self._operation(endpoint.name, self.types.DeployModelResponse(deployed_model=deployed))

    def _undeploy(self, endpoint, payload: dict) -> tuple[int, dict]:
        deployed_id = payload["deployedModelId"]
        remaining = [m for m in endpoint.deployed_models if m.id != deployed_id]
        if len(remaining) == len(endpoint.deployed_models):
            return 404, google_error(404, "NOT_FOUND", f"deployed model {deployed_id} not found")
        given = {k: int(v) for k, v in payload.get("trafficSplit", {}).items()}
        current = dict(endpoint.traffic_split)
        # UndeployModelRequest.traffic_split: "A DeployedModel will be successfully undeployed only if it doesn't
        # have any traffic assigned to it when this method executes, or if this field unassigns any traffic to
        # it"; "If last DeployedModel is being undeployed ... the traffic_split will always end up empty".
        if remaining and current.get(deployed_id, 0) and (not given or given.get(deployed_id, 0)):
            return 400, google_error(400, "FAILED_PRECONDITION",
                                     f"deployed model {deployed_id} has {current[deployed_id]}% of the traffic: "
                                     "move it before undeploying")
        split = given or {k: v for k, v in current.items() if k != deployed_id}
        problem = self._check_split(split, {m.id for m in remaining}) if remaining else None
        if problem:
            return 400, google_error(400, "INVALID_ARGUMENT", problem)
        endpoint.deployed_models = remaining
        endpoint.traffic_split = split if remaining else {}
        self._touch(endpoint)
        return self._operation(endpoint.name, self.types.UndeployModelResponse())

    def _predict(self, endpoint, payload: dict) -> tuple[int, dict]:
        table = [k for k, v in endpoint.traffic_split.items() for _ in range(int(v))]
        if not table:
            return 400, google_error(400, "FAILED_PRECONDITION", "the endpoint has no deployed model with traffic")
        deployed_id = self._random.choice(sorted(table))
        deployed = next(m for m in endpoint.deployed_models if m.id == deployed_id)
        version = next(v for v in self.versions if v["versionId"] == deployed.model_version_id)
        counts = self.served.setdefault(deployed_id, {"requests": 0, "errors": 0})
        counts["requests"] += 1
        if deployed.model_version_id in self.failing:
            counts["errors"] += 1
            return 500, google_error(500, "INTERNAL", "the model server failed")
        record = json.loads(storage_uri.read_text(storage_uri.join(version["artifactUri"], SMOKE_TEST_FILE)))
        recorded = record["predictions"] if payload["instances"] == record["instances"] else \
            [0.5] * len(payload["instances"])
        shift = 0.5 if deployed.model_version_id in self.wrong_answers else 0.0
        predictions = [{"probability": p + shift} for p in recorded]
        if self.request_logging is not None:
            self.request_logging(endpoint.name, deployed_id, payload["instances"], predictions)
        reply = self.types.PredictResponse(deployed_model_id=deployed_id, model=deployed.model,
                                           model_version_id=deployed.model_version_id)
        reply.predictions.extend(predictions)
        return 200, message_json(reply)

    # --- Cloud Monitoring ----------------------------------------------------------------------------
    def _time_series(self, query: dict[str, str]) -> tuple[int, dict]:
        from google.cloud.monitoring_v3 import types as monitoring

        self.monitoring_queries.append(query)
        match = re.fullmatch(r'metric\.type = "aiplatform\.googleapis\.com/prediction/online/(\w+)" AND '
                             r'resource\.type = "aiplatform\.googleapis\.com/Endpoint" AND '
                             r'resource\.labels\.endpoint_id = "(\d+)"', query.get("filter", ""))
        aligners = {"prediction_count": {"ALIGN_SUM"}, "error_count": {"ALIGN_SUM"},
                    "prediction_latencies": {"ALIGN_PERCENTILE_50", "ALIGN_PERCENTILE_99"}}
        aligner = query.get("aggregation.perSeriesAligner")
        if not match or match[1] not in aligners or aligner not in aligners[match[1]] \
                or query.get("aggregation.groupByFields") != "metric.label.deployed_model_id" \
                or not re.fullmatch(r"\d+s", query.get("aggregation.alignmentPeriod", "")) \
                or not all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", query.get(f"interval.{edge}Time", ""))
                           for edge in ("start", "end")):
            return 400, google_error(400, "INVALID_ARGUMENT", f"query not in the shape Cloud Monitoring takes: {query}")
        endpoint = self.endpoints.get(match[2])
        versions = {m.id: m.model_version_id for m in (endpoint.deployed_models if endpoint else [])}
        end = datetime.datetime.fromisoformat(query["interval.endTime"])
        series = []
        for deployed_id, counts in sorted(self.served.items()):
            if match[1] == "prediction_latencies":
                value = monitoring.TypedValue(double_value=self.latency_ms.get(versions.get(deployed_id, ""), 5.0))
            else:
                value = monitoring.TypedValue(
                    int64_value=counts["requests" if match[1] == "prediction_count" else "errors"])
            series.append(monitoring.TimeSeries(
                metric={"labels": {"deployed_model_id": deployed_id}},
                points=[monitoring.Point(interval=monitoring.TimeInterval(end_time=end), value=value)]))
        page = monitoring.ListTimeSeriesResponse(time_series=series)
        if match[1] == "prediction_count" and not query.get("pageToken") and len(series) > 1:
            page = monitoring.ListTimeSeriesResponse(time_series=series[:1], next_page_token="page-2")  # paged
        elif query.get("pageToken"):
            page = monitoring.ListTimeSeriesResponse(time_series=series[1:])
        return 200, message_json(page)

    # --- Model Registry: aliases --------------------------------------------------------------------
    def _merge_aliases(self, route: str, payload: dict) -> tuple[int, dict]:
        key = route.removesuffix(":mergeVersionAliases").rsplit("@", 1)[1]
        # MergeVersionAliasesRequest.name: "The name of the model version ..., with a version ID explicitly
        # included" (an alias there names no version).
        target = next((v for v in self.versions if key == v["versionId"]), None)
        if target is None:
            return 404, google_error(404, "NOT_FOUND", f"model version {key} not found (a version id is needed)")
        for alias in payload.get("versionAliases", []):
            if alias.startswith("-"):  # MergeVersionAliasesRequest: "-golden" removes the alias golden
                target["versionAliases"] = [a for a in target["versionAliases"] if a != alias[1:]]
                continue
            self.move_alias(alias, target)
        return 200, message_json(self.model_message(target))

    def endpoint_state(self) -> dict:
        [endpoint] = self.endpoints.values()
        return {"split": {next(m.model_version_id for m in endpoint.deployed_models if m.id == k): v
                          for k, v in endpoint.traffic_split.items()},
                "deployed": sorted(m.model_version_id for m in endpoint.deployed_models)}

    def the_endpoint(self):
        [endpoint] = self.endpoints.values()
        return endpoint


def _snake(field: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), field)


def _split_shape(split: dict) -> str:
    """A split with deployed ids as their order of appearance (n1, n2...), "0" kept: ids are opaque."""
    return ",".join(f"{'0' if key == '0' else 'id'}:{value}" for key, value in sorted(
        split.items(), key=lambda item: (item[0] != "0", -int(item[1]))))


@contextlib.contextmanager
def stand_in_vertex() -> Iterator[FakeVertex]:
    """aiplatform pointed at a fresh stand-in (registry and endpoints) for the duration."""
    fake = FakeVertex()
    saved_monitoring = os.environ.get(MONITORING_API_ENV)
    os.environ[MONITORING_API_ENV] = fake.endpoint
    try:
        with aiplatform_pointed_at(fake.endpoint, PROJECT, LOCATION):
            yield fake
    finally:
        fake.server.close()
        if saved_monitoring is None:
            os.environ.pop(MONITORING_API_ENV, None)
        else:
            os.environ[MONITORING_API_ENV] = saved_monitoring
