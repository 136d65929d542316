"""Evaluate with TFMA against the champion; decide the blessing.

Both models are scored through their exported serving signatures on the raw
eval split (the very path serving takes), then TFMA computes the metrics per
slice, all in one Beam pipeline that streams the split's shards (DirectRunner
here, Dataflow with `beam_pipeline_args`), and the candidate's overall metrics are checked: an absolute floor on
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
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options

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


class Scorer:
    """Probabilities from a model's exported serving signature, in row order. The model is read by URI
    (a local folder, the `/gcs/` mount or gs://, as the registry hands a champion back); TensorFlow
    reads only a local copy, since its own gs:// filesystem would not honour the GCS emulator. `close`
    removes the copy."""

    def __init__(self, model_uri: str) -> None:
        import tensorflow as tf

        from contract.model_inputs import InputSpec
        from storage import uri as storage_uri

        self._scratch = tempfile.TemporaryDirectory(prefix="model-")
        model_dir = storage_uri.local_dir(model_uri, Path(self._scratch.name))
        self._signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
        self._spec = InputSpec.load(model_dir)

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        import tensorflow as tf

        from contract.model_inputs import PROBABILITY_OUTPUT
        from trainer.features import to_model_inputs

        inputs = to_model_inputs(frame, self._spec.raw_features, self._spec.missing_values)
        outputs = []
        for start in range(0, len(frame), _PREDICTION_BATCH):
            batch = {name: tf.constant(values[start:start + _PREDICTION_BATCH]) for name, values in inputs.items()}
            outputs.append(self._signature(**batch)[PROBABILITY_OUTPUT].numpy())
        return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        self._scratch.cleanup()


def predict(model_uri: str, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities of a frame's rows from the model at model_uri (see Scorer)."""
    scorer = Scorer(model_uri)
    try:
        return scorer(frame)
    finally:
        scorer.close()


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


def _prediction_column(model: str) -> str:
    return f"prediction_{model}"


def scored_batch(frame: pd.DataFrame, predictions: dict[str, np.ndarray], config: DatasetConfig):
    """What TFMA needs of some eval rows, as an Arrow batch: the slice columns as text ("missing" when
    missing), the label, and each model's prediction."""
    import pyarrow as pa

    slice_columns = sorted({key for keys in config.slices for key in keys})
    data = pd.DataFrame({column: frame[column].astype(str).where(frame[column].notna(), "missing")
                         for column in slice_columns})
    data[config.label.name] = frame[config.label.name].to_numpy(dtype="int64")
    for model, values in predictions.items():
        data[_prediction_column(model)] = values.astype("float32")
    return pa.RecordBatch.from_pandas(data, preserve_index=False)


def _one_model(batch, model: str, label: str):
    """The batch as TFMA reads it for one model: its prediction under the name the EvalConfig uses."""
    import pyarrow as pa
    from tfx_bsl.arrow import table_util

    columns = {name: batch.column(name) for name in batch.schema.names if not name.startswith("prediction_")}
    columns["prediction"] = batch.column(_prediction_column(model))
    return table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pydict(columns))


def _count_confusion(batch, label: str):
    """Counts the candidate's confusion at DECISION_THRESHOLD in Beam counters; passes the batch on."""
    from apache_beam.metrics import Metrics

    labels = batch.column(label).to_numpy()
    positive = batch.column(_prediction_column(CANDIDATE)).to_numpy() >= DECISION_THRESHOLD
    for name, count in (("tp", positive & (labels == 1)), ("fp", positive & (labels == 0)),
                        ("tn", ~positive & (labels == 0)), ("fn", ~positive & (labels == 1))):
        Metrics.counter(__name__, name).inc(int(count.sum()))
    return batch


