"""Reading and writing files by URI, and the local state's file primitives.

- `storage.uri`: the one way to read a model, config, schema or baseline by URI:
  `gs://` through google-cloud-storage (so `STORAGE_EMULATOR_HOST` works), the
  `/gcs/` Cloud Storage FUSE mount that Vertex Pipelines and Vertex Training
  provide, or a local path. Nothing builds a `Path` from a URI string elsewhere.
- `storage.local_files`: atomic JSON writes and file locks for local state
  (the local registry, the local endpoint).
"""
