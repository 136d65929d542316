"""No landed batch is lost: a batch that lands while the template is missing is trained once it appears.

The new-data function runs under a functions-framework server started from its
deploy folder, with the production template cache (300 s); the template is a
gs:// object in the GCS emulator, absent at first, as during a deploy that races
with a landing. Eventarc's retry policy is played by redelivering the same
CloudEvent after every 5xx answer, as Eventarc does (with backoff; here none).
The drift chain's Pub/Sub retries are proved with the real emulator in
test_triggers_pubsub_chain.py.
"""

from __future__ import annotations

import uuid

import requests
from cloudevents.http import to_binary
from test_triggers_new_data import storage_event
from trigger_helpers import TRAINING_TEMPLATE, FakeVertex, log_lines

from tests.gcs_emulator import GcsEmulator

MAX_ATTEMPTS = 10


def test_a_batch_landed_while_the_template_is_missing_is_trained_once_it_appears(
        serve_function, fake_vertex: FakeVertex, gcs: GcsEmulator, trigger_env: dict) -> None:
    template = f"{uuid.uuid4().hex}/training_pipeline.json"
    url = serve_function("new_data", "on_object_finalized",
                         {**trigger_env, "MLOPS_TRAINING_TEMPLATE_URI": f"gs://templates/{template}",
                          "STORAGE_EMULATOR_HOST": gcs.url, "MLOPS_TEMPLATE_CACHE_SECONDS": "300"})
    headers, body = to_binary(storage_event())

    def deliver() -> int:
        return requests.post(url, headers=headers, data=body, timeout=30).status_code

    answers = []
    while len(answers) < MAX_ATTEMPTS and (not answers or answers[-1] >= 500):
        answers.append(deliver())
        if len(answers) == 2:  # the deploy finishes writing the template between two retries
            gcs.upload("templates", template, TRAINING_TEMPLATE.read_bytes())
    assert answers == [500, 500, 200]
    (call,) = fake_vertex.calls
    assert call["status"] == 200 and call["job_id"].startswith("training-pipeline-new-data-201403010000-")

    assert deliver() == 200  # a late duplicate of the same event: Vertex refuses the id, no second run
    assert [c["status"] for c in fake_vertex.calls] == [200, 409] and len(fake_vertex.jobs) == 1

    entries = [e for e in log_lines(serve_function.logs()) if e.get("trigger") == "new-data"]
    assert [(e["severity"], e["outcome"]) for e in entries] == [
        ("ERROR", "retry"), ("ERROR", "retry"), ("INFO", "submitted"), ("INFO", "already-submitted")]
    assert f"gs://templates/{template}" in entries[0]["message"] and "HTTP 404" in entries[0]["message"]
