"""`python runner.py --run local`: parameters checked against the template, data set defaults, clear refusals.

These stop before any step runs, so they take milliseconds; the runs themselves are in
test_local_pipeline_e2e.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import runner
from pipelines.local_run import LocalRunError, local_parameters


def test_param_values_are_typed_by_the_template() -> None:
    values, sources = local_parameters("training", {"epochs": "3", "learning_rate": "1", "hidden_units": "[8, 4]"})
    assert values["epochs"] == 3 and values["hidden_units"] == [8, 4]
    assert values["learning_rate"] == 1.0 and isinstance(values["learning_rate"], float)
    assert sources["epochs"] == "--param" and sources["data_uri"] == "default"


def test_a_data_set_config_brings_its_own_defaults_and_param_overrides_them(tmp_path, dataset_config) -> None:
    text = Path(dataset_config.source).read_text().replace("parameters: {}", "parameters: {epochs: 15, batch_size: 32}")
    small = tmp_path / "small.yaml"
    small.write_text(text.replace("schema: chicago_taxi.schema.pbtxt", f"schema: {dataset_config.schema_uri}"))

    values, sources = local_parameters("training", {"epochs": "4"}, dataset_config=str(small))
    assert (values["epochs"], values["batch_size"]) == (4, 32)
    assert sources["batch_size"] == f"data set config {small}" and sources["epochs"] == "--param"


def test_a_bad_data_set_default_names_the_config(tmp_path, dataset_config) -> None:
    text = Path(dataset_config.source).read_text().replace("parameters: {}", "parameters: {epochs: many}")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("schema: chicago_taxi.schema.pbtxt", f"schema: {dataset_config.schema_uri}"))
    with pytest.raises(LocalRunError, match=rf"epochs='many'.*whole number.*set by: data set config {bad}"):
        local_parameters("training", {}, dataset_config=str(bad))


@pytest.mark.parametrize("argv, message", [
    (["--param", "epochs=x"], "epochs='x': expected a whole number"),
    (["--param", "nope=1"], "unknown parameter 'nope'.*Expected: batch_size"),
    (["--param", "epochs=3", "--param", "epochs=4"], "epochs is given twice"),
    (["--param", "epochs"], "expected NAME=VALUE"),
    (["--pipeline", "nope"], "unknown pipeline 'nope': expected one of "
                              "batch_prediction, canary_decision, deploy, evaluation, training"),
    (["--data-uri", "a", "--param", "data_uri=b"], "data_uri is given twice"),
    (["--param", "registry_uri=vertex"], "registry_uri=vertex needs Vertex AI"),
    (["--param", "data_uri="], "data_uri is empty \\(set by: --param\\); expected a folder or gs:// prefix"),
    (["--data-uri", " "], "data_uri is empty \\(set by: flag\\)"),
    (["--param", "hidden_units=[64"], "hidden_units='\\[64': expected a JSON list"),
])
def test_bad_command_lines_are_refused_before_anything_runs(capsys, argv, message) -> None:
    code = None
    try:
        code = runner.main(["--run", "local", *argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
