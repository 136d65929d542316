"""The stand-ins outside Vertex's endpoints, registry and monitors refuse what Google would: the triggers' pipelines
API, the Cloud Storage paging proxy and Cloud Monitoring's timeSeries.list. (The Vertex ones:
test_vertex_stand_ins.py; BigQuery and the batch job: tests/batch_prediction/test_batch_vertex_job.py; the local
pipelines API: tests/monitoring/test_local_jobs_api.py.)"""

from __future__ import annotations

import pytest
import requests

from tests.deploy.vertex_endpoint_stand_in import FakeVertex
from tests.pipeline.model_registry_stand_in import PARENT, PROJECT
from tests.triggers.trigger_helpers import FakeVertex as FakePipelinesApi
from tests.triggers.trigger_helpers import PagingGcs

MONITORING_QUERY = ("filter=x&interval.startTime=2026-01-01T00:00:00Z&interval.endTime=2026-01-01T00:05:00Z"
                    "&aggregation.alignmentPeriod=300s")


@pytest.fixture(scope="module")
def servers():
    pipelines, gcs, vertex = FakePipelinesApi(), PagingGcs("http://127.0.0.1:9"), FakeVertex()
    yield {"pipelines": pipelines.url, "gcs": gcs.url, "monitoring": vertex.endpoint}
    pipelines.close()
    gcs.close()
    vertex.server.close()


@pytest.mark.parametrize(("server", "method", "path", "body", "named"), [
    ("pipelines", "POST", f"/v1/{PARENT}/pipelineJobs?pipelineJobId=j", {"runtimeConfg": {}}, '"runtimeConfg"'),
    ("pipelines", "POST", f"/v1/{PARENT}/pipelineJobs?pipelineJobID=j", {}, '"pipelineJobID"'),
    ("pipelines", "POST", f"/v1/{PARENT}/pipelineJobs?pipelineJobId=j", {"labels": ["trigger"]}, "'labels'"),
    ("gcs", "GET", "/storage/v1/b/bucket/o?prefx=data/", None, '"prefx"'),
    ("gcs", "GET", "/storage/v1/b/bucket/o?maxResults=many", None, "'maxResults'"),
    ("monitoring", "GET", f"/v3/projects/{PROJECT}/timeSeries?{MONITORING_QUERY}&aggregation.perSeriesAligner="
                          "ALIGN_MOSTLY", None, "TYPE_ENUM"),
    ("monitoring", "GET", f"/v3/projects/{PROJECT}/timeSeries?{MONITORING_QUERY}&aggregaton.groupByFields=x", None,
     '"aggregaton.groupByFields"'),
], ids=["pipelines-body", "pipelines-query", "pipelines-type", "gcs-query", "gcs-type", "monitoring-enum",
        "monitoring-query"])
def test_what_google_would_refuse_gets_its_400_before_the_stand_in_acts(servers, server, method, path, body,
                                                                        named) -> None:
    reply = requests.request(method, servers[server] + path, json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT" and named in reply.json()["error"]["message"]
