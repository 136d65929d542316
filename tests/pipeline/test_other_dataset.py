"""A different CSV data set works by writing a new config file: no code change.

A synthetic loan data set (other columns, other kinds, a string label) goes through
the same functions the pipeline's components call, from ingest to registration:
its own gate judges it, and it is registered under its own config's model name,
never into the taxi model."""

import numpy as np
import pandas as pd
import pytest

from components.lookup_champion import lookup_champion
from contract.dataset import load_dataset_config
from contract.model_inputs import InputSpec
from contract.schema import load_schema, write_schema
from dataprep import validation as dv
from dataprep.ingest import find_batches, ingest, load_batches, load_manifest, load_split, type_columns
from dataprep.transform import run_transform
from evaluation.gate import Thresholds, evaluate, predict
from registry.model_registry import (
    INPUT_CONTRACT_KEY,
    InputContractMismatch,
    LocalModelRegistry,
    register_blessed_model,
    resolve_model_name,
)
from tests.pipeline.conftest import exported_model
from trainer.train import train_and_export

CONFIG = """
name: loans
model_name: loan-default
label:
  name: defaulted
  expression: "outcome == 'default'"
features:
  income: {kind: numeric}
  age: {kind: bucketized, buckets: 4}
  region: {kind: categorical}
  product_code: {kind: categorical}
split:
  key: [loan_id]
  eval_percent: 25
slices:
  - [region]
schema: loans.schema.pbtxt
gate:
  min_eval_examples: 150
  metric_floors: {recall: 0.3, precision: 0.3}
"""


def _write_batches(landing, rows_per_batch: int = 400) -> None:
    random = np.random.default_rng(7)
    for month in ("01", "02"):
        count = rows_per_batch
        income = random.normal(50, 15, count).round(2)
        region = random.choice(["north", "south", "east"], count)
        risk = -0.08 * (income - 50) + np.where(region == "south", 1.5, 0.0) + random.normal(0, 1, count)
        frame = pd.DataFrame({
            "loan_id": [f"{month}-{i}" for i in range(count)],
            "income": income,
            "age": random.integers(21, 70, count),
            "region": region,
            "product_code": random.choice([3, 7, 9], count),
            "outcome": np.where(risk > 1.0, "default", "repaid"),
        })
        frame.loc[random.choice(count, 20, replace=False), "income"] = np.nan  # missing values, too
        target = landing / "2025" / month / "01" / "0000"
        target.mkdir(parents=True)
        frame.to_csv(target / "batch.csv", index=False)


@pytest.fixture(scope="module")
def loans(tmp_path_factory):
    root = tmp_path_factory.mktemp("loans")
    (root / "loans.yaml").write_text(CONFIG)
    _write_batches(root / "processed")
    return root, load_dataset_config(root / "loans.yaml")


def test_a_new_config_is_all_a_new_data_set_needs(loans, dataset_config):
    root, config = loans
    assert config.feature_names == ["income", "age", "region", "product_code"]

    # First use: the schema is inferred (what `runner.py --infer-schema` does), then it is the contract.
    raw, _ = load_batches(find_batches(str(root / "processed")))
    write_schema(dv.infer_schema(type_columns(raw, config.missing_values), config), config.schema_uri)
    schema = load_schema(config.schema_uri)

    summary = ingest(str(root / "processed"), config, root / "examples")
    frame = pd.concat([load_split(root / "examples", "train"), load_split(root / "examples", "eval")])
    assert dv.critical(dv.validate(frame, load_manifest(root / "examples").batches, schema, config)) == []
    assert 0.1 < summary.label_positive_rate < 0.6

    run_transform(str(root / "examples"), str(config.source), str(config.schema_uri), str(root / "graph"),
                  str(root / "transformed"))
    train_and_export(str(root / "transformed"), str(root / "graph"), str(config.source), str(config.schema_uri),
                     str(root / "model"), {"epochs": 15, "batch_size": 32})
    assert InputSpec.load(root / "model").features == {
        "income": "float32", "age": "float32", "region": "string", "product_code": "int64"}

    eval_frame = load_split(root / "examples", "eval")
    outcome = evaluate(eval_frame, predict(str(root / "model"), eval_frame), None, config,
                       Thresholds(min_auc=0.7, gate=config.gate), str(root / "evaluation"))
    assert outcome.blessed, outcome.failures
    assert {"region=north", "region=south", "region=east"} <= set(outcome.metrics)
    assert outcome.thresholds.gate.metric_floors == {"recall": 0.3, "precision": 0.3}

    # Registered under its own config's model name; the taxi model, trained on other inputs, refuses it.
    registry = LocalModelRegistry(root / "registry")
    taxi = exported_model(root / "taxi-model", InputSpec({name: "float32" for name in dataset_config.feature_names}))
    register_blessed_model(registry, resolve_model_name("", dataset_config), str(taxi), {})
    with pytest.raises(InputContractMismatch, match="model 'chicago-taxi-big-tipper' version 1 .*'income'"):
        register_blessed_model(registry, "chicago-taxi-big-tipper", str(root / "model"), {})
    # The pipeline's lookup step is where a run's model name is resolved: here, to the loans config's.
    resolved = lookup_champion.python_func(model_name="", dataset_config=str(root / "loans.yaml"),
                                           registry_uri=str(root / "registry"), project="", location="")
    assert (resolved.model_name, resolved.champion_uri) == ("loan-default", "")
    version = register_blessed_model(registry, resolved.model_name, str(root / "model"), {})
    assert (version.model_name, version.version) == ("loan-default", "1")
    assert version.metadata[INPUT_CONTRACT_KEY] == InputSpec.load(root / "model").features
