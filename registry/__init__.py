"""The model registry: versions of a model and the aliases that point at them.

`registry.model_registry.open_registry(registry_uri, ...)` picks the backend:
the Vertex AI Model Registry, or a local folder with the same semantics.
"""
