"""The model's input contract and the checks that turn a Vertex request into columns.

A request is `{"instances": [{feature: value, ...}, ...], "parameters": {...}}`.
Every check here is about a client mistake: it raises `RequestError`, which the
server answers with 400 and this message. No TensorFlow here: the checks are
plain Python and numpy, so they are fast to test and cheap to import.

Rules:
- a feature present with JSON `null` is a missing value: the sentinel the
  model's `input_spec.json` records for its dtype (contract.model_inputs);
- a feature absent from an instance is an error (the client forgot it);
- keys that are not features are ignored, so a client may send a whole row
  (label, ids); a misspelt feature still fails, as that feature is then absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from contract.model_inputs import INPUT_SPEC_FILE, InputSpec  # noqa: F401 (the contract serving reads)

# Vertex AI refuses prediction requests over 1.5 MB with
# "Request payload size exceeds the limit: 1572864 bytes."
MAX_REQUEST_BYTES = 1_572_864


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXPECTED = {"float32": "a number (float32)", "int64": "an integer (int64)", "string": "a string"}
# JSON values arrive as these Python types; `bool` is its own type, so `True`
# never passes for a number.
_ACCEPTED_TYPES: dict[str, frozenset[type]] = {
    "float32": frozenset({int, float, type(None)}),
    "int64": frozenset({int, float, type(None)}),
    "string": frozenset({str, type(None)}),
}


class RequestError(ValueError):
    """A client mistake in a prediction request; the message says what was expected."""


def parse_predict_body(body: bytes) -> list[dict[str, Any]]:
    """The instances of a Vertex prediction request body, checked for shape only.

    `parameters` may be absent, null or an object; this model takes none, so
    its content is ignored.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestError(oversize_message(len(body)))
    try:
        # orjson: a quarter of json.loads' time on a 64-instance body. It is
        # strict JSON (no NaN literal) and refuses invalid UTF-8 and nesting
        # deeper than 1024 with the same exception.
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise RequestError(
            f'request body must be a JSON object {{"instances": [...]}}, got {_json_type(payload)}'
        )
    if "instances" not in payload:
        raise RequestError('request body has no "instances": '
                           'expected {"instances": [...], "parameters": {...}}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(f'"instances" must be an array of objects, got {_json_type(instances)}')
    if not instances:
        raise RequestError('"instances" is empty: send at least one instance')
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise RequestError(f'"parameters" must be an object, got {_json_type(parameters)}')
    return instances


def oversize_message(size: int) -> str:
    return (
        f"request body is {size} bytes, over Vertex AI's limit of {MAX_REQUEST_BYTES} bytes (1.5 MB): "
        "send fewer instances per request"
    )


# One feature's values: numpy for numbers, Python strings for text.
Column = np.ndarray | list[str]


class Columns(Mapping[str, Column]):
    """The instances of one request as the model takes them: `columns[name]` is one feature's column.

    Stored as one flat block per dtype (the features of that dtype in the
    spec's order, instance after instance), so that the whole request is three
    conversions rather than one per feature, and the model can take it as one
    tensor per dtype. float32 and int64 blocks are numpy arrays; the string
    block stays a list of `str` (TensorFlow encodes it as UTF-8, as fast as it
    takes bytes, so encoding here would be a second pass).
    """

    def __init__(self, spec: InputSpec, size: int, names: dict[str, tuple[str, ...]], blocks: dict[str, Column]):
        self.spec = spec
        self.size = size
        self.names = names  # dtype -> its features, in the spec's order (features_by_dtype)
        self.blocks = blocks  # dtype -> flat values, row-major: instance i's features at [i*k, (i+1)*k)

    @cached_property
    def _where(self) -> dict[str, tuple[str, int, int]]:
        return {name: (dtype, index, len(group)) for dtype, group in self.names.items()
                for index, name in enumerate(group)}

    def __getitem__(self, name: str) -> Column:
        dtype, index, width = self._where[name]
        return self.blocks[dtype][index::width]

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.features)

    def __len__(self) -> int:
        return len(self.spec.features)


