"""Reading a Model Monitoring (v2) monitor's alerts: `modelMonitors.searchModelMonitoringAlerts` (aiplatform
v1beta1), over the same light transport as the pipeline-job submission (requests + google-auth), so the drift
function never imports google.cloud.aiplatform (seconds and hundreds of MB on each cold start).

Request and reply as the v1beta1 discovery document defines them (`SearchModelMonitoringAlertsRequest`:
`objectiveType`, `modelMonitoringJob`, `alertTimeInterval {startTime, endTime}`, `pageSize`, `pageToken`;
`SearchModelMonitoringAlertsResponse`: `modelMonitoringAlerts[]`, `nextPageToken`). An alert
(`ModelMonitoringAlert`) names its feature in `statsName` (the SDK's `ModelMonitor.search_alerts`: "For tabular
models, provide the name of the feature"), its objective, `alertTime`, and its `anomaly`: the algorithm, the job
that found it, and `tabularAnomaly.condition.threshold` ("Alert will be triggered if value above the threshold").
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

from triggers.submission import transport
from triggers.submission.errors import InvalidRequest

RAW_FEATURE_DRIFT = "raw-feature-drift"  # ModelMonitoringAlert.objective_type: feature drift
PAGE_SIZE = 100
MAX_PAGES = 20  # a runaway nextPageToken stops here: 2,000 alerts in one search is already not a drift burst


# Display name -> (resource name, when found): a function instance looks its monitor up once, not per event; a
# monitor recreated under the same name (a new id) is found again after this long.
MONITOR_CACHE_SECONDS = 600
_found: dict[tuple[str, str, str], tuple[str, float]] = {}


def _pages(method: str, url: str, what: str, items: str, *, params: dict[str, Any] | None = None,
           body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The `items` of every page of a list or search call (its `nextPageToken` sent back as `pageToken`, in
    the query of a GET, the body of a POST), at most MAX_PAGES. HTTP failures are classified by
    transport.raise_for_status (429/5xx: retried; 403/404: not)."""
    for _ in range(MAX_PAGES):
        response = transport.send(method, url, params=params, json_body=body)
        transport.raise_for_status(response, what)
        try:
            page = response.json()
        except ValueError:
            raise InvalidRequest(f"{what}: the reply is not JSON: {response.text[:200]!r}") from None
        found = page.get(items, []) if isinstance(page, dict) else None
        if not isinstance(found, list):
            raise InvalidRequest(f"{what}: {items} is {type(found).__name__}, expected a list")
        yield from (item for item in found if isinstance(item, dict))
        if not page.get("nextPageToken"):
            return
        (params if method == "GET" else body)["pageToken"] = page["nextPageToken"]


def find_monitor(api_endpoint: str, parent: str, display_name: str) -> str | None:
    """The resource name of the model monitor named `display_name` in `parent` (projects/P/locations/L), or
    None: `modelMonitors.list` with the filter the SDK's `ModelMonitor.list` sends (display_name="...")."""
    key = (api_endpoint, parent, display_name)
    cached = _found.get(key)
    if cached and time.monotonic() - cached[1] < MONITOR_CACHE_SECONDS:
        return cached[0]
    for monitor in _pages("GET", f"{api_endpoint}/v1beta1/{parent}/modelMonitors",
                          f"looking up model monitor {display_name!r} in {parent}", "modelMonitors",
                          params={"filter": f'display_name="{display_name}"', "pageSize": PAGE_SIZE}):
        # The filter is the server's; the name is checked here too (a filter it ignored must not match all).
        if monitor.get("displayName") == display_name and monitor.get("name"):
            _found[key] = (monitor["name"], time.monotonic())
            return monitor["name"]
    return None


def _rfc3339(instant: datetime.datetime) -> str:
    return instant.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def search_alerts(api_endpoint: str, monitor: str, start: datetime.datetime, end: datetime.datetime,
                  objective_type: str = RAW_FEATURE_DRIFT, job: str = "") -> Iterator[dict[str, Any]]:
    """The monitor's alerts of `objective_type` created in [start, end) (of `job` only, if given), page by page.
    HTTP failures are classified by transport.raise_for_status (429/5xx: retried; 403/404: not)."""
    url = f"{api_endpoint}/v1beta1/{monitor}:searchModelMonitoringAlerts"
    body: dict[str, Any] = {"objectiveType": objective_type, "pageSize": PAGE_SIZE,
                            "alertTimeInterval": {"startTime": _rfc3339(start), "endTime": _rfc3339(end)}}
    if job:
        body["modelMonitoringJob"] = job
    yield from _pages("POST", url, f"searching the alerts of model monitor {monitor}", "modelMonitoringAlerts",
                      body=body)
