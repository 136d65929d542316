"""The Vertex backend through the real aiplatform client (REST) against the stand-in Endpoints API,
which enforces Vertex's rules. For first deploy, canary deploy, promote and rollback, the requests
the client sent (recorded by the stand-in) are the sequence Vertex's REST API expects."""

from __future__ import annotations

import contextlib

import pytest

from deploy import deploy_version
from deploy.decision import Thresholds, decide_canary
from deploy.evidence import FEEDBACK_SCHEMA, CanaryTables
from deploy.plan import CHAMPION, PREVIOUS, REJECTED, plan_promote, plan_rollback
from deploy.rollout import Rollout, RolloutState
from deploy.smoke import SmokeTestFailed
from deploy.transitions import apply_transition
from deploy.vertex import JOURNAL_LABEL, LOCK_LABEL, ROLLOUT_LABEL, VertexBackend
from registry.model_registry import VertexModelRegistry
from serving.testing import demo_instances
from storage import bigquery_dialect
from tests.bigquery_stand_in import BigQueryStandIn
from tests.deploy.canary_data import VertexRequestLogging
from tests.deploy.vertex_endpoint_stand_in import _split_shape, stand_in_vertex
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PROJECT

pytestmark = pytest.mark.emulator
ENDPOINT = "taxi-endpoint"
TABLES = CanaryTables(f"bq://{PROJECT}.endpoint_logs.request_response_logging", f"bq://{PROJECT}.canary.feedback")


@pytest.fixture
def vertex(gcs_bucket, demo_models, gcs_emulator):
    with stand_in_vertex() as fake:
        registry = VertexModelRegistry(PROJECT, LOCATION, "serving-image")
        for number, model_dir in enumerate(demo_models, start=1):
            uri = f"gs://{gcs_bucket}/models/{number}"
            gcs_emulator.upload_tree(model_dir, uri)
            registry.register(NAME, uri, {}, ("challenger", CHAMPION) if number == 1 else ("challenger",))
        yield fake, VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, machine_type="n1-standard-2")


def test_first_deploy_then_canary_then_promote_then_rollback(vertex):
    fake, backend = vertex
    first = deploy_version(backend, "1")
    assert (first.transition, fake.endpoint_state()) == ("first", {"split": {"1": 100}, "deployed": ["1"]})
    deployed = fake.requests[-1]
    canary = deploy_version(backend, "2", canary_percent=10)
    assert canary.transition == "canary" and fake.endpoint_state() == {"split": {"1": 90, "2": 10},
                                                                       "deployed": ["1", "2"]}
    [deploy_body] = [body for method, route, body in fake.requests if route.endswith(":deployModel")][1:]
    assert deploy_body["trafficSplit"] == {"0": 10, first.deployed_model_id: 90}
    assert deploy_body["deployedModel"]["dedicatedResources"]["machineSpec"]["machineType"] == "n1-standard-2"
    assert deploy_body["deployedModel"]["model"].endswith("/models/1@2")
    assert deployed  # the stand-in saw the first deploy's poll
    assert fake.polled, "long-running operations were never polled"

    with backend.exclusive():
        apply_transition(backend, plan_promote(NAME, "2", "1"), report=lambda line: None)
    assert fake.endpoint_state() == {"split": {"2": 100}, "deployed": ["2"]}
    registry = backend.registry
    assert registry.get(NAME, CHAMPION).version == "2" and registry.get(NAME, PREVIOUS).version == "1"
    labels = fake.the_endpoint().labels
    assert LOCK_LABEL not in labels and JOURNAL_LABEL not in labels

    deploy_version(backend, "3")
    with backend.exclusive():
        apply_transition(backend, plan_rollback(NAME, "3", "2", "test"), report=lambda line: None)
    assert fake.endpoint_state() == {"split": {"2": 100}, "deployed": ["2"]}
    assert registry.get(NAME, REJECTED).version == "3" and registry.get(NAME, CHAMPION).version == "2"


