"""A local stand-in for the Vertex AI Endpoints REST API (and the Model Registry calls deploy makes),
for the real google-cloud-aiplatform client (REST transport). Mocked, because no Google Cloud is
reachable here: only the server side of the API, with Vertex's rules enforced:

- a traffic split's values sum to 100 and its keys are deployed model ids, `"0"` only in a deploy,
  where it names the model being deployed;
- undeploying a model that would keep traffic is refused (FAILED_PRECONDITION);
- deploy, undeploy and create are long-running operations, answered not done and finished when polled
  (`GET /ui/{operation}`, where the aiplatform REST transport polls);
- an update carrying a stale `etag` is refused (ABORTED), as Vertex does for read-modify-write.

Every request is recorded (method, path, body) for the tests to compare with what Vertex expects.
Predictions stand in for the serving container: a deployed version answers the instances its
smoke-test record holds with the recorded predictions (`wrong_answers` makes a version answer otherwise),
any other instance with 0.5. Each prediction is counted per deployed model, and Cloud Monitoring's
`timeSeries.list` (same server, `/v3/projects/P/timeSeries`) answers those counts, the errors of
versions in `failing`, and `latency_ms` per version, refusing a query of another shape.
"""

from __future__ import annotations

import contextlib
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
from tests.stand_in_http import aiplatform_pointed_at, google_error

TYPES = "type.googleapis.com/google.cloud.aiplatform.v1."