def features_by_dtype(spec: InputSpec) -> dict[str, tuple[str, ...]]:
    """The spec's features grouped by dtype, each group in the spec's order: the layout of `Columns`."""
    names: dict[str, tuple[str, ...]] = {}
    for name, dtype in spec.features.items():
        names[dtype] = (*names.get(dtype, ()), name)
    return names


def instances_to_columns(instances: list[Any], spec: InputSpec) -> Columns:
    """The instances in the dtypes the signature takes, or a RequestError naming the first mistake.

    The fast path gathers each dtype's values in one C-level pass
    (`itemgetter` over the instances), checks their types with one set and
    converts them with numpy in one step. Only when that fails does the
    row-by-row pass run, to name the first bad instance and feature.
    """
    names = features_by_dtype(spec)
    blocks: dict[str, Column] = {}
    for dtype, group in names.items():
        getter = itemgetter(*group)
        try:
            values = (list(chain.from_iterable(map(getter, instances))) if len(group) > 1
                      else list(map(getter, instances)))  # itemgetter of one key gives the value, not a tuple
        except (KeyError, TypeError):
            raise _first_error(instances, spec) from None
        block = _convert_block(values, dtype, spec.missing_values[dtype])
        if block is None:
            raise _first_error(instances, spec)
        blocks[dtype] = block
    return Columns(spec, len(instances), names, blocks)


def _convert_block(values: list[Any], dtype: str, missing: Any) -> Column | None:
    """The values as the model takes them, or None if any value is wrong."""
    types = set(map(type, values))
    if not types <= _ACCEPTED_TYPES[dtype]:
        return None
    if type(None) in types:
        values = [missing if value is None else value for value in values]
    if dtype == "string":
        # A lone surrogate ("\ud800") is a Python str but not Unicode text:
        # one encode of the joined block finds it.
        return values if _is_utf8_encodable("".join(values)) else None
    try:
        if dtype == "float32":
            wide = np.asarray(values, dtype=np.float64)
            # NaN is a missing value; anything beyond float32's range is not a value.
            if (np.abs(wide) > _FLOAT32_MAX).any():
                return None
            return wide.astype(np.float32)
        if float in types and not all(_is_int64(value) for value in values):
            return None
        return np.asarray(values, dtype=np.int64)
    except (OverflowError, ValueError):
        return None


def _is_int64(value: int | float) -> bool:
    if isinstance(value, float) and not value.is_integer():
        return False
    return _INT64_MIN <= value <= _INT64_MAX


def _first_error(instances: list[Any], spec: InputSpec) -> RequestError:
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            return RequestError(
                f"instance {index} must be a JSON object {{feature: value}}, got {_json_type(instance)}"
            )
        for name, dtype in spec.features.items():
            if name not in instance:
                return RequestError(
                    f"instance {index}: feature {name!r} is missing (expected {_EXPECTED[dtype]}; "
                    "send null for a missing value)"
                )
            problem = _value_problem(instance[name], dtype)
            if problem:
                return RequestError(f"instance {index}: feature {name!r} {problem}")
    # Unreachable while _value_problem mirrors _convert_block; kept so a
    # divergence is a clear message rather than a crash.
    return RequestError("instances do not match the model's input spec")


def _value_problem(value: Any, dtype: str) -> str | None:
    if value is None:
        return None
    expected = _EXPECTED[dtype]
    if type(value) not in _ACCEPTED_TYPES[dtype]:
        return f"must be {expected}, got {_json_type(value)} {_preview(value)}"
    if dtype == "float32" and abs(value) > _FLOAT32_MAX:
        return f"must be {expected}, got {_preview(value)}, outside float32's range"
    if dtype == "int64" and not _is_int64(value):
        return f"must be {expected}, got {_preview(value)}"
    if dtype == "string" and not _is_utf8_encodable(value):
        return f"must be valid Unicode text, got {_preview(value)} (a lone surrogate)"
    return None


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preview(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
