from pathlib import Path

import pytest

from contract.dataset import DatasetConfigError, load_dataset_config


def test_shipped_config_is_complete(dataset_config):
    assert dataset_config.label.name == "big_tipper"
    assert "tips" not in dataset_config.feature_names  # the label's source never reaches the model
    assert Path(dataset_config.schema_uri).exists()
    assert {kind for kind in (f.kind for f in dataset_config.features)} == {"numeric", "bucketized", "categorical"}


@pytest.mark.parametrize("mutation, message", [
    ("{kind: numeric}", "has kind 'nonsense'"),
    ("eval_percent: 20", "eval_percent is 0"),
    ("name: chicago_taxi", "missing required key 'name'"),
    ("model_name: chicago-taxi-big-tipper", "model_name is 12; expected the registry name"),
])
def test_bad_config_names_the_problem(tmp_path, dataset_config, mutation, message):
    text = Path(dataset_config.source).read_text()
    replacement = {"{kind: numeric}": "{kind: nonsense}", "eval_percent: 20": "eval_percent: 0",
                   "name: chicago_taxi": "title: chicago_taxi",
                   "model_name: chicago-taxi-big-tipper": "model_name: 12"}[mutation]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(mutation, replacement, 1))
    with pytest.raises(DatasetConfigError, match=message):
        load_dataset_config(bad)
