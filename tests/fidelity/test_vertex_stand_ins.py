"""The Vertex AI stand-ins (endpoints, model registry, model monitors) hold to Google's definitions: each refuses a
misspelled field with Google's 400, and each behaviour they imitate beyond shape, listed with its source in
docs/fidelity.md ("Endpoints and Model Registry", "Model Monitoring"), is held here on the wire."""

from __future__ import annotations

import datetime

import pytest
import requests

from fidelity import discovery
from tests.deploy.vertex_endpoint_stand_in import FakeVertex
from tests.monitoring.model_monitor_stand_in import FakeMonitoringApi, anomaly_log_entry
from tests.pipeline.model_registry_stand_in import NAME, PARENT

MONITOR = f"{PARENT}/modelMonitors/100"
JOB = f"{MONITOR}/modelMonitoringJobs/5"
T0 = datetime.datetime(2026, 11, 23, 6, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def vertex():
    fake = FakeVertex()
    yield fake
    fake.server.close()


@pytest.fixture(scope="module")
def monitors():
    api = FakeMonitoringApi(NAME, "{}")
    yield api
    api.close()


def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    reply = requests.request(method, f"{base}{path}", json=body, timeout=10)
    return reply.status_code, reply.json()


def endpoint(vertex: FakeVertex, **fields) -> str:
    """A new endpoint (create, then poll its operation as the client does); its resource name."""
    status, operation = call(vertex.endpoint, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "e", **fields})
    assert status == 200, operation
    return call(vertex.endpoint, "GET", f"/ui/{operation['name']}")[1]["response"]["name"]


def deploy(vertex: FakeVertex, name: str, split: dict) -> tuple[int, dict]:
    return call(vertex.endpoint, "POST", f"/v1/{name}:deployModel",
                {"deployedModel": {"model": f"{PARENT}/models/1@1"}, "trafficSplit": split})


