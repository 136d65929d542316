"""Online serving: the Vertex AI custom prediction container and a local endpoint.

- `serving.server`: the prediction server (`python -m serving.server`), the
  same process on Vertex AI (in the container of `serving/Dockerfile`) and here.
- `serving.endpoint`: what a Vertex AI endpoint keeps: deployed models and the
  traffic split, with Vertex's rules, persisted atomically.
- `serving.router`: the local endpoint process that routes requests by the
  split to one prediction server per deployed model and records their stats.
- `serving.cli`: `python runner.py endpoint serve|status|deploy|split|undeploy`.

Only `serving.model` imports TensorFlow, so the router and the CLI start fast.
"""
