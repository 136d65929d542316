"""Evaluate with TFMA against the champion; decide the blessing.

Both models are scored through their exported serving signatures on the raw
eval split (the very path serving takes), then TFMA computes the metrics per
slice, and the candidate's overall metrics are checked: an absolute floor on
AUC, and a change threshold against the champion. The change threshold is ignored on the first
run, when there is no champion to compare with. The data set config's gate adds
a minimum number of eval examples (fewer, and no metric is trusted) and optional
floors on other overall metrics; an undefined metric never meets a floor. A
model that fails any check is never registered, so it never gets traffic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from contract.dataset import DatasetConfig, Gate

CANDIDATE = "candidate"
CHAMPION = "champion"
OVERALL = "overall"
GATED_METRIC = "auc"
DECISION_THRESHOLD = 0.5  # a probability at or above it is a positive prediction (accuracy, precision, recall)
_PREDICTION_BATCH = 4096
# Metric names as TFMA reports them -> the names this project shows.
_METRICS = {"example_count": "example_count", "auc": "auc", "binary_accuracy": "accuracy",
            "precision": "precision", "recall": "recall", "calibration": "calibration",
            "mean_label": "mean_label", "mean_prediction": "mean_prediction"}


# Why a metric can be undefined, said in a refusal.
_UNDEFINED_BECAUSE = {
    "auc": "the eval split holds one class only",
    "accuracy": "there is no eval example",
    "precision": f"no example is predicted positive at threshold {DECISION_THRESHOLD}",
    "recall": "the eval split has no positive label",
    "calibration": "the eval split has no positive label",
}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every check a candidate must pass; all of it is recorded in the outcome and shown in the report."""

    min_auc: float = 0.7
    # The candidate's AUC may be at most this much below the champion's.
    max_auc_regression: float = 0.01
    # The data set config's gate: minimum eval examples and other metric floors.
    gate: Gate = dataclasses.field(default_factory=Gate)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_auc <= 1.0:
            raise ValueError(f"min_auc must be within [0, 1], got {self.min_auc}")
        if self.max_auc_regression < 0:
            raise ValueError(f"max_auc_regression must be >= 0, got {self.max_auc_regression}")