@pytest.mark.parametrize(("stand_in", "method", "path", "body", "misspelled"), [
    ("vertex", "POST", f"/v1/{PARENT}/endpoints", {"dispalyName": "e"}, "dispalyName"),
    ("vertex", "POST", f"/v1/{PARENT}/models:upload", {"model": {"artifactUrl": "gs://b/m"}}, "artifactUrl"),
    ("monitors", "POST", f"/v1beta1/{MONITOR}:searchModelMonitoringAlerts", {"objectivType": "x"}, "objectivType"),
    ("monitors", "POST", f"/v1beta1/{PARENT}/modelMonitors", {"displayNme": "m"}, "displayNme"),
])
def test_each_stand_in_refuses_a_misspelled_field_with_googles_400(request, stand_in, method, path, body,
                                                                   misspelled) -> None:
    fake = request.getfixturevalue(stand_in)
    status, reply = call(getattr(fake, "endpoint", None) or fake.url, method, path, body)
    assert (status, reply["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert f'Unknown name "{misspelled}"' in reply["error"]["message"]


def test_a_create_is_an_operation_finished_when_polled(vertex) -> None:
    status, operation = call(vertex.endpoint, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "lro"})
    # proto3 JSON leaves out a false `done`, as Google's own replies do.
    assert status == 200 and not operation.get("done") and "response" not in operation
    status, polled = call(vertex.endpoint, "GET", f"/ui/{operation['name']}")
    assert polled["done"] is True
    assert polled["response"]["@type"] == "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint"


def test_traffic_split_rules(vertex) -> None:
    name = endpoint(vertex)
    assert deploy(vertex, name, {"0": 90})[0] == 400  # does not sum to 100
    assert deploy(vertex, name, {"0": 50, "77": 50})[0] == 400  # 77 is no deployed model
    assert deploy(vertex, name, {"0": 100})[0] == 200  # "0": the model this call deploys
    [first] = vertex.endpoints[name.rsplit("/", 1)[1]].deployed_models
    assert deploy(vertex, name, {"0": 10, first.id: 90})[0] == 200
    current = dict(vertex.endpoints[name.rsplit("/", 1)[1]].traffic_split)
    assert sorted(current.values()) == [10, 90] and "0" not in current  # the new model's id filled in
    status, reply = call(vertex.endpoint, "PATCH", f"/v1/{name}?updateMask=trafficSplit", {"trafficSplit": {"0": 100}})
    assert status == 400 and "['0']" in reply["error"]["message"]  # "0" names no deployed model outside a deploy


def test_a_deployed_model_with_traffic_is_undeployed_only_if_the_split_unassigns_it_or_it_is_the_last(vertex):
    name = endpoint(vertex)
    deploy(vertex, name, {"0": 100})
    first = vertex.endpoints[name.rsplit("/", 1)[1]].deployed_models[0].id
    deploy(vertex, name, {"0": 50, first: 50})
    second = next(m.id for m in vertex.endpoints[name.rsplit("/", 1)[1]].deployed_models if m.id != first)
    status, reply = call(vertex.endpoint, "POST", f"/v1/{name}:undeployModel", {"deployedModelId": first})
    assert (status, reply["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert call(vertex.endpoint, "POST", f"/v1/{name}:undeployModel",
                {"deployedModelId": first, "trafficSplit": {second: 100}})[0] == 200
    assert call(vertex.endpoint, "POST", f"/v1/{name}:undeployModel", {"deployedModelId": second})[0] == 200
    assert not vertex.endpoints[name.rsplit("/", 1)[1]].traffic_split  # the last one: the split ends up empty


def test_a_stale_etag_is_aborted(vertex) -> None:
    name = endpoint(vertex)
    etag = call(vertex.endpoint, "GET", f"/v1/{name}")[1]["etag"]
    assert call(vertex.endpoint, "PATCH", f"/v1/{name}?updateMask=labels", {"labels": {"a": "1"}, "etag": etag})[0] \
        == 200
    status, reply = call(vertex.endpoint, "PATCH", f"/v1/{name}?updateMask=labels", {"labels": {"a": "2"},
                                                                                       "etag": etag})
    assert (status, reply["error"]["status"]) == (409, "ABORTED")


def test_request_response_logging_destinations(vertex) -> None:
    def logging(uri: str, rate: float = 1.0) -> dict:
        return {"predictRequestResponseLoggingConfig": {"enabled": True, "samplingRate": rate,
                                                         "bigqueryDestination": {"outputUri": uri}}}

    with pytest.raises(AssertionError, match=r"not in \(0, 1\]"):
        endpoint(vertex, **logging("bq://test-project.mlops_logs.a", 0))
    with pytest.raises(AssertionError, match="dataset test-project.nowhere not found"):
        endpoint(vertex, **logging("bq://test-project.nowhere.a"))
    name = endpoint(vertex, **logging("bq://test-project.mlops_logs.a"))  # kept on the endpoint, table created
    assert call(vertex.endpoint, "GET", f"/v1/{name}")[1]["predictRequestResponseLoggingConfig"][
        "bigqueryDestination"] == {"outputUri": "bq://test-project.mlops_logs.a"}
    with pytest.raises(AssertionError, match="already exists"):
        endpoint(vertex, **logging("bq://test-project.mlops_logs.a"))
    project_only = endpoint(vertex, displayName="taxi-dev", **logging("bq://test-project"))
    assert vertex.log_table(vertex.endpoints[project_only.rsplit("/", 1)[1]]) == \
        f"test-project.logging_taxi_dev_{project_only.rsplit('/', 1)[1]}.request_response_logging"


def test_registry_artifacts_aliases_and_versions(vertex) -> None:
    upload = f"/v1/{PARENT}/models:upload"
    status, reply = call(vertex.endpoint, "POST", upload, {"model": {"displayName": NAME, "artifactUri": "/tmp/m"}})
    assert status == 400 and "is not gs://" in reply["error"]["message"]
    for number in (1, 2):
        assert call(vertex.endpoint, "POST", upload, {"model": {"displayName": NAME, "artifactUri": f"gs://b/{number}",
                                                                "versionAliases": ["champion"]}})[0] == 200
    aliases = {v["versionId"]: v["versionAliases"] for v in vertex.versions}
    assert aliases == {"1": [], "2": ["champion"]}  # the alias moved to the new version
    assert call(vertex.endpoint, "GET", f"/v1/{PARENT}/models/1@champion")[1]["versionId"] == "2"
    status, _ = call(vertex.endpoint, "POST", f"/v1/{PARENT}/models/1@champion:mergeVersionAliases",
                     {"versionAliases": ["previous"]})
    assert status == 404  # MergeVersionAliases names the version by its id
    call(vertex.endpoint, "POST", f"/v1/{PARENT}/models/1@1:mergeVersionAliases", {"versionAliases": ["champion"]})
    assert {v["versionId"]: v["versionAliases"] for v in vertex.versions} == {"1": ["champion"], "2": []}


def test_alerts_are_filtered_sorted_newest_first_and_paged(monitors) -> None:
    for minutes, feature in enumerate(("fare", "company", "trip_miles")):
        monitors.alerts.add_drift_alert(MONITOR, JOB, feature, 0.1, T0 + datetime.timedelta(minutes=minutes))
    monitors.alerts.add_drift_alert(MONITOR, f"{MONITOR}/modelMonitoringJobs/6", "fare", 0.1, T0)
    monitors.alerts.add_drift_alert(MONITOR, JOB, "probability", 0.1, T0, objective="prediction-output-drift")
    search = f"/v1beta1/{MONITOR}:searchModelMonitoringAlerts"
    interval = {"startTime": "2026-11-23T06:00:00Z", "endTime": "2026-11-23T06:02:00Z"}  # end exclusive
    status, page = call(monitors.url, "POST", search, {"modelMonitoringJob": JOB, "objectiveType": "raw-feature-drift",
                                                       "alertTimeInterval": interval, "pageSize": 1})
    assert status == 200 and [a["statsName"] for a in page["modelMonitoringAlerts"]] == ["company"]
    assert page["totalNumberAlerts"] == "2" and page["nextPageToken"]
    _, rest = call(monitors.url, "POST", search, {"modelMonitoringJob": JOB, "objectiveType": "raw-feature-drift",
                                                  "alertTimeInterval": interval, "pageToken": page["nextPageToken"]})
    assert [a["statsName"] for a in rest["modelMonitoringAlerts"]] == ["fare"] and "nextPageToken" not in rest
    alert = rest["modelMonitoringAlerts"][0]
    assert alert["anomaly"]["tabularAnomaly"]["condition"] == {"threshold": 0.1}
    assert call(monitors.url, "POST", f"/v1beta1/{PARENT}/modelMonitors/999:searchModelMonitoringAlerts", {})[0] == 404


def test_anomaly_entries_are_log_entries() -> None:
    entry = anomaly_log_entry("test-project", T0, names={"job": JOB})
    assert entry["jsonPayload"] == {"@type": "type.googleapis.com/google.cloud.aiplatform.logging."
                                             "ModelMonitoringAnomaliesLogEntry", "job": JOB}
    logging = discovery.load("logging.v2")
    assert list(logging.problems(entry | {"timestamp": "yesterday"}, {"$ref": "LogEntry"}, ""))  # the check bites
