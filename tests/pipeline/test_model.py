"""Transform, train, export and evaluate on two small shipped partitions, calling
the plain Python the components wrap (no KFP runner; one test calls a component's function)."""

import json
import math

import numpy as np
import pytest
from kfp import dsl

from components.evaluate_model import evaluate_model
from contract.dataset import Gate
from contract.model_inputs import INPUT_SPEC_FILE, InputSpec
from dataprep.ingest import ingest, load_split
from dataprep.transform import run_transform
from evaluation.gate import CANDIDATE, CHAMPION, OVERALL, Thresholds, evaluate, predict
from evaluation.report import evaluation_report
from registry.model_registry import InputContractMismatch
from tests.pipeline.conftest import SMALL_DATA_HYPERPARAMETERS, copy_partitions, exported_model
from tests.report_rendering import CANDIDATE_COLOUR, CHAMPION_COLOUR, render_report
from trainer.train import Hyperparameters, train_and_export


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset_config):
    root = tmp_path_factory.mktemp("model")
    landing = copy_partitions(root)
    ingest(str(landing), dataset_config, root / "examples")
    summary = run_transform(str(root / "examples"), str(dataset_config.source), str(dataset_config.schema_uri),
                            str(root / "graph"), str(root / "transformed"))
    training = train_and_export(str(root / "transformed"), str(root / "graph"), str(dataset_config.source),
                                str(dataset_config.schema_uri), str(root / "model"), SMALL_DATA_HYPERPARAMETERS)
    return {"root": root, "transform": summary, "training": training}


def test_transform_writes_graph_and_both_transformed_splits(trained, dataset_config):
    root = trained["root"]
    assert (root / "graph" / "transform_fn" / "saved_model.pb").exists()
    assert trained["transform"]["train_rows"] + trained["transform"]["eval_rows"] == (
        len(load_split(root / "examples", "train")) + len(load_split(root / "examples", "eval")))
    assert set(trained["transform"]["transformed_features"]) == (
        {f"{name}_xf" for name in dataset_config.feature_names} | {dataset_config.label.name})


def test_exported_model_serves_raw_instances_with_missing_values(trained, dataset_config):
    import pandas as pd
    import tensorflow as tf

    from serving.instances import instances_to_columns

    model_dir = trained["root"] / "model"
    spec = InputSpec.load(model_dir)
    assert set(spec.features) == set(dataset_config.feature_names)
    assert (spec.features["company"], spec.features["trip_start_hour"], spec.features["fare"]) == (
        "string", "int64", "float32")
    assert json.loads((model_dir / INPUT_SPEC_FILE).read_text())["missing_values"] == {
        "float32": "NaN", "int64": -1, "string": ""}

    complete = load_split(trained["root"] / "examples", "eval").head(40).reset_index(drop=True)
    damaged = complete.copy()
    for name in ("fare", "trip_start_hour", "company"):
        damaged[name] = damaged[name].astype(object)
        damaged.loc[:19, name] = None
    in_process = predict(str(model_dir), damaged)

    # The same rows as Vertex sends them (JSON null for a missing value), through serving's conversion:
    # serving and evaluation must agree on every sentinel, or the answers differ.
    instances = [{name: (None if pd.isna(value) else value.item() if hasattr(value, "item") else value)
                  for name, value in row.items() if name in spec.features} for row in damaged.to_dict("records")]
    columns = instances_to_columns(instances, spec)
    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    served = signature(**{name: tf.constant(columns[name], dtypes[dtype]) for name, dtype in spec.features.items()})
    np.testing.assert_allclose(served["probability"].numpy(), in_process, rtol=1e-5, atol=1e-6)
    # The sentinels reach the model as values: rows with missing features are scored, and differently.
    assert not np.allclose(in_process[:20], predict(str(model_dir), complete.head(20)))
    np.testing.assert_allclose(in_process[20:], predict(str(model_dir), complete)[20:], rtol=1e-5, atol=1e-6)


def test_training_learns_something(trained):
    assert trained["training"]["history"]["val_auc"] > 0.75


