"""A local stand-in for the Vertex AI Model Monitoring (v2) REST resources, for the real google-cloud-aiplatform
client (REST transport) and for the drift function's own HTTP calls. Mocked, because no Google Cloud is
reachable here: only the server side of the API, held to the aiplatform v1 and v1beta1 discovery documents
(tests/stand_in_http.StandInServer), its resources kept as, and its replies built from, the official
`google.cloud.aiplatform_v1beta1.types` (ModelMonitor, Schedule, ModelMonitoringAlert, the list and search
responses, Operation) and `aiplatform_v1.types.Model`.

- `FakeMonitoringApi`: what `python -m monitoring apply` uses: models (list, get by alias, v1), modelMonitors
  (list, get, create and patch as finished long-running operations, v1beta1), schedules (list, get, create,
  patch, v1beta1), and the monitors' alerts. It records every write, so a test can tell a create from an
  update from nothing.
- `ModelMonitoringAlerts`: `modelMonitors.searchModelMonitoringAlerts` over the alerts a test puts there,
  filtered and paged as the API defines (docs/fidelity.md, "Model Monitoring").
- `anomaly_log_entry`: the Cloud Logging entry a monitor's run writes with `enable_cloud_logging`, valid
  against logging.v2's LogEntry schema. Its payload is encoded from
  `google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry`, whose fields Google does not publish:
  the entry carries that `@type` and only what a test names, never a guessed field.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fidelity import discovery
from tests.stand_in_http import StandInServer, google_error, message_json, operation_json

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
ANOMALY_TYPE = "type.googleapis.com/google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry"
ANOMALY_LOG = "aiplatform.googleapis.com%2Fmodel_monitoring_anomaly"
_SEARCH = re.compile(r"/v1beta1/projects/([^/]+)/locations/([^/]+)/modelMonitors/([^/:]+):searchModelMonitoringAlerts")
_LIST = re.compile(r"/v1beta1/(projects/[^/]+/locations/[^/]+)/modelMonitors")
# The one filter the drift function sends (AIP-160 equality on display_name, as the SDK's ModelMonitor.list).
_DISPLAY_NAME_FILTER = re.compile(r'display_name="([^"]*)"')


class ModelMonitoringAlerts:
    """The alerts of model monitors (by monitor id), and `searchModelMonitoringAlerts` over them."""

    def __init__(self) -> None:
        from google.cloud.aiplatform_v1beta1 import types

        self.types = types
        self.monitors: set[str] = set()  # ids of the monitors that exist
        self.display_names: dict[str, str] = {}  # monitor id -> its display name, for modelMonitors.list
        self.alerts: dict[str, list] = {}  # monitor id -> its ModelMonitoringAlert messages
        self.searches: list[dict] = []  # each search request, as sent
        self.searched_monitors: list[str] = []  # the monitor id of each search

    def add_drift_alert(self, monitor: str, job: str, feature: str, threshold: float, alert_time: datetime.datetime,
                        algorithm: str = "jensen_shannon_divergence", objective: str = "raw-feature-drift") -> None:
        """An alert a run of `job` (`.../modelMonitors/M/modelMonitoringJobs/J`) raised: `feature` above
        `threshold`. The anomaly's body (`tabularAnomaly.anomaly`, a Value) is left empty: its shape is not
        published."""
        types = self.types
        monitor_id = monitor.rsplit("/", 1)[-1]
        self.monitors.add(monitor_id)
        anomaly = types.ModelMonitoringAnomaly(
            model_monitoring_job=job, algorithm=algorithm,
            tabular_anomaly=types.ModelMonitoringAnomaly.TabularAnomaly(
                summary=f"{feature} drifted", trigger_time=alert_time,
                condition=types.ModelMonitoringAlertCondition(threshold=threshold)))
        self.alerts.setdefault(monitor_id, []).append(types.ModelMonitoringAlert(
            stats_name=feature, objective_type=objective, alert_time=alert_time, anomaly=anomaly))

    def add_monitor(self, monitor: str, display_name: str) -> None:
        """A monitor (`.../modelMonitors/ID`) that modelMonitors.list finds by its display name."""
        self.monitors.add(monitor.rsplit("/", 1)[-1])
        self.display_names[monitor.rsplit("/", 1)[-1]] = display_name

    def answers(self, route: str) -> bool:
        return bool(_SEARCH.fullmatch(route))

    def list_monitors(self, route: str, query: dict[str, list[str]]) -> tuple[int, dict] | None:
        """modelMonitors.list with a display_name filter, over the monitors added; None for another route."""
        match = _LIST.fullmatch(route)
        if not match:
            return None
        wanted = _DISPLAY_NAME_FILTER.fullmatch(query.get("filter", [""])[0])
        if query.get("filter") and not wanted:
            return 400, google_error(400, "INVALID_ARGUMENT", f"filter {query['filter'][0]!r} is not stood in for "
                                                              '(display_name="NAME" is)')
        found = [self.types.ModelMonitor(name=f"{match[1]}/modelMonitors/{monitor_id}", display_name=name)
                 for monitor_id, name in sorted(self.display_names.items())
                 if match[1] == PARENT and (not wanted or name == wanted[1])]
        return 200, message_json(self.types.ListModelMonitorsResponse(model_monitors=found))

    def search(self, route: str, payload: dict) -> tuple[int, dict]:
        types = self.types
        project, location, monitor_id = _SEARCH.fullmatch(route).groups()
        self.searches.append(payload)
        self.searched_monitors.append(monitor_id)
        if location != LOCATION or monitor_id not in self.monitors:
            return 404, google_error(404, "NOT_FOUND", f"ModelMonitor projects/{project}/locations/{location}/"
                                                       f"modelMonitors/{monitor_id} not found")
        request = types.SearchModelMonitoringAlertsRequest.from_json(json.dumps(payload))
        found = self.alerts.get(monitor_id, [])
        # Each filter as SearchModelMonitoringAlertsRequest defines it; an empty one filters nothing.
        if request.model_monitoring_job:
            found = [a for a in found if a.anomaly.model_monitoring_job == request.model_monitoring_job]
        if request.objective_type:
            found = [a for a in found if a.objective_type == request.objective_type]
        if request.stats_name:
            found = [a for a in found if a.stats_name == request.stats_name]
        interval = request.alert_time_interval
        if interval.start_time.seconds or interval.start_time.nanos:  # inclusive start, exclusive end (the SDK's
            start = interval.start_time.ToDatetime(datetime.UTC)  # ModelMonitor.search_alerts docstring)
            found = [a for a in found if a.alert_time >= start]
        if interval.end_time.seconds or interval.end_time.nanos:
            end = interval.end_time.ToDatetime(datetime.UTC)
            found = [a for a in found if a.alert_time < end]
        # SearchModelMonitoringAlertsResponse.model_monitoring_alerts: "Sorted by alert time descendingly".
        found = sorted(found, key=lambda a: a.alert_time, reverse=True)
        offset = int(request.page_token or 0)
        size = request.page_size or 100
        page = found[offset:offset + size]
        reply = types.SearchModelMonitoringAlertsResponse(model_monitoring_alerts=page,
                                                          total_number_alerts=len(found))
        if offset + size < len(found):
            reply.next_page_token = str(offset + size)
        return 200, message_json(reply)


def anomaly_log_entry(project: str, timestamp: datetime.datetime, *, names: dict[str, str] | None = None,
                      log_name: str = "", with_type: bool = True, insert_id: str = "anomaly-1") -> dict[str, Any]:
    """A LogEntry as a monitor's run writes it to Cloud Logging (NotificationSpec.enable_cloud_logging), checked
    against logging.v2's LogEntry schema. `names`: placeholder payload keys holding resource names a test wants
    the entry to carry (the real payload's fields are not published; the drift function reads none by name)."""
    payload: dict[str, Any] = {"@type": ANOMALY_TYPE} if with_type else {}
    payload |= names or {}
    entry = {"insertId": insert_id, "logName": log_name or f"projects/{project}/logs/{ANOMALY_LOG}",
             "resource": {"type": "global", "labels": {"project_id": project}}, "severity": "WARNING",
             "timestamp": timestamp.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
             "receiveTimestamp": timestamp.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
             "jsonPayload": payload}
    problems = list(discovery.load("logging.v2").problems(entry, {"$ref": "LogEntry"}, ""))
    assert not problems, f"the stand-in's LogEntry strays from logging.v2: {problems}"
    return entry


class FakeMonitoringApi:
    def __init__(self, model_name: str, version_description: str) -> None:
        from google.cloud.aiplatform_v1beta1 import types

        self.types = types
        self.calls: list[tuple[str, str, dict]] = []  # method, path, body (writes only)
        self.model_name = model_name
        self.version_description = version_description
        self._monitors: dict[str, types.ModelMonitor] = {}
        self._schedules: dict[str, types.Schedule] = {}
        self.alerts = ModelMonitoringAlerts()
        self.server = StandInServer(self._answer, ("aiplatform.v1", "aiplatform.v1beta1"))
        self.url = self.server.url

    @property
    def monitors(self) -> dict[str, dict]:
        return {name: message_json(monitor) for name, monitor in self._monitors.items()}

    @property
    def schedules(self) -> dict[str, dict]:
        return {name: message_json(schedule) for name, schedule in self._schedules.items()}

    def writes(self) -> list[str]:
        return [f"{method} {path.split('?')[0].rsplit('/', 1)[-1]}" for method, path, _ in self.calls]

    def _model(self):
        from google.cloud.aiplatform_v1 import types as v1

        return v1.Model(name=f"{PARENT}/models/7", display_name=self.model_name, version_id="3",
                        version_aliases=["champion"], version_description=self.version_description)

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        from google.cloud.aiplatform_v1 import types as v1

        types = self.types
        url = urlsplit(path)
        route = unquote(url.path)
        query = parse_qs(url.query)
        payload = json.loads(body) if body else {}
        if self.alerts.answers(route):
            return self.alerts.search(route, payload)
        if method != "GET":
            self.calls.append((method, path, payload))
        if method == "GET" and route == f"/v1/{PARENT}/models":
            return 200, message_json(v1.ListModelsResponse(models=[self._model()]))
        if method == "GET" and route in (f"/v1/{PARENT}/models/7@champion", f"/v1/{PARENT}/models/7@3"):
            return 200, message_json(self._model())
        if route == f"/v1beta1/{PARENT}/modelMonitors":
            if method == "GET":
                return 200, message_json(types.ListModelMonitorsResponse(model_monitors=list(self._monitors.values())))
            name = f"{PARENT}/modelMonitors/{len(self._monitors) + 100}"
            monitor = types.ModelMonitor.from_json(json.dumps(payload))
            monitor.name = name
            self._monitors[name] = monitor
            self.alerts.monitors.add(name.rsplit("/", 1)[-1])
            return 200, self._done(name, monitor)
        if route.startswith(f"/v1beta1/{PARENT}/modelMonitors/"):
            name = route.removeprefix("/v1beta1/")
            if name not in self._monitors:
                return 404, google_error(404, "NOT_FOUND", f"{name} not found")
            if method == "PATCH":
                _apply_mask(self._monitors[name], types.ModelMonitor.from_json(json.dumps(payload)),
                            query["updateMask"][0])
                return 200, self._done(name, self._monitors[name])
            return 200, message_json(self._monitors[name])
        if route == f"/v1beta1/{PARENT}/schedules":
            if method == "GET":
                return 200, message_json(types.ListSchedulesResponse(schedules=list(self._schedules.values())))
            name = f"{PARENT}/schedules/{len(self._schedules) + 500}"
            schedule = types.Schedule.from_json(json.dumps(payload))
            schedule.name, schedule.state = name, types.Schedule.State.ACTIVE
            self._schedules[name] = schedule
            return 200, message_json(schedule)
        if route.startswith(f"/v1beta1/{PARENT}/schedules/"):
            name = route.removeprefix("/v1beta1/")
            if name not in self._schedules:
                return 404, google_error(404, "NOT_FOUND", f"{name} not found")
            if method == "PATCH":
                _apply_mask(self._schedules[name], types.Schedule.from_json(json.dumps(payload)),
                            query["updateMask"][0])
            return 200, message_json(self._schedules[name])
        return 404, google_error(404, "NOT_FOUND", f"no route {method} {route}")

    @staticmethod
    def _done(name: str, monitor) -> dict:
        # Create and update of a ModelMonitor are long-running operations (ModelMonitoringService, v1beta1);
        # answered finished, with the monitor as the response.
        return operation_json(f"{name}/operations/1", monitor)

    def close(self) -> None:
        self.server.close()


def _apply_mask(resource, sent, mask: str) -> None:
    """An update as update masks work (google.protobuf.FieldMask): each named field is replaced by the request's."""
    for field in mask.split(","):
        setattr(resource, _snake(field), getattr(sent, _snake(field)))


def _snake(field: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), field)
