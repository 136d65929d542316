"""Data preparation steps, plain Python behind the pipeline's first three components.

- `dataprep.ingest`: read the landed batches, type, label and split them (TFX ExampleGen's role).
- `dataprep.validation`: statistics, schema inference and per-batch validation
  (StatisticsGen, SchemaGen and ExampleValidator's roles).
- `dataprep.transform`: tf.Transform on Beam, run in an isolated child
  (`dataprep.isolation`) because of TFT's exit-time segfault.
- `dataprep.beam_options`: the Beam runner and options every Beam step gets.
Every step streams (chunks and Parquet shards): docs/scale.md.
"""