@dataclasses.dataclass
class EvaluationOutcome:
    blessed: bool
    has_champion: bool
    thresholds: Thresholds
    # slice name -> model name -> metric name -> value
    metrics: dict[str, dict[str, dict[str, float]]]
    failures: list[str]
    roc: dict[str, dict[str, list[float]]]  # model -> {"fpr": [...], "tpr": [...]}
    calibration: dict[str, dict[str, list[float]]]  # model -> {"predicted": [...], "observed": [...]}
    confusion: dict[str, int]  # candidate at threshold 0.5: tp, fp, tn, fn

    def overall(self, model: str = CANDIDATE) -> dict[str, float]:
        return self.metrics[OVERALL][model]

    def defined_metrics(self, model: str = CANDIDATE) -> dict[str, float]:
        """The overall metrics that have a value: what KFP Metrics may hold (it cannot hold NaN)."""
        return {name: value for name, value in self.overall(model).items() if math.isfinite(value)}

    def to_json(self) -> str:
        """Strict JSON: an undefined metric (NaN) is null."""
        def strict(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {key: strict(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [strict(item) for item in value]
            return value

        return json.dumps(strict(dataclasses.asdict(self)), indent=1, allow_nan=False)


def predict(model_uri: str, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities from the exported serving signature, in row order. The model is read by URI
    (a local folder, the `/gcs/` mount or gs://, as the registry hands a champion back); TensorFlow
    reads only the local copy, since its own gs:// filesystem would not honour the GCS emulator."""
    import tensorflow as tf

    from contract.model_inputs import PROBABILITY_OUTPUT, InputSpec
    from storage import uri as storage_uri
    from trainer.features import to_model_inputs

    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        model_dir = storage_uri.local_dir(model_uri, Path(scratch))
        signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
        spec = InputSpec.load(model_dir)
        inputs = to_model_inputs(frame, spec.raw_features, spec.missing_values)
        outputs = []
        for start in range(0, len(frame), _PREDICTION_BATCH):
            batch = {name: tf.constant(values[start:start + _PREDICTION_BATCH]) for name, values in inputs.items()}
            outputs.append(signature(**batch)[PROBABILITY_OUTPUT].numpy())
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


def _eval_config(config: DatasetConfig):
    """One model per TFMA run: in raw-prediction mode TFMA cannot mark a baseline
    (it knows one only when it loads models itself), so the change threshold is
    applied to the two runs' AUCs in `_change_failures`. The floors are applied
    in `_floor_failures`, not as TFMA thresholds, so that each refusal names the
    setting it comes from and says why a metric is undefined (TFMA scores a
    one-class AUC as 0). They apply to the overall slice only: a small slice is
    too noisy to gate on."""
    from google.protobuf import text_format
    from tensorflow_model_analysis.proto import config_pb2

    slices = ["slicing_specs {}"] + [
        "slicing_specs { " + " ".join(f'feature_keys: "{key}"' for key in keys) + " }" for keys in config.slices]
    text = "\n".join([f'model_specs {{ label_key: "{config.label.name}" prediction_key: "prediction" }}',
                      *slices, """
metrics_specs {
  metrics { class_name: "ExampleCount" }
  metrics { class_name: "AUC" }
  metrics { class_name: "BinaryAccuracy" }
  metrics { class_name: "Precision" }
  metrics { class_name: "Recall" }
  metrics { class_name: "Calibration" }
  metrics { class_name: "MeanLabel" }
  metrics { class_name: "MeanPrediction" }
  metrics { class_name: "CalibrationPlot" config: '"num_buckets": 10' }
  metrics { class_name: "ConfusionMatrixPlot" config: '"num_thresholds": 50' }
}"""])
    return text_format.Parse(text, config_pb2.EvalConfig())


def _change_failures(metrics: dict[str, dict[str, dict[str, float]]], thresholds: Thresholds) -> list[str]:
    candidate = metrics[OVERALL][CANDIDATE][GATED_METRIC]
    champion = metrics[OVERALL][CHAMPION][GATED_METRIC]
    # Undefined only on a one-class eval split, which the AUC floor already refuses.
    if not (math.isfinite(candidate) and math.isfinite(champion)) or \
            candidate - champion >= -thresholds.max_auc_regression:
        return []
    return [f"{OVERALL}: auc of the {CANDIDATE} is {candidate:.4f}, {champion - candidate:.4f} below the "
            f"{CHAMPION}'s {champion:.4f}; at most {thresholds.max_auc_regression} below is allowed"]


def _floor_failure(metric: str, value: float, floor: float, source: str) -> str | None:
    """The refusal when an overall metric of the candidate is undefined or below its floor."""
    if not math.isfinite(value):
        return (f"{OVERALL}: {metric} of the {CANDIDATE} is undefined ({_UNDEFINED_BECAUSE.get(metric, 'no value')}),"
                f" so it cannot meet its floor {floor} ({source})")
    if value < floor:
        return f"{OVERALL}: {metric} of the {CANDIDATE} is {value:.4f}, below its floor {floor} ({source})"
    return None


def _floor_failures(metrics: dict[str, float], thresholds: Thresholds) -> list[str]:
    """The absolute checks on the candidate's overall metrics: enough examples, then every floor."""
    failures = []
    examples = int(metrics.get("example_count", 0))
    if examples < thresholds.gate.min_eval_examples:
        failures.append(f"{OVERALL}: only {examples} labelled eval examples, at least "
                        f"{thresholds.gate.min_eval_examples} are needed (gate.min_eval_examples): metrics from so "
                        "few rows are not trusted")
    floors = [(GATED_METRIC, thresholds.min_auc, "min_auc")] + [
        (metric, floor, "gate.metric_floors") for metric, floor in thresholds.gate.metric_floors.items()]
    for metric, floor, source in floors:
        failure = _floor_failure(metric, metrics.get(metric, math.nan), floor, source)
        if failure:
            failures.append(failure)
    return failures


def _slice_name(slice_key: tuple) -> str:
    return OVERALL if not slice_key else ", ".join(f"{key}={value}" for key, value in slice_key)


def evaluate(eval_frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray | None,
             config: DatasetConfig, thresholds: Thresholds, output_dir: str) -> EvaluationOutcome:
    """Runs TFMA over the eval split's labels, slice columns and each model's predictions."""
    import tensorflow_model_analysis as tfma

    if eval_frame.empty:  # TFMA cannot run on no rows; there is nothing to judge the model on
        raise ValueError(f"the eval split is empty: no labelled example to evaluate the model on; at least "
                         f"{thresholds.gate.min_eval_examples} are needed (gate.min_eval_examples in "
                         f"{config.source}). Train on more data (data_uri) or change split.eval_percent.")

    slice_columns = sorted({key for keys in config.slices for key in keys})
    data = pd.DataFrame({column: eval_frame[column].astype(str).where(eval_frame[column].notna(), "missing")
                         for column in slice_columns})
    data[config.label.name] = eval_frame[config.label.name].to_numpy(dtype="int64")
    predictions = {CANDIDATE: candidate} | ({CHAMPION: champion} if champion is not None else {})

    metrics: dict[str, dict[str, dict[str, float]]] = {}
    roc: dict[str, dict[str, list[float]]] = {}
    calibration: dict[str, dict[str, list[float]]] = {}
    eval_config = _eval_config(config)
    for model, model_predictions in predictions.items():
        data["prediction"] = model_predictions.astype("float32")
        result = tfma.analyze_raw_data(data, eval_config, output_path=str(Path(output_dir) / model))
        for slice_key, outputs in result.slicing_metrics:
            values = outputs[""][""]
            named = {shown: float(values[key]["doubleValue"]) for key, shown in _METRICS.items()
                     if key in values and "doubleValue" in values[key]}
            if named.get("mean_label") in (0.0, 1.0):
                named[GATED_METRIC] = math.nan  # one class only: AUC is undefined, not 0
            metrics.setdefault(_slice_name(slice_key), {})[model] = named
        roc[model], calibration[model] = _curves(result)
    failures = _floor_failures(metrics[OVERALL][CANDIDATE], thresholds)
    if champion is not None:
        failures += _change_failures(metrics, thresholds)
    data["prediction"] = candidate
    return EvaluationOutcome(blessed=not failures, has_champion=champion is not None, thresholds=thresholds,
                             metrics=metrics, failures=failures, roc=roc, calibration=calibration,
                             confusion=_confusion(data, config.label.name))


def _curves(result) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """ROC points and the calibration curve from TFMA's overall-slice plots."""
    plots = next(outputs[""][""] for slice_key, outputs in result.plots if not slice_key)
    matrices = plots["confusionMatrixAtThresholds"]["matrices"]
    fpr = [float(matrix.get("falsePositiveRate", 0.0)) for matrix in matrices]
    tpr = [float(matrix.get("recall", 0.0)) for matrix in matrices]
    predicted, observed = [], []
    for bucket in plots["calibrationHistogramBuckets"]["buckets"]:
        if bucket["numWeightedExamples"]:
            predicted.append(bucket["totalWeightedRefinedPrediction"] / bucket["numWeightedExamples"])
            observed.append(bucket["totalWeightedLabel"] / bucket["numWeightedExamples"])
    return {"fpr": fpr, "tpr": tpr}, {"predicted": predicted, "observed": observed}


def _confusion(data: pd.DataFrame, label: str) -> dict[str, int]:
    labels = data[label].to_numpy()
    predicted_positive = data["prediction"].to_numpy() >= DECISION_THRESHOLD
    return {"tp": int((predicted_positive & (labels == 1)).sum()),
            "fp": int((predicted_positive & (labels == 0)).sum()),
            "tn": int((~predicted_positive & (labels == 0)).sum()),
            "fn": int((~predicted_positive & (labels == 1)).sum())}
