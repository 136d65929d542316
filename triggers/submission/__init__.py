"""Submitting runs of compiled templates to Vertex AI Pipelines.

- `triggers.submission.pipeline_jobs`: the one module that builds and sends
  `pipelineJobs.create` requests (every function and the CLI call it).
- `triggers.submission.templates`: compiled templates, read once, parameters checked.
- `triggers.submission.data_version`: the `data_version` of a run's data, from a listing.
- `triggers.submission.transport`: HTTP with `requests` and `google-auth` only.
- `triggers.submission.errors`: which failures the platform retries.
"""