def add_tfma(scored, models: list[str], config: DatasetConfig, outputs: dict[str, str]) -> None:
    """Adds to a Beam pipeline, after its scored rows (Arrow batches from `scored_batch`): the
    candidate's confusion counts (Beam counters), and one TFMA evaluation per model (TFMA's own
    ExtractEvaluateAndWriteResults, results under outputs[model])."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma

    eval_config = _eval_config(config)
    label = config.label.name
    counted = scored | "CountConfusion" >> beam.Map(_count_confusion, label)
    for model in models:
        _ = (counted
             | f"Select{model}" >> beam.Map(_one_model, model, label)
             | f"Evaluate{model}" >> tfma.ExtractEvaluateAndWriteResults(eval_config=eval_config,
                                                                         output_path=outputs[model]))


def _run_tfma(pipeline, outputs: dict[str, str]) -> tuple[dict, dict[str, int]]:
    """Runs the pipeline to the end; each model's EvalResult and the candidate's confusion counts."""
    import tensorflow_model_analysis as tfma
    from apache_beam.metrics.metric import MetricsFilter

    run = pipeline.run()
    run.wait_until_finish()
    counters = {result.key.metric.name: result.committed
                for result in run.metrics().query(MetricsFilter().with_namespace(__name__))["counters"]}
    confusion = {name: int(counters.get(name, 0)) for name in ("tp", "fp", "tn", "fn")}
    return {model: tfma.load_eval_result(path) for model, path in outputs.items()}, confusion


def _empty_eval_split(config: DatasetConfig, thresholds: Thresholds) -> ValueError:
    # TFMA cannot run on no rows; there is nothing to judge the model on
    return ValueError(f"the eval split is empty: no labelled example to evaluate the model on; at least "
                      f"{thresholds.gate.min_eval_examples} are needed (gate.min_eval_examples in "
                      f"{config.source}). Train on more data (data_uri) or change split.eval_percent.")


def evaluate_examples(examples_dir: str, model_uri: str, champion_uri: str, config: DatasetConfig,
                      thresholds: Thresholds, output_dir: str, beam_runner: str = DIRECT_RUNNER,
                      beam_pipeline_args: list[str] | None = None) -> EvaluationOutcome:
    """The evaluate step: both models score the eval split's shards inside Beam, TFMA computes the
    metrics there, and the outcome is decided. Memory holds a chunk per worker, whatever the split's
    size; on Dataflow (`beam_runner`, `beam_pipeline_args`) the shards spread over the workers."""
    import apache_beam as beam

    from dataprep.ingest import load_manifest

    options = beam_options(beam_runner, beam_pipeline_args)
    if not load_manifest(examples_dir).eval_rows:
        raise _empty_eval_split(config, thresholds)
    pipeline = beam.Pipeline(runner=options.local_runner(), options=options.pipeline_options())
    outputs = build_evaluation_pipeline(pipeline, options, examples_dir, model_uri, champion_uri, config, output_dir)
    results, confusion = _run_tfma(pipeline, outputs)
    return _outcome(results, confusion, config, thresholds)


def build_evaluation_pipeline(pipeline, options: BeamOptions, examples_dir: str, model_uri: str, champion_uri: str,
                              config: DatasetConfig, output_dir: str) -> dict[str, str]:
    """Adds the evaluation to a Beam pipeline: the eval shards listed, read and scored one shard per
    element, then TFMA per model. Returns where each model's results go."""
    import apache_beam as beam

    from dataprep.ingest import split_shards
    from evaluation.scoring import ScoreShards

    shards = [options.location(uri) for uri in split_shards(examples_dir, "eval")]
    models = {CANDIDATE: options.location(model_uri)} | ({CHAMPION: champion_uri} if champion_uri else {})
    outputs = {model: options.location(str(Path(output_dir) / model)) for model in models}
    scored = (pipeline
              | "ListEvalShards" >> beam.Create(shards)  # file names, not rows
              | "SpreadEvalShards" >> beam.Reshuffle()
              | "Score" >> beam.ParDo(ScoreShards(models, config)))
    add_tfma(scored, list(models), config, outputs)
    return outputs


def evaluate(eval_frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray | None,
             config: DatasetConfig, thresholds: Thresholds, output_dir: str) -> EvaluationOutcome:
    """The same evaluation over rows and predictions already in memory (a small frame: tests, or
    predictions made elsewhere): the frame is the pipeline's one input batch."""
    import apache_beam as beam

    if eval_frame.empty:
        raise _empty_eval_split(config, thresholds)
    predictions = {CANDIDATE: candidate} | ({CHAMPION: champion} if champion is not None else {})
    batch = scored_batch(eval_frame, predictions, config)
    outputs = {model: str(Path(output_dir) / model) for model in predictions}
    pipeline = beam.Pipeline(runner=beam_options(DIRECT_RUNNER, []).local_runner())
    add_tfma(pipeline | "Rows" >> beam.Create([batch]), list(predictions), config, outputs)
    results, confusion = _run_tfma(pipeline, outputs)
    return _outcome(results, confusion, config, thresholds)


def _outcome(results: dict, confusion: dict[str, int], config: DatasetConfig,
             thresholds: Thresholds) -> EvaluationOutcome:
    """The metrics per slice and model, the curves, and the checks that decide the blessing."""
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    roc: dict[str, dict[str, list[float]]] = {}
    calibration: dict[str, dict[str, list[float]]] = {}
    for model, result in results.items():
        for slice_key, outputs in result.slicing_metrics:
            values = outputs[""][""]
            named = {shown: float(values[key]["doubleValue"]) for key, shown in _METRICS.items()
                     if key in values and "doubleValue" in values[key]}
            if named.get("mean_label") in (0.0, 1.0):
                named[GATED_METRIC] = math.nan  # one class only: AUC is undefined, not 0
            metrics.setdefault(_slice_name(slice_key), {})[model] = named
        roc[model], calibration[model] = _curves(result)
    has_champion = CHAMPION in results
    failures = _floor_failures(metrics[OVERALL][CANDIDATE], thresholds)
    if has_champion:
        failures += _change_failures(metrics, thresholds)
    return EvaluationOutcome(blessed=not failures, has_champion=has_champion, thresholds=thresholds,
                             metrics=metrics, failures=failures, roc=roc, calibration=calibration,
                             confusion=confusion)


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