class FakeVertex(FakeModelRegistry):
    APIS = ("aiplatform.v1", "monitoring.v3")

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.endpoints: dict[str, dict] = {}
        self.operations: dict[str, dict] = {}
        self.polled: list[str] = []
        self.wrong_answers: set[str] = set()  # versions whose "container" answers differently
        self.failing: set[str] = set()  # versions whose "container" answers 500
        self.latency_ms: dict[str, float] = {}  # per version, as Cloud Monitoring reports it
        self.served: dict[str, dict[str, int]] = {}  # deployed id -> {"requests", "errors"}
        self.monitoring_queries: list[dict[str, str]] = []
        # Called with (endpoint name, deployed model id, instances, predictions) for each answered request, as
        # the endpoint's request-response logging writes them (tests/deploy/canary_data.VertexRequestLogging).
        self.request_logging: Callable[[str, str, list, list], None] | None = None
        self._ids = itertools.count(1001)
        self._etags = itertools.count(1)
        self._random = random.Random(3)
        super().__init__()

    def model(self, version: dict) -> dict:
        # A custom-container model, as Vertex describes one: it deploys on dedicated machines.
        return {**super().model(version), "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"]}

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
            found = [e for e in self.endpoints.values() if f'display_name="{e["displayName"]}"' == wanted]
            return 200, {"endpoints": found} if found else {}
        if route == base and method == "POST":
            return self._create(payload)
        endpoint_id, _, verb = route.removeprefix(base + "/").partition(":")
        if endpoint_id not in self.endpoints:
            return 404, google_error(404, "NOT_FOUND", f"endpoint {endpoint_id} not found")
        endpoint = self.endpoints[endpoint_id]
        if method == "GET" and not verb:
            return 200, endpoint
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
    def _operation(self, resource: str, response: dict) -> tuple[int, dict]:
        name = f"{resource}/operations/{next(self._ids)}"
        self.operations[name] = {"name": name, "done": True, "response": response}
        return 200, {"name": name, "done": False}  # polled before it is finished, as on Vertex

    def _poll(self, route: str) -> tuple[int, dict]:
        # The aiplatform REST transport polls at /ui/{name} (its first http rule for operations.get).
        name = route.removeprefix("/v1/").removeprefix("/ui/")
        if name not in self.operations:
            return 404, google_error(404, "NOT_FOUND", f"operation {name} not found")
        self.polled.append(name)
        return 200, self.operations[name]

    def _touch(self, endpoint: dict) -> None:
        endpoint["etag"] = f"etag-{next(self._etags)}"

    # --- endpoints --------------------------------------------------------------------------------
    def _create(self, payload: dict) -> tuple[int, dict]:
        endpoint_id = str(next(self._ids))
        # createTime: without it the SDK takes the resource as partly read and re-reads it before each use.
        endpoint = {"name": f"{PARENT}/endpoints/{endpoint_id}", "displayName": payload["displayName"],
                    "createTime": "2026-11-23T00:00:00Z",
                    "labels": payload.get("labels", {}), "deployedModels": [], "trafficSplit": {}}
        self._touch(endpoint)
        self.endpoints[endpoint_id] = endpoint
        return self._operation(endpoint["name"], {"@type": TYPES + "Endpoint", **endpoint})

    def _check_split(self, split: dict, allowed: set[str]) -> str | None:
        if any(key not in allowed for key in split):
            return f"traffic split keys {sorted(split)} are not all deployed model ids (allowed {sorted(allowed)})"
        if split and sum(int(v) for v in split.values()) != 100:
            return f"traffic split {split} does not sum to 100"
        return None

    def _update(self, endpoint: dict, payload: dict, mask: str) -> tuple[int, dict]:
        if payload.get("etag") and payload["etag"] != endpoint["etag"]:
            return 409, google_error(409, "ABORTED", f"etag {payload['etag']} is stale (now {endpoint['etag']})")
        fields = set(mask.split(",")) if mask else set()
        if not fields or not fields <= {"labels", "trafficSplit", "traffic_split", "displayName", "display_name"}:
            return 400, google_error(400, "INVALID_ARGUMENT", f"update mask {mask!r} is not stood in for")
        if fields & {"trafficSplit", "traffic_split"}:
            split = {k: int(v) for k, v in payload.get("trafficSplit", {}).items()}
            problem = self._check_split(split, {m["id"] for m in endpoint["deployedModels"]})
            if problem or "0" in split:
                return 400, google_error(400, "INVALID_ARGUMENT", problem or '"0" is only allowed in a deploy')
            endpoint["trafficSplit"] = split
        if "labels" in fields:
            endpoint["labels"] = payload.get("labels", {})
        self._touch(endpoint)
        return 200, endpoint

    def _deploy(self, endpoint: dict, payload: dict) -> tuple[int, dict]:
        split = {k: int(v) for k, v in payload.get("trafficSplit", {}).items()}
        problem = self._check_split(split, {m["id"] for m in endpoint["deployedModels"]} | {"0"})
        if problem:
            return 400, google_error(400, "INVALID_ARGUMENT", problem)
        deployed_id = str(next(self._ids))
        spec = payload["deployedModel"]
        model, _, version = spec["model"].partition("@")
        deployed = {"id": deployed_id, "model": model, "modelVersionId": version or "1",
                    "displayName": spec.get("displayName", ""), "dedicatedResources": spec.get("dedicatedResources")}
        endpoint["deployedModels"].append(deployed)
        if split:
            endpoint["trafficSplit"] = {(deployed_id if k == "0" else k): v for k, v in split.items()}
        elif len(endpoint["deployedModels"]) == 1:
            endpoint["trafficSplit"] = {deployed_id: 100}
        self._touch(endpoint)
        return self._operation(endpoint["name"], {"@type": TYPES + "DeployModelResponse", "deployedModel": deployed})

    def _undeploy(self, endpoint: dict, payload: dict) -> tuple[int, dict]:
        deployed_id = payload["deployedModelId"]
        remaining = [m for m in endpoint["deployedModels"] if m["id"] != deployed_id]
        if len(remaining) == len(endpoint["deployedModels"]):
            return 404, google_error(404, "NOT_FOUND", f"deployed model {deployed_id} not found")
        split = {k: int(v) for k, v in payload.get("trafficSplit", {}).items()} or \
            {k: v for k, v in endpoint["trafficSplit"].items() if k != deployed_id}
        if endpoint["trafficSplit"].get(deployed_id, 0) and remaining:
            return 400, google_error(400, "FAILED_PRECONDITION",
                                     f"deployed model {deployed_id} has {endpoint['trafficSplit'][deployed_id]}% of "
                                     "the traffic: move it before undeploying")
        problem = self._check_split(split, {m["id"] for m in remaining}) if remaining else None
        if problem:
            return 400, google_error(400, "INVALID_ARGUMENT", problem)
        endpoint["deployedModels"], endpoint["trafficSplit"] = remaining, split if remaining else {}
        self._touch(endpoint)
        return self._operation(endpoint["name"], {"@type": TYPES + "UndeployModelResponse"})

    def _predict(self, endpoint: dict, payload: dict) -> tuple[int, dict]:
        table = [k for k, v in endpoint["trafficSplit"].items() for _ in range(int(v))]
        if not table:
            return 400, google_error(400, "FAILED_PRECONDITION", "the endpoint has no deployed model with traffic")
        deployed_id = self._random.choice(table)
        deployed = next(m for m in endpoint["deployedModels"] if m["id"] == deployed_id)
        version = next(v for v in self.versions if v["versionId"] == deployed["modelVersionId"])
        counts = self.served.setdefault(deployed_id, {"requests": 0, "errors": 0})
        counts["requests"] += 1
        if deployed["modelVersionId"] in self.failing:
            counts["errors"] += 1
            return 500, google_error(500, "INTERNAL", "the model server failed")
        record = json.loads(storage_uri.read_text(storage_uri.join(version["artifactUri"], SMOKE_TEST_FILE)))
        recorded = record["predictions"] if payload["instances"] == record["instances"] else \
            [0.5] * len(payload["instances"])
        shift = 0.5 if deployed["modelVersionId"] in self.wrong_answers else 0.0
        if self.request_logging is not None:
            self.request_logging(endpoint["name"], deployed_id, payload["instances"],
                                 [{"probability": p + shift} for p in recorded])
        return 200, {"predictions": [{"probability": p + shift} for p in recorded],
                     "deployedModelId": deployed_id, "model": deployed["model"],
                     "modelVersionId": deployed["modelVersionId"]}

    # --- Cloud Monitoring ----------------------------------------------------------------------------
    def _time_series(self, query: dict[str, str]) -> tuple[int, dict]:
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
        versions = {m["id"]: m["modelVersionId"] for m in (endpoint or {}).get("deployedModels", [])}
        series = []
        for deployed_id, counts in sorted(self.served.items()):
            if match[1] == "prediction_latencies":
                value = {"doubleValue": self.latency_ms.get(versions.get(deployed_id, ""), 5.0)}
            else:
                value = {"int64Value": str(counts["requests" if match[1] == "prediction_count" else "errors"])}
            series.append({"metric": {"labels": {"deployed_model_id": deployed_id}},
                           "points": [{"interval": {"endTime": query["interval.endTime"]}, "value": value}]})
        if match[1] == "prediction_count" and not query.get("pageToken") and len(series) > 1:
            return 200, {"timeSeries": series[:1], "nextPageToken": "page-2"}  # paged, as the API may
        if query.get("pageToken"):
            series = series[1:]
        return 200, {"timeSeries": series}

    # --- Model Registry: aliases --------------------------------------------------------------------
    def _merge_aliases(self, route: str, payload: dict) -> tuple[int, dict]:
        key = route.removesuffix(":mergeVersionAliases").rsplit("@", 1)[1]
        target = next((v for v in self.versions if key in (v["versionId"], *v["versionAliases"])), None)
        if target is None:
            return 404, google_error(404, "NOT_FOUND", f"model version {key} not found")
        for alias in payload.get("versionAliases", []):
            if alias.startswith("-"):
                target["versionAliases"] = [a for a in target["versionAliases"] if a != alias[1:]]
                continue
            for version in self.versions:
                version["versionAliases"] = [a for a in version["versionAliases"] if a != alias]
            target["versionAliases"].append(alias)
        return 200, self.model(target)

    def endpoint_state(self) -> dict:
        [endpoint] = self.endpoints.values()
        return {"split": {next(m["modelVersionId"] for m in endpoint["deployedModels"] if m["id"] == k): v
                          for k, v in endpoint["trafficSplit"].items()},
                "deployed": sorted(m["modelVersionId"] for m in endpoint["deployedModels"])}


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
