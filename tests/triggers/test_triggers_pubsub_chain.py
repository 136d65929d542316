"""The drift chain end to end on this machine: Pub/Sub emulator -> push -> functions-framework -> Vertex stand-in.

A LogEntry is published as a Logging sink would publish it; the emulator's push
subscription delivers it to the drift-alert function served from its deploy
folder (template read from the GCS emulator); the function's create request
reaches the Vertex stand-in.
"""

from __future__ import annotations

import json
import uuid

import pytest
from test_triggers_drift_alert import alerts_of_our_run, own_entry, vertex_entry
from trigger_helpers import MODEL, MONITORING_JOB, TRAINING_TEMPLATE, FakeVertex, log_lines, wait_until

from tests.gcs_emulator import GcsEmulator

pytestmark = pytest.mark.emulator


@pytest.fixture
def chain(pubsub_emulator: str, serve_function, fake_vertex: FakeVertex, gcs: GcsEmulator, trigger_env: dict,
          monkeypatch: pytest.MonkeyPatch):
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    template = f"{uuid.uuid4().hex}/training_pipeline.json"
    template_uri = gcs.upload("templates", template, TRAINING_TEMPLATE.read_bytes())
    url = serve_function("drift_alert", "on_drift_log_entry",
                         {**trigger_env, "MLOPS_TRAINING_TEMPLATE_URI": template_uri,
                          "STORAGE_EMULATOR_HOST": gcs.url, "MLOPS_TEMPLATE_CACHE_SECONDS": "300"})
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path("test-project", f"drift-alerts-{suffix}")
    subscription = subscriber.subscription_path("test-project", f"drift-push-{suffix}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(request={"name": subscription, "topic": topic, "ack_deadline_seconds": 10,
                                            "push_config": {"push_endpoint": url}})

    def publish(entry: dict) -> None:
        publisher.publish(topic, json.dumps(entry).encode(), **{"logging.googleapis.com/timestamp": "x"}).result(30)

    publish.template = template  # type: ignore[attr-defined]  # its name in the `templates` bucket
    yield publish
    subscriber.delete_subscription(subscription=subscription)
    publisher.delete_topic(topic=topic)


def test_one_alert_then_the_same_alert_again_start_exactly_one_retraining_run(chain, fake_vertex: FakeVertex,
                                                                              serve_function) -> None:
    chain(own_entry("2026-11-08T06:00:00Z", insert_id="first"))
    (call,) = fake_vertex.wait_for_calls(1)
    assert call["status"] == 200
    assert call["job_id"] == f"training-pipeline-drift-{MODEL}-202611080000"
    assert call["body"]["labels"]["trigger"] == "drift-alert"
    assert call["body"]["runtimeConfig"]["parameterValues"]["data_uri"].endswith("/data/processed/2026/11")

    # Within the cooldown: the function asks again, Vertex refuses the duplicate id, no new run.
    chain(own_entry("2026-11-08T09:00:00Z", insert_id="second"))
    calls = fake_vertex.wait_for_calls(2)
    assert [c["status"] for c in calls] == [200, 409]
    assert list(fake_vertex.jobs) == [call["job_id"]]
    wait_until(lambda: sum(e.get("outcome") == "already-submitted" for e in log_lines(serve_function.logs())) == 1,
               10, "the function to log the redelivery")


def test_a_vertex_model_monitoring_entry_starts_retraining_from_the_deploy_folder(chain,
                                                                                  fake_vertex: FakeVertex) -> None:
    """The v2 anomaly entry through the emulator to the function as deployed: it reads the monitor's alerts
    (searchModelMonitoringAlerts, plain HTTP) and submits the run."""
    alerts_of_our_run(fake_vertex)
    chain(vertex_entry(job=MONITORING_JOB))
    (call,) = fake_vertex.wait_for_calls(1)
    assert call["status"] == 200 and call["job_id"] == f"training-pipeline-drift-{MODEL}-202202030000"
    assert [search["modelMonitoringJob"] for search in fake_vertex.alerts.searches] == [MONITORING_JOB]


def test_a_transient_vertex_error_is_retried_by_pubsub(chain, fake_vertex: FakeVertex) -> None:
    fake_vertex.fail_next(503, "The service is currently unavailable.")
    chain(own_entry("2026-11-10T06:00:00Z", insert_id="retry-me"))
    # The function answers 500, Pub/Sub redelivers after its backoff, the run is then created once.
    calls = fake_vertex.wait_for_calls(2, timeout=60)
    assert [c["status"] for c in calls] == [503, 200]
    assert calls[0]["job_id"] == calls[1]["job_id"]
    assert len(fake_vertex.jobs) == 1


def test_an_alert_while_the_template_is_missing_is_retried_by_pubsub_until_it_appears(
        chain, fake_vertex: FakeVertex, gcs: GcsEmulator, serve_function) -> None:
    gcs.delete("templates", chain.template)  # a deploy is rewriting it (the function has not read it yet)
    chain(own_entry("2026-11-12T06:00:00Z", insert_id="during-deploy"))

    def refusals() -> int:
        return sum(e.get("outcome") == "retry" and e["severity"] == "ERROR" for e in log_lines(serve_function.logs()))

    wait_until(lambda: refusals() >= 2, 60, "Pub/Sub to redeliver while the template is missing")
    assert fake_vertex.calls == []
    gcs.upload("templates", chain.template, TRAINING_TEMPLATE.read_bytes())
    (call,) = fake_vertex.wait_for_calls(1, timeout=60)
    assert call["status"] == 200 and call["job_id"] == f"training-pipeline-drift-{MODEL}-202611120000"
    wait_until(lambda: any(e.get("outcome") == "submitted" for e in log_lines(serve_function.logs())), 10,
               "the function to log the run")
    assert len(fake_vertex.jobs) == 1
