"""The compiled template cannot reuse an old ingest for new data: ingest's Vertex cache key follows the data.

Vertex AI Pipelines reuses a step's earlier execution when the step's cache key
matches. The key is (https://cloud.google.com/vertex-ai/docs/pipelines/configure-caching):
1. the step's inputs: input parameter values and input artifact ids;
2. its output definitions (names);
3. its component spec: image, command, args, environment;
within pipelines of the same name. kfp.local has no cache, so no local run can
show a stale cache hit; these tests compute that key from the compiled template
for two runs and compare. A cached step returns its earlier output artifacts, so
a downstream artifact id is the same exactly when its producer's key is: the
model below names an upstream artifact by its producer's key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from pipelines.compile import COMPILED_DIR

TEMPLATE = COMPILED_DIR / "training_pipeline.json"
DATA_URI = "gs://landing-data/data/processed/2014/03/01/0000"
# Every step that reads the landed data, directly or through ingest's output.
DATA_STEPS = ("ingest-data", "validate-data", "transform-data", "train-model", "evaluate-model")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def pinned_as_given(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the (never cached) snapshot step returns for files: data_uri and data_version as given."""
    return {"snapshot-data": {"data_uri": values["data_uri"], "data_version": values.get("data_version", "")}}


def cache_keys(spec: dict[str, Any], parameter_values: dict[str, Any],
               task_outputs: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Each root container task's cache key, as the documented key is formed, for one run's parameter values.
    An input parameter is keyed by its value (Vertex resolves it before it looks the step up): `task_outputs`
    gives the values uncached steps returned in this run (by default the snapshot step's for files); any
    other step's outputs are named by that step's key (a cached step returns the same outputs)."""
    task_outputs = pinned_as_given(parameter_values) if task_outputs is None else task_outputs
    root = spec["root"]
    run_values = {name: definition.get("defaultValue")
                  for name, definition in root["inputDefinitions"]["parameters"].items()}
    run_values.update(parameter_values)
    tasks = root["dag"]["tasks"]
    keys: dict[str, str] = {}

    def key(task_name: str) -> str:
        if task_name in keys:
            return keys[task_name]
        task = tasks[task_name]
        component = spec["components"][task["componentRef"]["name"]]
        inputs = task.get("inputs", {})
        parameters = {name: definition.get("defaultValue")
                      for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items()}
        for name, source in inputs.get("parameters", {}).items():
            if "componentInputParameter" in source:
                parameters[name] = run_values[source["componentInputParameter"]]
            elif "runtimeValue" in source:
                parameters[name] = source["runtimeValue"]["constant"]
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                if producer["producerTask"] in task_outputs:
                    parameters[name] = task_outputs[producer["producerTask"]][producer["outputParameterKey"]]
                else:
                    parameters[name] = ["output", key(producer["producerTask"]), producer["outputParameterKey"]]
            else:
                raise AssertionError(f"{task_name}.{name}: input source {source} not modelled")
        artifacts = {}
        for name, source in inputs.get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            artifacts[name] = [key(producer["producerTask"]), producer["outputArtifactKey"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        material = {"pipeline": spec["pipelineInfo"]["name"], "parameters": parameters, "artifacts": artifacts,
                    "outputs": sorted(component.get("outputDefinitions", {}).get("artifacts", {}))
                    + sorted(component.get("outputDefinitions", {}).get("parameters", {})),
                    "container": executor["container"]}
        keys[task_name] = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return keys[task_name]

    for task_name, task in tasks.items():
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]:  # not the `blessed` sub-DAG
            key(task_name)
    return keys


def test_ingest_takes_the_data_version_from_the_run_through_the_snapshot_step_and_caches_on_it(spec) -> None:
    declared = spec["root"]["inputDefinitions"]["parameters"]["data_version"]
    assert declared == {"defaultValue": "", "isOptional": True, "parameterType": "STRING"}
    tasks = spec["root"]["dag"]["tasks"]
    pinned = tasks["snapshot-data"]
    assert pinned["inputs"]["parameters"]["data_version"] == {"componentInputParameter": "data_version"}
    assert pinned["inputs"]["parameters"]["data_uri"] == {"componentInputParameter": "data_uri"}
    # Never cached: a BigQuery table changes under its name, so every run must ask for a new snapshot.
    assert pinned["cachingOptions"] == {}
    ingest = tasks["ingest-data"]
    for name in ("data_uri", "data_version"):
        assert ingest["inputs"]["parameters"][name] == {
            "taskOutputParameter": {"outputParameterKey": name, "producerTask": "snapshot-data"}}
    component = spec["components"][ingest["componentRef"]["name"]]
    assert component["inputDefinitions"]["parameters"]["data_version"] == {"parameterType": "STRING"}
    # Caching stays on: a rerun on the same bytes (a retry after a failed train) reuses ingest.
    assert ingest["cachingOptions"] == {"enableCache": True}


def test_a_rerun_over_the_same_snapshot_is_cached_and_a_new_snapshot_is_not(spec) -> None:
    table = {"data_uri": "bq://my-project.taxi.trips", "row_filter": "trip_start_timestamp >= 1420070400"}
    snapshot = "bq://my-project.taxi_snapshots.trips_20261123_101500_000000"
    first = {"data_uri": snapshot, "data_version": f"{snapshot[5:]}@2026-11-23T10:15:00.123000Z"}
    second = {"data_uri": snapshot.replace("20261123", "20261124"),
              "data_version": f"{snapshot[5:].replace('20261123', '20261124')}@2026-11-24T10:15:00.456000Z"}
    keys = cache_keys(spec, table, {"snapshot-data": first})
    # The same snapshot again: a rerun with the snapshot named as data_uri.
    rerun = cache_keys(spec, {"data_uri": snapshot, "row_filter": table["row_filter"]}, {"snapshot-data": first})
    for step in DATA_STEPS:
        assert rerun[step] == keys[step], f"{step} would not be served from the cache"
    newer = cache_keys(spec, table, {"snapshot-data": second})
    for step in DATA_STEPS:
        assert newer[step] != keys[step], f"{step} would reuse the older snapshot's execution"
    other_rows = cache_keys(spec, table | {"row_filter": ""}, {"snapshot-data": first})
    assert other_rows["ingest-data"] != keys["ingest-data"]  # another filter reads other rows


def test_every_data_step_reads_ingests_output(spec) -> None:
    tasks = spec["root"]["dag"]["tasks"]

    def upstream(task_name: str) -> set[str]:
        producers = {source["taskOutputArtifact"]["producerTask"]
                     for source in tasks[task_name].get("inputs", {}).get("artifacts", {}).values()}
        return producers.union(*(upstream(producer) for producer in producers))

    for step in DATA_STEPS[1:]:
        assert "ingest-data" in upstream(step), f"{step} does not consume ingest's examples"


def test_two_runs_differing_only_in_data_content_share_no_data_steps_cache_key(spec) -> None:
    first = cache_keys(spec, {"data_uri": DATA_URI, "data_version": "1709251200123456"})
    overwritten = cache_keys(spec, {"data_uri": DATA_URI, "data_version": "1709251299999999"})
    again = cache_keys(spec, {"data_uri": DATA_URI, "data_version": "1709251200123456"})

    for step in DATA_STEPS:
        assert first[step] != overwritten[step], f"{step} would reuse the old bytes' execution"
    assert again == first  # the same bytes again: every cached step is reused
    # Steps that do not read the data keep their key (the champion lookup is never cached anyway).
    assert first["lookup-champion"] == overwritten["lookup-champion"]


def test_the_check_catches_the_old_wiring(spec) -> None:
    # The template before this change: ingest's only data input was the data_uri string.
    old = copy.deepcopy(spec)
    del old["root"]["dag"]["tasks"]["ingest-data"]["inputs"]["parameters"]["data_version"]
    del old["components"]["comp-ingest-data"]["inputDefinitions"]["parameters"]["data_version"]
    first = cache_keys(old, {"data_uri": DATA_URI, "data_version": "1709251200123456"})
    overwritten = cache_keys(old, {"data_uri": DATA_URI, "data_version": "1709251299999999"})
    assert all(first[step] == overwritten[step] for step in DATA_STEPS)