def test_a_canary_that_answers_wrongly_is_rolled_back_on_vertex(vertex):
    fake, backend = vertex
    deploy_version(backend, "1")
    fake.wrong_answers.add("2")
    with pytest.raises(SmokeTestFailed, match="answers differently"):
        deploy_version(backend, "2")
    assert fake.endpoint_state() == {"split": {"1": 100}, "deployed": ["1"]}
    assert backend.registry.get(NAME, REJECTED).version == "2"


LOCK, JOURNAL, UNLOCK = ("PATCH endpoints/E?updateMask=labels labels=deploy-lock,managed",
                         "PATCH endpoints/E?updateMask=labels labels=deploy-lock,managed,transition",
                         "PATCH endpoints/E?updateMask=labels labels=managed")
# With a canary's rollout state on the endpoint (written once its smoke test passed, cleared when it ends).
ROLLOUT_LOCK, ROLLOUT_JOURNAL = (LOCK + ",rollout", "PATCH endpoints/E?updateMask=labels labels=deploy-lock,managed,"
                                                    "rollout,transition")
POLL = "GET endpoints/E/operations/O"
EXPECTED = {
    "first": ["GET endpoints", "POST endpoints", POLL, LOCK, JOURNAL, "POST endpoints/E:deployModel split=0:100", POLL,
              "POST models/M@V:mergeVersionAliases champion", "POST endpoints/E:predict", LOCK, UNLOCK],
    "canary": [LOCK, JOURNAL, "POST endpoints/E:deployModel split=0:10,id:90", POLL, "POST endpoints/E:predict",
               ROLLOUT_JOURNAL, ROLLOUT_LOCK, UNLOCK + ",rollout"],
    "promote": [ROLLOUT_LOCK, ROLLOUT_JOURNAL, "PATCH endpoints/E?updateMask=trafficSplit split=id:100",
                "POST endpoints/E:undeployModel", POLL, "POST models/M@V:mergeVersionAliases champion",
                "POST models/M@V:mergeVersionAliases previous", JOURNAL, LOCK, UNLOCK],
    "rollback": [ROLLOUT_LOCK, ROLLOUT_JOURNAL, "PATCH endpoints/E?updateMask=trafficSplit split=id:100",
                 "POST endpoints/E:undeployModel", POLL, "POST models/M@V:mergeVersionAliases rejected", JOURNAL, LOCK,
                 UNLOCK],
}


def test_the_request_sequences_are_the_ones_vertex_expects(vertex):
    """Get or create the endpoint; take the lock (an etag-guarded label); journal; one atomic change per step
    (a deploy with its whole split, a whole split, an undeploy of a model without traffic), each long-running
    operation polled; the aliases; a deploy's smoke-test predictions; the rollout's state (a canary's starts,
    a promotion or rollback ends it) before the journal is cleared; release the lock."""
    fake, backend = vertex
    seen = {}
    for name, act in (("first", lambda: deploy_version(backend, "1")),
                      ("canary", lambda: deploy_version(backend, "2")),
                      ("promote", lambda: _transition(backend, plan_promote(NAME, "2", "1"))),
                      ("canary", lambda: deploy_version(backend, "3")),
                      ("rollback", lambda: _transition(backend, plan_rollback(NAME, "3", "2", "test")))):
        start = len(fake.requests)
        act()
        seen[name] = [call.split(" x")[0] for call in fake.calls(start)]  # predictions: how many varies by draw
    assert seen == EXPECTED


def _transition(backend, transition) -> None:
    with backend.exclusive():
        apply_transition(backend, transition, report=lambda line: None)


@pytest.fixture
def bigquery(tmp_path, monkeypatch):
    """The BigQuery stand-in the decision's SQL goes to, the endpoint's request-response log table in it."""
    stand_in = BigQueryStandIn(tmp_path / "bigquery-cloud")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", stand_in.url)
    with bigquery_dialect.connected([PROJECT], stand_in.local_dir) as connection:  # as Terraform makes it
        bigquery_dialect.run(connection, f"CREATE SCHEMA `{PROJECT}.canary`")
        bigquery_dialect.run(connection, f"CREATE TABLE `{TABLES.dotted(TABLES.feedback)}` ({FEEDBACK_SCHEMA})")
    try:
        yield stand_in, VertexRequestLogging(stand_in.local_dir, TABLES.dotted(TABLES.request_log))
    finally:
        stand_in.close()


