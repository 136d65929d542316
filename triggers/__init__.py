"""Triggers that submit parameterized runs of the compiled pipeline templates.

`triggers.submission.pipeline_jobs` is the one module that builds and submits Vertex AI
PipelineJob requests; the CLI (`python runner.py --submit`) and every Cloud
Function (`triggers/<name>/main.py`) call it. See docs/triggers.md.

Kept empty on purpose: every deployed function imports this package, so
anything here is paid on each cold start.
"""