def test_hyperparameters_are_checked_and_json_numbers_accepted():
    assert Hyperparameters.from_parameters({"hidden_units": [64.0, 8.0]}).hidden_units == (64, 8)
    with pytest.raises(ValueError, match="hidden_units must be whole numbers"):
        Hyperparameters.from_parameters({"hidden_units": [1.5]})
    with pytest.raises(ValueError, match="learning_rate must be > 0.*epochs must be >= 1"):
        Hyperparameters(learning_rate=0, epochs=0)


@pytest.fixture(scope="module")
def scored(trained):
    eval_frame = load_split(trained["root"] / "examples", "eval")
    return eval_frame, predict(str(trained["root"] / "model"), eval_frame)


def test_first_run_is_judged_by_the_floors_alone(scored, dataset_config, small_data_gate, tmp_path):
    eval_frame, candidate = scored
    outcome = evaluate(eval_frame, candidate, None, dataset_config, Thresholds(min_auc=0.6, gate=small_data_gate),
                       str(tmp_path / "a"))
    assert outcome.blessed and not outcome.has_champion and outcome.failures == []
    overall = outcome.overall()
    assert overall["example_count"] == len(eval_frame)
    labels = eval_frame[dataset_config.label.name].to_numpy()
    assert overall["accuracy"] == pytest.approx(np.mean((candidate >= 0.5) == labels), abs=1e-6)
    assert {"payment_type=Cash", "trip_start_day=1"} <= set(outcome.metrics)
    # Cash tips are not recorded: that slice has one class, so its AUC is undefined rather than 0.
    assert math.isnan(outcome.metrics["payment_type=Cash"][CANDIDATE]["auc"])


def test_too_few_examples_or_a_metric_below_or_without_its_floor_is_refused_and_explained(
        scored, dataset_config, tmp_path):
    """The issue's case: a model that predicts no positive (recall 0, precision undefined) on too few rows."""
    eval_frame, _ = scored
    never_positive = np.full(len(eval_frame), 0.1, dtype="float32")
    gate = Gate(min_eval_examples=len(eval_frame) + 1, metric_floors={"recall": 0.2, "precision": 0.5})
    outcome = evaluate(eval_frame, never_positive, None, dataset_config, Thresholds(min_auc=0.6, gate=gate),
                       str(tmp_path / "b"))
    assert not outcome.blessed
    assert outcome.failures == [
        f"overall: only {len(eval_frame)} labelled eval examples, at least {len(eval_frame) + 1} are needed "
        "(gate.min_eval_examples): metrics from so few rows are not trusted",
        "overall: auc of the candidate is 0.5000, below its floor 0.6 (min_auc)",
        "overall: recall of the candidate is 0.0000, below its floor 0.2 (gate.metric_floors)",
        "overall: precision of the candidate is undefined (no example is predicted positive at threshold 0.5), "
        "so it cannot meet its floor 0.5 (gate.metric_floors)"]
    # KFP Metrics gets the defined metrics only: it cannot hold NaN.
    assert "precision" not in outcome.defined_metrics() and outcome.defined_metrics()["recall"] == 0.0
    assert all(math.isfinite(value) for value in outcome.defined_metrics().values())
    recorded = json.loads(outcome.to_json())
    assert recorded["thresholds"]["gate"] == {"min_eval_examples": len(eval_frame) + 1,
                                              "metric_floors": {"recall": 0.2, "precision": 0.5}}

    report = evaluation_report(outcome, "Evaluation", {"data_uri": "x"})
    assert "NOT BLESSED" in report and "so it cannot meet its floor 0.5" in report
    assert f"at least {len(eval_frame) + 1}" in report and "data set config: gate.metric_floors" in report