def test_the_decision_on_vertex_reads_cloud_monitoring_per_deployed_model_and_rolls_back(vertex, bigquery):
    """Step evidence from timeSeries.list (the stand-in answers only queries in Cloud Monitoring's shape, one
    answer paged): the canary's errors exceed the champion's, so it is rolled back through the SDK."""
    fake, backend = vertex
    fake.request_logging = bigquery[1]
    deploy_version(backend, "1", report=lambda line: None)
    canary = deploy_version(backend, "2", canary_percent=50, report=lambda line: None)
    fake.failing.add("2")
    for instance in demo_instances(120, seed=5):
        backend.predict([instance])
    decision = decide_canary(backend, Thresholds(min_labelled=0), Rollout((50,), 0, 20, 1), TABLES,
                             report=lambda line: None)
    assert decision.action == "rollback" and "error rate failed" in decision.reasons[1]
    served = fake.served[canary.deployed_model_id]
    assert (decision.canary.step.requests, decision.canary.step.errors) == (served["requests"], served["errors"])
    assert decision.canary.step.p99_ms == 5.0
    metrics = {query["filter"].split('"')[1].rsplit("/", 1)[1] for query in fake.monitoring_queries}
    assert metrics == {"prediction_count", "error_count", "prediction_latencies"}
    assert any("pageToken" in query for query in fake.monitoring_queries)
    assert fake.endpoint_state() == {"split": {"1": 100}, "deployed": ["1"]}
    assert backend.registry.get(NAME, REJECTED).version == "2"
    assert ROLLOUT_LABEL not in dict(fake.the_endpoint().labels)  # the rollout ended with it
    assert "bigquery.jobs.insert" in bigquery[0].server.methods and bigquery[0].server.reply_problems == []


def test_a_canary_on_vertex_advances_step_by_step_then_is_promoted(vertex, bigquery):
    """The advance is one journaled, etag-guarded split; the rollout's state rides on the endpoint as a label;
    the logged predictions (the request-response log in BigQuery) feed prediction parity."""
    fake, backend = vertex
    fake.request_logging = bigquery[1]
    deploy_version(backend, "1", report=lambda line: None)
    canary = deploy_version(backend, "2", canary_percent=10, report=lambda line: None)
    labels = dict(fake.the_endpoint().labels)
    assert labels[ROLLOUT_LABEL].startswith(f"{canary.deployed_model_id}_") and labels[ROLLOUT_LABEL].endswith("_0_0")
    rollout = Rollout((10, 25), min_bake_minutes=0, min_requests=5, failure_threshold=1)
    # The smoke test's answers are logged too (as on Vertex): the canary's distribution differs a little.
    thresholds = Thresholds(min_labelled=0, max_js_divergence=0.5)
    for instance in demo_instances(100, seed=6):
        backend.predict([instance])
    start = len(fake.requests)
    advanced = decide_canary(backend, thresholds, rollout, TABLES, report=lambda line: None)
    assert advanced.action == "advance" and fake.endpoint_state()["split"] == {"1": 75, "2": 25}
    journaled = [body["labels"].get(JOURNAL_LABEL) for method, route, body in fake.requests[start:]
                 if route.endswith("updateMask=labels")]
    assert "advance_2_1_25" in journaled
    assert [_split_shape(body["trafficSplit"]) for method, route, body in fake.requests[start:]
            if route.endswith("updateMask=trafficSplit")] == ["id:75,id:25"]
    state = RolloutState.decode(dict(fake.the_endpoint().labels)[ROLLOUT_LABEL])
    assert (state.analyses, state.failures) == (1, 0) and state.step_started >= int(advanced.window_end)
    for instance in demo_instances(100, seed=7):
        backend.predict([instance])
    promoted = decide_canary(backend, thresholds, rollout, TABLES, report=lambda line: None)
    assert promoted.action == "promote", promoted.reasons
    parity = next(check for check in promoted.checks if check.name == "prediction parity")
    assert parity.status == "pass" and promoted.canary.logged.predictions >= 5
    assert fake.endpoint_state() == {"split": {"2": 100}, "deployed": ["2"]}
    assert [row["action"] for row in promoted.history] == ["advance", "promote"]


