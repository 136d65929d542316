"""A local stand-in for the Vertex AI REST resources `python -m monitoring apply` uses, for the real
google-cloud-aiplatform client (REST transport): models (list, get by alias, v1), modelMonitors (list, get,
create and patch as finished long-running operations, v1beta1) and schedules (list, get, create, patch,
v1beta1). Mocked, because no Google Cloud is reachable here: only the server side of the API. It records
every call, so a test can tell a create from an update from nothing."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

from tests.stand_in_http import StandInServer, google_error

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
MONITOR_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1beta1.ModelMonitor"


class FakeMonitoringApi:
    def __init__(self, model_name: str, version_description: str) -> None:
        self.calls: list[tuple[str, str, dict]] = []  # method, path, body (writes only)
        self.model_name = model_name
        self.version_description = version_description
        self.monitors: dict[str, dict] = {}
        self.schedules: dict[str, dict] = {}
        self.server = StandInServer(self._answer, ("aiplatform.v1", "aiplatform.v1beta1"))
        self.url = self.server.url

    def writes(self) -> list[str]:
        return [f"{method} {path.split('?')[0].rsplit('/', 1)[-1]}" for method, path, _ in self.calls]

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        url = urlsplit(path)
        route = unquote(url.path)
        query = parse_qs(url.query)
        payload = json.loads(body) if body else {}
        if method != "GET":
            self.calls.append((method, path, payload))
        model = {"name": f"{PARENT}/models/7", "displayName": self.model_name, "versionId": "3",
                 "versionAliases": ["champion"], "versionDescription": self.version_description}
        if method == "GET" and route == f"/v1/{PARENT}/models":
            return 200, {"models": [model]}
        if method == "GET" and route in (f"/v1/{PARENT}/models/7@champion", f"/v1/{PARENT}/models/7@3"):
            return 200, model
        if route == f"/v1beta1/{PARENT}/modelMonitors":
            if method == "GET":
                return 200, {"modelMonitors": list(self.monitors.values())}
            name = f"{PARENT}/modelMonitors/{len(self.monitors) + 100}"
            self.monitors[name] = payload | {"name": name}
            return 200, self._done(self.monitors[name])
        if route.startswith(f"/v1beta1/{PARENT}/modelMonitors/"):
            name = route.removeprefix("/v1beta1/")
            if name not in self.monitors:
                return 404, google_error(404, "NOT_FOUND", f"{name} not found")
            if method == "PATCH":
                for field in query["updateMask"][0].split(","):
                    key = _camel(field)
                    self.monitors[name][key] = payload.get(key)
                return 200, self._done(self.monitors[name])
            return 200, self.monitors[name]
        if route == f"/v1beta1/{PARENT}/schedules":
            if method == "GET":
                return 200, {"schedules": list(self.schedules.values())}
            name = f"{PARENT}/schedules/{len(self.schedules) + 500}"
            self.schedules[name] = payload | {"name": name, "state": "ACTIVE"}
            return 200, self.schedules[name]
        if route.startswith(f"/v1beta1/{PARENT}/schedules/"):
            name = route.removeprefix("/v1beta1/")
            if name not in self.schedules:
                return 404, google_error(404, "NOT_FOUND", f"{name} not found")
            if method == "PATCH":
                for field in query["updateMask"][0].split(","):
                    key = _camel(field)
                    self.schedules[name][key] = payload.get(key)
            return 200, self.schedules[name]
        return 404, google_error(404, "NOT_FOUND", f"no route {method} {route}")

    @staticmethod
    def _done(monitor: dict) -> dict:
        return {"name": f"{monitor['name']}/operations/1", "done": True, "response": {"@type": MONITOR_TYPE, **monitor}}

    def close(self) -> None:
        self.server.close()


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)