def test_a_candidate_worse_than_the_champion_is_not_blessed(scored, dataset_config, small_data_gate, tmp_path):
    eval_frame, candidate = scored
    labels = eval_frame[dataset_config.label.name].to_numpy().astype("float32")
    perfect_champion = 0.1 + 0.8 * labels  # AUC 1.0
    thresholds = Thresholds(min_auc=0.6, gate=small_data_gate)
    outcome = evaluate(eval_frame, candidate, perfect_champion, dataset_config, thresholds, str(tmp_path / "c"))
    assert not outcome.blessed
    assert outcome.metrics[OVERALL][CHAMPION]["auc"] == pytest.approx(1.0)
    assert len(outcome.failures) == 1 and "below the champion's 1.0000" in outcome.failures[0]
    # An equal champion is no reason to refuse: the regression allowance is inclusive.
    tie = evaluate(eval_frame, candidate, candidate.copy(), dataset_config, thresholds, str(tmp_path / "d"))
    assert tie.blessed and tie.has_champion

    report = evaluation_report(outcome, "Evaluation", {"data_uri": "x"})
    assert "NOT BLESSED" in report and report.count("<svg") == 3 and "below the champion" in report
    json.loads(outcome.to_json())  # strict JSON, NaN-free
    assert set(outcome.roc) == {CANDIDATE, CHAMPION}

    # In a browser: the ROC, calibration and per-slice plots each show both models.
    (tmp_path / "report.html").write_text(report)
    rendered = render_report(tmp_path / "report.html", tmp_path / "rendered")
    assert len(rendered.plots) == 3 and all(width > 200 and height > 200 for _, _, width, height in rendered.plots)
    for plot in range(3):
        assert rendered.pixels_near(plot, CANDIDATE_COLOUR) > 100 and rendered.pixels_near(plot, CHAMPION_COLOUR) > 100


def test_the_trained_model_serves_over_http_as_it_predicts_in_process(trained, scored, dataset_config, tmp_path):
    """The real export through the serving container's command: Vertex-shaped instances,
    JSON null for missing values, the same probabilities as the signature in-process."""
    import pandas as pd

    from tests.serving.serving_helpers import http_call, start_server, wait_healthy

    eval_frame, in_process = scored
    rows = eval_frame[dataset_config.feature_names].head(64)
    instances = [{name: (None if pd.isna(value) else value.item() if hasattr(value, "item") else value)
                  for name, value in row.items()} for _, row in rows.iterrows()]
    assert any(value is None for instance in instances for value in instance.values())  # nulls are exercised

    server = start_server(trained["root"] / "model", tmp_path / "server.log")
    try:
        wait_healthy(server)
        answer = http_call("POST", f"{server.url}/predict", {"instances": instances})
    finally:
        server.stop()
    assert answer.status == 200, answer.body
    served = [prediction["probability"] for prediction in json.loads(answer.body)["predictions"]]
    np.testing.assert_allclose(served, in_process[:64], rtol=1e-5, atol=1e-6)


def test_a_champion_trained_on_other_inputs_is_never_compared_with(trained, dataset_config, tmp_path):
    """The evaluate step refuses before scoring anything, naming the model, the version and the features."""
    loans_champion = exported_model(tmp_path / "champion", InputSpec({"income": "float32", "fare": "int64"}))
    outputs = {name: kind(uri=str(tmp_path / name)) for name, kind in (
        ("metrics", dsl.Metrics), ("classification_metrics", dsl.ClassificationMetrics), ("report", dsl.HTML),
        ("evaluation", dsl.Artifact))}
    with pytest.raises(InputContractMismatch, match="model 'chicago-taxi-big-tipper' version 3 \\(champion\\) was "
                       "trained on other inputs than the candidate: feature 'company' \\(string\\) only in the "
                       "candidate; feature 'dropoff_community_area'.*feature 'fare' is float32 in the candidate, "
                       "int64 in version 3"):
        evaluate_model.python_func(
            model=dsl.Model(uri=str(trained["root"] / "model")),
            examples=dsl.Dataset(uri=str(trained["root"] / "examples")), dataset_config=dataset_config.source,
            model_name="chicago-taxi-big-tipper", champion_uri=str(loans_champion), champion_version="3",
            min_auc=0.7, max_auc_regression=0.01, data_uri="x", **outputs)
    assert not (tmp_path / "report.html").exists()
