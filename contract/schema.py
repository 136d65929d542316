"""The reviewed data contract: a tensorflow-metadata `Schema` in text format, read and written.

Read by URI (a local path, `gs://` or the `/gcs/` mount), so a data set's
schema can live in Cloud Storage beside its config.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from storage import uri as storage_uri


def load_schema(location: str | Path) -> schema_pb2.Schema:
    return text_format.Parse(storage_uri.read_text(location), schema_pb2.Schema())


def write_schema(schema: schema_pb2.Schema, path: str | Path) -> None:
    """Writes a file (the /gcs/ mount is a file system too); a gs:// URI is refused: a reviewed schema is
    uploaded by a person, not written there by code."""
    if storage_uri.is_gcs(path):
        raise ValueError(f"{path}: a schema is written locally, reviewed, then uploaded; "
                         "expected a local path (infer it with a local copy of the data set config)")
    Path(path).write_text(text_format.MessageToString(schema))
