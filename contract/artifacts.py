"""File names inside the pipeline's artifacts, declared once.

A step writes these under its output artifact's folder; the next step, the
local run's summary and the tests read them from there.
"""

from __future__ import annotations

# ingest-data/examples/ and transform-data/transformed_examples/: one folder of Parquet shards per split
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
MANIFEST_FILE = "manifest.json"
TRANSFORM_SUMMARY_FILE = "transform_summary.json"
# validate-data/{statistics,schema,anomalies}/
STATISTICS_FILE = "statistics.pbtxt"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "anomalies.pbtxt"
ANOMALIES_JSON_FILE = "anomalies.json"
# train-model/model/ (beside saved_model.pb and input_spec.json)
TRAINING_SUMMARY_FILE = "training_summary.json"
# evaluate-model/evaluation/
OUTCOME_FILE = "outcome.json"
# Beside saved_model.pb in a registered version: a few eval instances and the predictions they got at
# registration, sent again through the endpoint after each deploy (deploy/smoke.py).
SMOKE_TEST_FILE = "smoke_test.json"
