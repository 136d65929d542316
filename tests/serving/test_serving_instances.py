"""The request checks, without HTTP or TensorFlow: every client mistake is named precisely."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from serving.instances import (
    MAX_REQUEST_BYTES,
    InputSpec,
    RequestError,
    instances_to_columns,
    parse_predict_body,
)

SPEC = InputSpec(features={"fare": "float32", "hour": "int64", "company": "string"}, outputs=("probability",))


def valid(**overrides: object) -> dict[str, object]:
    return {"fare": 7.5, "hour": 3, "company": "Flash Cab", **overrides}


def test_columns_keep_instance_order_and_dtypes() -> None:
    columns = instances_to_columns([valid(), valid(fare=1, hour=4.0, company="Sun Taxi")], SPEC)

    assert columns["fare"].dtype == np.float32 and columns["fare"].tolist() == [7.5, 1.0]
    assert columns["hour"].dtype == np.int64 and columns["hour"].tolist() == [3, 4]
    assert columns["company"] == ["Flash Cab", "Sun Taxi"]  # TensorFlow encodes str as UTF-8 itself


def test_several_features_of_one_dtype_share_a_block_and_keep_their_own_values() -> None:
    spec = InputSpec(features={"a": "float32", "n": "int64", "b": "float32", "s": "string", "m": "int64",
                               "t": "string", "c": "float32"}, outputs=("probability",))
    instances = [{"a": 1.0, "n": 10, "b": 2.0, "s": "x", "m": 20, "t": "é", "c": 3.0},
                 {"a": 4.0, "n": 11, "b": None, "s": "y", "m": 21, "t": "z", "c": 6.0}]

    columns = instances_to_columns(instances, spec)

    assert list(columns) == ["a", "n", "b", "s", "m", "t", "c"]
    assert {name: columns[name].tolist() for name in ("a", "c", "n", "m")} == {
        "a": [1.0, 4.0], "c": [3.0, 6.0], "n": [10, 11], "m": [20, 21]}
    assert columns["b"][0] == 2.0 and math.isnan(columns["b"][1])
    assert (columns["s"], columns["t"]) == (["x", "y"], ["é", "z"])
    # The layout the model takes: per dtype, the spec's order of features, instance after instance.
    assert columns.names == {"float32": ("a", "b", "c"), "int64": ("n", "m"), "string": ("s", "t")}
    assert columns.blocks["int64"].tolist() == [10, 20, 11, 21]
    assert columns.blocks["string"] == ["x", "é", "y", "z"]


def test_null_is_the_missing_value_sentinel_of_each_dtype() -> None:
    columns = instances_to_columns([valid(fare=None, hour=None, company=None), valid()], SPEC)

    assert math.isnan(columns["fare"][0]) and columns["fare"][1] == 7.5
    assert columns["hour"].tolist() == [-1, 3]
    assert columns["company"] == ["", "Flash Cab"]


def test_null_is_the_sentinel_the_models_spec_records() -> None:
    spec = InputSpec(features=SPEC.features, outputs=SPEC.outputs,
                     missing_values={"float32": -999.0, "int64": 0, "string": "?"})

    columns = instances_to_columns([valid(fare=None, hour=None, company=None), valid()], spec)

    assert columns["fare"].tolist() == [-999.0, 7.5]
    assert columns["hour"].tolist() == [0, 3]
    assert columns["company"] == ["?", "Flash Cab"]


def test_keys_that_are_not_features_are_ignored() -> None:
    columns = instances_to_columns([valid(big_tipper=True, trip_id="abc")], SPEC)

    assert set(columns) == {"fare", "hour", "company"}


@pytest.mark.parametrize(("instances", "expected"), [
    ([valid(), {"fare": 1.0, "company": "x"}],
     "instance 1: feature 'hour' is missing (expected an integer (int64); send null for a missing value)"),
    ([valid(fare="7.5")], "instance 0: feature 'fare' must be a number (float32), got string \"7.5\""),
    ([valid(fare=True)], "instance 0: feature 'fare' must be a number (float32), got boolean true"),
    ([valid(fare=1e39)], "instance 0: feature 'fare' must be a number (float32), got 1e+39, outside float32's range"),
    ([valid(fare=[1.0])], "instance 0: feature 'fare' must be a number (float32), got array [1.0]"),
    ([valid(), valid(hour=3.5)], "instance 1: feature 'hour' must be an integer (int64), got 3.5"),
    ([valid(hour=False)], "instance 0: feature 'hour' must be an integer (int64), got boolean false"),
    ([valid(hour=2**63)], f"instance 0: feature 'hour' must be an integer (int64), got {2**63}"),
    ([valid(hour="3")], "instance 0: feature 'hour' must be an integer (int64), got string \"3\""),
    ([valid(company=5)], "instance 0: feature 'company' must be a string, got number 5"),
    ([valid(company="\ud800")], "instance 0: feature 'company' must be valid Unicode text, got \"\\ud800\""),
    ([valid(), [7.5, 3, "x"]], "instance 1 must be a JSON object {feature: value}, got array"),
    (["fare"], "instance 0 must be a JSON object {feature: value}, got string"),
])
def test_wrong_instances_name_the_instance_the_feature_and_the_expected_type(instances: list[object],
                                                                              expected: str) -> None:
    with pytest.raises(RequestError) as raised:
        instances_to_columns(instances, SPEC)

    assert str(raised.value).startswith(expected)


def test_the_first_wrong_instance_is_named_whichever_feature_is_wrong() -> None:
    # The column pass meets 'fare' (instance 3) before 'hour' (instance 1); the
    # message must still name the earliest instance.
    instances = [valid(), valid(hour="x"), valid(), valid(fare="y")]

    with pytest.raises(RequestError, match=r"^instance 1: feature 'hour'"):
        instances_to_columns(instances, SPEC)


@pytest.mark.parametrize(("body", "expected"), [
    (b"", "request body is not valid JSON"),
    (b"{instances: []}", "request body is not valid JSON"),
    (b'{"instances": [{"fare": NaN}]}', "request body is not valid JSON"),
    (b'\xff{"instances": []}', "request body is not valid JSON"),
    (b"[" * 5000, "request body is not valid JSON"),
    (b"[]", 'request body must be a JSON object {"instances": [...]}, got array'),
    (b'{"inputs": []}', 'request body has no "instances"'),
    (b'{"instances": {"fare": 1}}', '"instances" must be an array of objects, got object'),
    (b'{"instances": []}', '"instances" is empty: send at least one instance'),
    (b'{"instances": [{}], "parameters": [1]}', '"parameters" must be an object, got array'),
])
def test_malformed_bodies_are_client_errors(body: bytes, expected: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_predict_body(body)

    assert str(raised.value).startswith(expected)


def test_bodies_over_vertex_limit_are_refused_and_at_the_limit_accepted() -> None:
    instance = json.dumps(valid()).encode()
    padding = MAX_REQUEST_BYTES - len(b'{"instances": [') - len(instance) - len(b"]}")
    at_limit = b'{"instances": [' + instance + b" " * padding + b"]}"
    assert len(at_limit) == MAX_REQUEST_BYTES

    assert parse_predict_body(at_limit) == [valid()]
    with pytest.raises(RequestError, match=f"request body is {MAX_REQUEST_BYTES + 1} bytes, over Vertex AI's limit"):
        parse_predict_body(at_limit + b" ")


def test_parameters_may_be_absent_null_or_an_object() -> None:
    for body in (b'{"instances": [1]}', b'{"instances": [1], "parameters": null}',
                 b'{"instances": [1], "parameters": {"threshold": 0.5}}'):
        assert parse_predict_body(body) == [1]


def test_input_spec_refuses_unknown_dtypes_and_missing_outputs() -> None:
    with pytest.raises(ValueError, match="feature 'fare' has dtype 'float64'"):
        InputSpec.from_dict({"features": {"fare": {"dtype": "float64"}}, "outputs": ["probability"]})
    with pytest.raises(ValueError, match='"outputs" must be a non-empty list'):
        InputSpec.from_dict({"features": {"fare": {"dtype": "float32"}}})
