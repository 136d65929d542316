"""Batch prediction: score a data set with a registered model, every output row carrying its lineage.

- `predictor.py`: the local streaming predictor (chunks in, chunks out; memory does not grow with the input).
- `rows.py`: a chunk of source rows checked against the model's input contract, with serving's own conversion.
- `output.py`: the one output schema and the publishers (files under a run prefix, or a DuckDB table).
- `local_bigquery.py`: `bq://` on this machine, an embedded DuckDB database file per project.
- `vertex_job.py`: the Vertex form: the batch job's plan, and its output brought to the one schema.
"""