def test_of_two_writers_that_read_the_same_endpoint_only_one_takes_the_lock(vertex):
    """The Vertex lock is an etag-guarded label: a writer whose read is stale is refused (ABORTED)."""
    from google.api_core import exceptions

    fake, first = vertex
    second = VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME)
    first.endpoint()
    second.endpoint()  # both have read the same etag
    first._endpoint.update(labels={"mlops-deploy-lock": "9999999999-first", "mlops-managed": "true"})
    with pytest.raises(exceptions.Conflict, match="etag"):  # HTTP 409, status ABORTED
        second._endpoint.update(labels={"mlops-deploy-lock": "9999999999-second", "mlops-managed": "true"})
    assert fake.the_endpoint().labels["mlops-deploy-lock"].endswith("-first")


@pytest.fixture
def quick_lock(monkeypatch):
    """A lock wait of a fraction of a second, so a writer that cannot take the lock gives up at once."""
    import deploy.vertex as vertex_module

    monkeypatch.setattr(vertex_module, "LOCK_WAIT_SECONDS", 0.3)
    monkeypatch.setattr(vertex_module, "LOCK_POLL_SECONDS", 0.05, raising=False)
    return vertex_module


def test_a_writer_that_takes_the_lock_between_our_read_and_our_write_keeps_it(vertex, quick_lock):
    """Defect 4: we read the endpoint and find no lock; before we write, another writer (a second real client)
    takes it. Our take carries the etag of the read that found the lock free, so Vertex refuses it (ABORTED):
    we wait and give up, and the other writer's lock stands. A take with the etag of a second read would
    overwrite it, and both would act at once."""
    fake, first = vertex
    second = VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME)
    first.endpoint()
    second.endpoint()
    second_holds = contextlib.ExitStack()
    fake.after_next_read(lambda: second_holds.enter_context(second.exclusive()))
    with pytest.raises(quick_lock.LockNotTaken, match="held by another deploy"), first.exclusive():
        pytest.fail("two writers hold the endpoint's lock at once")
    rival = fake.the_endpoint().labels[LOCK_LABEL]
    assert rival == second._held  # untouched
    second_holds.close()
    assert LOCK_LABEL not in fake.the_endpoint().labels


def test_a_holder_whose_lock_expired_and_was_taken_leaves_it_to_the_new_holder(vertex, quick_lock, monkeypatch,
                                                                               capsys):
    """Defect 4, the release: our hold expired (here: born expired) and another writer took the lock. Our journal
    write and our release find the lock is no longer ours: they raise LockLost and leave the label as found."""
    fake, first = vertex
    second = VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME)
    monkeypatch.setattr(quick_lock, "LOCK_SECONDS", -1)
    second_holds = contextlib.ExitStack()
    with pytest.raises(quick_lock.LockLost, match="no longer ours"), first.exclusive():
        monkeypatch.setattr(quick_lock, "LOCK_SECONDS", 3600)
        second_holds.enter_context(second.exclusive())  # sees our lock expired: takes it
        with pytest.raises(quick_lock.LockLost, match="no longer ours"):
            first.write_journal(plan_promote(NAME, "2", "1").to_dict())
    labels = fake.the_endpoint().labels
    assert labels[LOCK_LABEL] == second._held and JOURNAL_LABEL not in labels
    second_holds.close()
    assert LOCK_LABEL not in fake.the_endpoint().labels

    # A body that fails keeps its own error; the lost lock is reported beside it.
    monkeypatch.setattr(quick_lock, "LOCK_SECONDS", -1)
    with pytest.raises(ZeroDivisionError), first.exclusive():
        monkeypatch.setattr(quick_lock, "LOCK_SECONDS", 3600)
        second_holds.enter_context(second.exclusive())
        1 / 0  # noqa: B018
    assert "no longer ours" in capsys.readouterr().err
    assert fake.the_endpoint().labels[LOCK_LABEL] == second._held
    second_holds.close()


