"""The discovery-document validator every stand-in goes through (fidelity/discovery.py), on Google's own
documents: what it accepts is what the real API accepts, by the proto3 JSON mapping."""

from __future__ import annotations

import json

import pytest

from fidelity import discovery


@pytest.fixture(scope="module")
def aiplatform() -> discovery.DiscoveryApi:
    return discovery.load("aiplatform.v1")


def _check(api, method: str, path: str, body: dict | None = None) -> discovery.Method:
    found = discovery.route((api,), method, path)
    api.check_request(found, path.partition("?")[2], json.dumps(body).encode() if body is not None else b"")
    return found


ENDPOINT = "/v1/projects/p/locations/us-central1/endpoints/123"


def test_paths_name_the_most_specific_method(aiplatform):
    assert _check(aiplatform, "GET", ENDPOINT).id == "aiplatform.projects.locations.endpoints.get"
    assert _check(aiplatform, "POST", ENDPOINT + ":deployModel",
                  {"deployedModel": {"model": "projects/p/locations/l/models/1@2"}}).id.endswith("deployModel")
    assert _check(aiplatform, "GET", "/v1/projects/p/locations/l/models/1:listVersions").id.endswith("listVersions")
    # The GAPIC REST transport polls operations at /ui/{name}: read as v1.
    assert _check(aiplatform, "GET", "/ui/projects/p/locations/l/endpoints/1/operations/9").id.endswith(
        "endpoints.operations.get")
    with pytest.raises(discovery.Invalid, match="no method of aiplatform.v1") as error:
        _check(aiplatform, "GET", "/v1/projects/p/locations/l/endpointz/1")
    assert error.value.status == 404


def test_a_misspelled_body_field_gets_googles_400(aiplatform):
    with pytest.raises(discovery.Invalid, match=r'Unknown name "dispalyName": Cannot find field') as error:
        _check(aiplatform, "POST", "/v1/projects/p/locations/l/endpoints", {"dispalyName": "x"})
    assert (error.value.status, error.value.code) == (400, "INVALID_ARGUMENT")
    with pytest.raises(discovery.Invalid, match=r"Unknown name \"machineTyp\" at 'deployed_model.dedicated_resources"
                                                r".machine_spec'"):
        _check(aiplatform, "POST", ENDPOINT + ":deployModel",
               {"deployedModel": {"dedicatedResources": {"machineSpec": {"machineTyp": "n1-standard-2"}}}})


def test_wrong_json_types_are_refused(aiplatform):
    with pytest.raises(discovery.Invalid, match=r"Invalid value at 'traffic_split\[0\]' \(TYPE_INT32\), \"ten\""):
        _check(aiplatform, "PATCH", ENDPOINT + "?updateMask=trafficSplit", {"trafficSplit": {"0": "ten"}})
    with pytest.raises(discovery.Invalid, match=r"Invalid value at 'labels' \(TYPE_MESSAGE\)"):
        _check(aiplatform, "PATCH", ENDPOINT + "?updateMask=labels", {"labels": ["a"]})
    with pytest.raises(discovery.Invalid, match=r"TYPE_ENUM.*expected one of"):
        _check(aiplatform, "POST", "/v1/projects/p/locations/l/pipelineJobs",
               {"runtimeConfig": {"failurePolicy": "STOP_NOW"}})


def test_what_the_proto3_json_mapping_allows_is_accepted(aiplatform):
    _check(aiplatform, "PATCH", ENDPOINT + "?updateMask=traffic_split&$alt=json%3Benum-encoding%3Dint",
           {"traffic_split": {"1": 90, "2": "10"}, "etag": "e", "labels": {"a": "b"}, "createTime": None})
    _check(aiplatform, "POST", "/v1/projects/p/locations/l/pipelineJobs?pipelineJobId=j",
           {"runtimeConfig": {"failurePolicy": 2, "parameterValues": {"n": 3, "s": "x", "l": [1]}}})


def test_unknown_query_parameters_are_refused(aiplatform):
    with pytest.raises(discovery.Invalid, match=r'Unknown name "pipelineJobID": Cannot bind query parameter'):
        _check(aiplatform, "POST", "/v1/projects/p/locations/l/pipelineJobs?pipelineJobID=j", {})
    monitoring = discovery.load("monitoring.v3")
    query = ("filter=x&interval.startTime=2026-01-01T00:00:00Z&interval.endTime=2026-01-01T00:05:00Z"
             "&aggregation.perSeriesAligner=ALIGN_SUM&aggregation.alignmentPeriod=300s")
    _check(monitoring, "GET", f"/v3/projects/p/timeSeries?{query}")
    with pytest.raises(discovery.Invalid, match=r'Unknown name "aggregation.perSeriesAlignr"'):
        _check(monitoring, "GET", f"/v3/projects/p/timeSeries?{query}&aggregation.perSeriesAlignr=ALIGN_SUM")
    with pytest.raises(discovery.Invalid, match=r"TYPE_ENUM"):
        _check(monitoring, "GET", "/v3/projects/p/timeSeries?aggregation.perSeriesAligner=ALIGN_SOMETIMES")


def test_replies_and_typed_payloads_are_held_to_the_response_schema(aiplatform):
    get = discovery.route((aiplatform,), "GET", ENDPOINT)
    assert aiplatform.reply_problems(get, {"name": "n", "displayName": "d", "trafficSplit": {"1": 100}}) == []
    assert aiplatform.reply_problems(get, {"name": "n", "trafic": {}}) == ['Unknown name "trafic": Cannot find field.']
    poll = discovery.route((aiplatform,), "GET", "/ui/projects/p/locations/l/endpoints/1/operations/9")
    typed = {"name": "o", "done": True, "response": {
        "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse",
        "deployedModel": {"id": "1", "modelVersion": "2"}}}
    [problem] = aiplatform.reply_problems(poll, typed)
    assert 'Unknown name "modelVersion" at \'response.deployed_model\'' in problem


def test_a_missing_document_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv(discovery.DISCOVERY_DIR_ENV, str(tmp_path))
    discovery.load.cache_clear()
    try:
        with pytest.raises(discovery.DiscoveryNotFound, match=r"make env"):
            discovery.load("aiplatform.v1")
    finally:
        monkeypatch.delenv(discovery.DISCOVERY_DIR_ENV)
        discovery.load.cache_clear()


def test_what_google_cloud_bigquery_sends_beyond_the_document_is_accepted_where_it_is_sent():
    """The client's jobs.get carries jobs.list's `projection`, and its paged reads a query-string "True": both
    answered by BigQuery (fidelity/discovery.py, UNLISTED_PARAMETERS and the boolean rule), nothing wider."""
    bigquery = discovery.load("bigquery.v2")
    assert _check(bigquery, "GET", "/bigquery/v2/projects/p/jobs/j?projection=full&location=US").id == \
        "bigquery.jobs.get"
    with pytest.raises(discovery.Invalid, match=r"TYPE_ENUM"):
        _check(bigquery, "GET", "/bigquery/v2/projects/p/jobs/j?projection=everything")
    with pytest.raises(discovery.Invalid, match='Unknown name "projection"'):
        _check(bigquery, "GET", "/bigquery/v2/projects/p/queries/j?projection=full")
    assert _check(bigquery, "GET", "/bigquery/v2/projects/p/queries/j?formatOptions.useInt64Timestamp=True").id == \
        "bigquery.jobs.getQueryResults"
    with pytest.raises(discovery.Invalid, match=r"TYPE_BOOL"):
        _check(bigquery, "GET", "/bigquery/v2/projects/p/queries/j?formatOptions.useInt64Timestamp=yes")
