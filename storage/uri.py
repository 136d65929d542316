"""The one way to read a file or a folder by URI: `gs://`, the `/gcs/` mount, or a local path.

Vertex AI Pipelines and Vertex Training mount Cloud Storage at `/gcs/` (Cloud
Storage FUSE): `gs://bucket/x` is `/gcs/bucket/x` there. Where the mount holds
the object, it is read through the mount; anywhere else (this machine, the GCS
emulator in tests, a server without the mount) through google-cloud-storage,
which honours `STORAGE_EMULATOR_HOST`. A local path is read as it is.

Never build a `Path` from a URI string: `Path("gs://b/x")` is `gs:/b/x`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

GCS_SCHEME = "gs://"
# Where Vertex mounts Cloud Storage; a setting only so that tests can prove the mapping.
GCS_MOUNT_ENV = "MLOPS_GCS_MOUNT"
DEFAULT_GCS_MOUNT = "/gcs"


def gcs_mount() -> Path:
    return Path(os.environ.get(GCS_MOUNT_ENV, DEFAULT_GCS_MOUNT))


def is_gcs(uri: str) -> bool:
    return str(uri).startswith(GCS_SCHEME)


def split_gcs(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, name = uri[len(GCS_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} is not a Cloud Storage URI: expected gs://BUCKET/path")
    return bucket, name


def canonical(uri: str | Path) -> str:
    """`/gcs/bucket/x` (the mount) -> `gs://bucket/x`; anything else unchanged."""
    text = str(uri)
    mount = str(gcs_mount()).rstrip("/") + "/"
    return GCS_SCHEME + text[len(mount):] if text.startswith(mount) else text


def mounted_path(uri: str) -> Path:
    """Where the `/gcs/` mount shows `gs://bucket/x` (whether or not the mount exists here)."""
    bucket, name = split_gcs(uri)
    return gcs_mount() / bucket / name


def join(uri: str | Path, *parts: str) -> str:
    """`uri/part/...` for a gs:// URI or a local path, without ever turning a URI into a Path."""
    text = str(uri)
    if is_gcs(text):
        return "/".join([text.rstrip("/"), *(part.strip("/") for part in parts)])
    return str(Path(text, *parts))


def _local(uri: str) -> Path | None:
    """The local file behind a URI, if there is one: a local path, or the mount's view of gs://."""
    uri = canonical(uri)
    if not is_gcs(uri):
        return Path(uri)
    mounted = mounted_path(uri)
    return mounted if mounted.exists() else None


def _client():
    from google.cloud import storage as gcs  # only a gs:// read without the mount pays for this import

    return gcs.Client()


def read_bytes(uri: str | Path) -> bytes:
    """The bytes of one file; FileNotFoundError names the URI."""
    uri = str(uri)
    local = _local(uri)
    if local is not None:
        try:
            return local.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri} does not exist") from None
    from google.api_core import exceptions

    bucket, name = split_gcs(canonical(uri))
    try:
        return _client().bucket(bucket).blob(name).download_as_bytes()
    except exceptions.NotFound:
        raise FileNotFoundError(f"{uri} does not exist") from None


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def exists(uri: str | Path) -> bool:
    uri = str(uri)
    local = _local(uri)
    if local is not None:
        return local.exists()
    bucket, name = split_gcs(canonical(uri))
    client = _client()
    if client.bucket(bucket).blob(name).exists():
        return True
    return any(True for _ in client.list_blobs(bucket, prefix=name.rstrip("/") + "/", max_results=1))


def local_dir(uri: str | Path, cache_root: Path | None = None) -> Path:
    """A folder's files on local disk: the folder itself, the mount's view, or a downloaded copy.

    Downloads go to a folder named by the URI under `cache_root` (a temporary folder by
    default), so a second call in the same process reuses them.
    """
    uri = str(uri)
    local = _local(uri)
    if local is not None:
        if not local.is_dir():
            raise FileNotFoundError(f"{uri} is not a folder")
        return local
    root = cache_root or Path(tempfile.gettempdir()) / "mlops-gcs-cache"
    target = root / hashlib.sha256(canonical(uri).encode()).hexdigest()[:16]
    complete = target / ".complete"
    if not complete.exists():
        download_prefix(uri, target)
        complete.touch()
    return target


def download_prefix(uri: str, destination: Path) -> Path:
    """Copy every object under a gs:// prefix into `destination`, keeping relative paths."""
    bucket_name, prefix = split_gcs(canonical(uri))
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    count = 0
    for blob in _client().list_blobs(bucket_name, prefix=prefix):
        relative = blob.name[len(prefix):]
        if not relative or relative.endswith("/"):
            continue  # folder placeholder objects
        target = Path(destination) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise FileNotFoundError(f"no objects under {uri}")
    return Path(destination)