LOG_TABLE = f"bq://{PROJECT}.mlops_logs.requests_dev"


def _logging_config(fake) -> dict:
    from tests.stand_in_http import message_json

    return message_json(fake.the_endpoint()).get("predictRequestResponseLoggingConfig", {})


def _logging_patches(fake) -> list[dict]:
    return [body for method, route, body in fake.requests
            if method == "PATCH" and route.endswith("updateMask=predictRequestResponseLoggingConfig")]


def test_the_endpoint_deploy_creates_logs_requests_to_the_configured_table(vertex):
    """Defect 6: Model Monitoring v2 reads an endpoint's traffic only from its request-response log, so the
    endpoint is created with it (Endpoint.create's request-response logging arguments)."""
    from deploy.vertex import RequestLogging

    fake, _ = vertex
    backend = VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, request_logging=RequestLogging(LOG_TABLE, 0.25))
    deploy_version(backend, "1", report=lambda line: None)
    [create] = [body for method, route, body in fake.requests if method == "POST" and route.endswith("/endpoints")]
    assert create["predictRequestResponseLoggingConfig"] == {
        "enabled": True, "samplingRate": 0.25, "bigqueryDestination": {"outputUri": LOG_TABLE}}
    assert _logging_config(fake) == create["predictRequestResponseLoggingConfig"]  # kept on the endpoint
    assert fake.log_table(fake.the_endpoint()) == LOG_TABLE.removeprefix("bq://") and not _logging_patches(fake)


def test_an_endpoint_found_without_logging_is_brought_to_it_once(vertex):
    """An endpoint made elsewhere without request-response logging (Terraform before it set it) gets it with
    one etag-guarded PATCH; found again with it, nothing is sent; a new sampling rate is one more PATCH that
    keeps the table."""
    from google.cloud import aiplatform

    from deploy.vertex import RequestLogging

    fake, _ = vertex
    aiplatform.Endpoint.create(display_name=ENDPOINT)
    assert _logging_config(fake) == {}
    VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, request_logging=RequestLogging(LOG_TABLE, 0.5)).endpoint()
    assert _logging_config(fake) == {"enabled": True, "samplingRate": 0.5,
                                     "bigqueryDestination": {"outputUri": LOG_TABLE}}
    assert [patch["etag"] for patch in _logging_patches(fake)] == ["etag-1"]  # the etag of the read it acted on

    VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, request_logging=RequestLogging(LOG_TABLE, 0.5)).endpoint()
    VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME).endpoint()  # no logging asked for: left as found
    assert len(_logging_patches(fake)) == 1
    VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, request_logging=RequestLogging("", 0.1)).endpoint()
    assert _logging_config(fake)["samplingRate"] == 0.1
    assert _logging_config(fake)["bigqueryDestination"] == {"outputUri": LOG_TABLE}


def test_logging_settings_vertex_would_refuse_are_named(vertex):
    from deploy.vertex import RequestLogging, RequestLoggingError

    fake, _ = vertex
    with pytest.raises(RequestLoggingError, match=r"sampling rate 0.*\(0, 1\]"):
        RequestLogging(LOG_TABLE, 0)
    with pytest.raises(RequestLoggingError, match="expected bq://PROJECT.DATASET.TABLE"):
        RequestLogging("mlops_logs.requests", 1.0)
    # The table exists already (another endpoint logs to it): Vertex creates the table, so it refuses.
    from google.cloud import aiplatform

    fake.bigquery_tables.add(LOG_TABLE.removeprefix("bq://"))
    aiplatform.Endpoint.create(display_name=ENDPOINT)
    with pytest.raises(RequestLoggingError, match="already exists.*must not exist yet"):
        VertexBackend(PROJECT, LOCATION, ENDPOINT, NAME, request_logging=RequestLogging(LOG_TABLE)).endpoint()
