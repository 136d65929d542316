"""The `data_version` of a run: a name for the bytes under its `data_uri`, from object metadata only.

The training template passes `data_version` into ingest, so it is part of
ingest's cache key on Vertex AI Pipelines: a run whose data changed under the
same `data_uri` ingests it again instead of reusing an earlier run's examples
(and every later step follows ingest's new output). Each trigger names the data:

- new data: the finalized object's generation (the partition holds that one object);
- schedule, drift and `--submit`: `listing_version(data_uri)`, a fingerprint of the
  listing of every `batch.csv` ingest would read (the same files as
  `dataprep.ingest.find_batches`: under each comma-separated prefix, or the
  prefix itself when it names a batch file);
- a `bq://` table: none here ("") — the pipeline's snapshot step pins the table and
  names the snapshot (dataprep/bigquery_source.py).

The listing never reads data: Cloud Storage objects are listed through the JSON
API (paginated; name and generation only: a generation changes whenever an
object's bytes do, and metadata-only changes such as a storage-class transition
do not touch the bytes), local files through `stat()` (size and modification
time). The fingerprint is the first 16 hex digits of the sha256 of the sorted
entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

from contract.paths import BATCH_FILE_NAME, PROJECT_ROOT
from triggers.submission import transport
from triggers.submission.errors import InvalidRequest
from triggers.submission.templates import PipelineTemplate

DATA_VERSION_PARAMETER = "data_version"
BIGQUERY_SCHEME = "bq://"
FINGERPRINT_HEX_DIGITS = 16
# What ingest needs to tell one object version from another, nothing else (smaller pages).
LISTING_FIELDS = "items(name,generation),nextPageToken"


def data_version_value(template: PipelineTemplate, version: Callable[[], str]) -> dict[str, str]:
    """`{"data_version": version()}` for a template that declares the parameter; `{}` (nothing listed)
    for one compiled before it existed, which would refuse it as unknown."""
    return {DATA_VERSION_PARAMETER: version()} if DATA_VERSION_PARAMETER in template.parameters else {}


def _is_batch(name: str) -> bool:
    return name.rsplit("/", 1)[-1] == BATCH_FILE_NAME


def _gcs_batches(prefix_uri: str) -> Iterator[tuple[str, str]]:
    """(gs:// URI, generation) of every batch object under a gs:// prefix, page by page."""
    bucket, _, name = prefix_uri[len("gs://"):].partition("/")
    if not bucket:
        raise InvalidRequest(f"data_uri {prefix_uri!r}: expected gs://BUCKET/prefix")
    folder = name.rstrip("/") + "/" if name.rstrip("/") else ""
    # Listing by the bare name also returns the object it names (a batch file given directly).
    query = {"prefix": name.rstrip("/"), "fields": LISTING_FIELDS}
    base = f"{transport.storage_api_base()}/storage/v1/b/{quote(bucket, safe='')}/o"
    while True:
        response = transport.send("GET", f"{base}?{urlencode(query)}")
        transport.raise_for_status(response, f"listing {prefix_uri} for its data version")
        page = response.json()
        for item in page.get("items", []):
            object_name = item["name"]
            # As ingest reads: batch files below the prefix, or the object the prefix names if it is one.
            if (object_name.startswith(folder) and _is_batch(object_name)) or (
                    object_name == name and name.endswith(BATCH_FILE_NAME)):
                yield f"gs://{bucket}/{object_name}", str(item["generation"])
        if not page.get("nextPageToken"):
            return
        query["pageToken"] = page["nextPageToken"]


def _local_batches(prefix: str) -> Iterator[tuple[str, str]]:
    """(path, size:mtime_ns) of every batch file under a local folder (relative: to the project, as ingest)."""
    path = Path(prefix)
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if path.is_file() and path.name.endswith(BATCH_FILE_NAME):
        files = [path]
    elif path.is_dir():
        files = [file for file in path.rglob(BATCH_FILE_NAME) if file.is_file()]
    else:
        raise InvalidRequest(f"data_uri {prefix!r}: no such folder or file here, so its data version cannot be "
                             f"listed (pass data_version yourself to skip the listing)")
    for file in files:
        stat = file.stat()
        yield str(file.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}"


def listed_batches(data_uri: str) -> list[tuple[str, str]]:
    """(URI, version) of every batch file ingest would read under `data_uri` (comma-separated prefixes), sorted."""
    entries: list[tuple[str, str]] = []
    for prefix in (part.strip() for part in data_uri.split(",")):
        if prefix:
            entries.extend(_gcs_batches(prefix) if prefix.startswith("gs://") else _local_batches(prefix))
    return sorted(entries)


def listing_version(data_uri: str) -> str:
    """Fingerprint of `listed_batches(data_uri)`. A `bq://` table is no listing: "", and the run's snapshot
    step pins it (a new snapshot, whose name and time become the data_version ingest is keyed on)."""
    if data_uri.strip().startswith(BIGQUERY_SCHEME):
        return ""
    listing = json.dumps(listed_batches(data_uri), separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]

