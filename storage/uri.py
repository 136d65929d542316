"""The one way to read a file or a folder by URI: `gs://`, the `/gcs/` mount, or a local path.

Vertex AI Pipelines and Vertex Training mount Cloud Storage at `/gcs/` (Cloud
Storage FUSE): `gs://bucket/x` is `/gcs/bucket/x` there. Where the mount holds
the object, it is read through the mount; anywhere else (this machine, the GCS
emulator in tests, a server without the mount) through google-cloud-storage,
which honours `STORAGE_EMULATOR_HOST`. A local path is read as it is.

Never build a `Path` from a URI string: `Path("gs://b/x")` is `gs:/b/x`.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path

GCS_SCHEME = "gs://"
# Where Vertex mounts Cloud Storage; a setting only so that tests can prove the mapping.
GCS_MOUNT_ENV = "MLOPS_GCS_MOUNT"
DEFAULT_GCS_MOUNT = "/gcs"
_EXPECTED = "expected gs://BUCKET/path, /gcs/BUCKET/path or a local path"


def gcs_mount() -> Path:
    return Path(os.environ.get(GCS_MOUNT_ENV, DEFAULT_GCS_MOUNT))


def is_gcs(uri: str | Path) -> bool:
    return str(uri).startswith(GCS_SCHEME)


def checked(uri: str | Path) -> str:
    """The URI as text; an empty one or another scheme (s3://, https://) is refused by name (ValueError)."""
    text = str(uri)
    if not text.strip():
        raise ValueError(f"empty URI; {_EXPECTED}")
    if "://" in text and not is_gcs(text):
        raise ValueError(f"{text!r}: scheme {text.split('://', 1)[0]}:// is not supported; {_EXPECTED}")
    return text


def split_gcs(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, name = uri[len(GCS_SCHEME):].partition("/")
    if not is_gcs(uri) or not bucket:
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
    text = checked(uri)
    if is_gcs(text):
        return "/".join([text.rstrip("/"), *(part.strip("/") for part in parts)])
    return str(Path(text, *parts))


def beside(uri: str | Path, name: str) -> str:
    """`name` relative to the folder holding `uri` (a file written next to a config, say).
    A `name` that is itself a gs:// URI or an absolute path stands as it is."""
    name = canonical(name)
    if is_gcs(name) or Path(name).is_absolute():
        return name
    text = checked(uri)
    if is_gcs(text):
        bucket, path = split_gcs(text)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), name))
        if resolved.startswith(".."):
            raise ValueError(f"{name!r} relative to {text} leaves the bucket")
        return f"{GCS_SCHEME}{bucket}/{resolved}"
    return str(Path(text).parent / name)


def _local(uri: str) -> Path | None:
    """The local file behind a URI, if there is one: a local path, or the mount's view of gs://."""
    uri = canonical(uri)
    if not is_gcs(uri):
        return Path(uri)
    mounted = mounted_path(uri)
    return mounted if mounted.exists() else None


def _client(uri: str):
    """A client, or PermissionError naming the URI when there are no credentials to read it with."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage as gcs  # only a gs:// read without the mount pays for this import

    try:
        return gcs.Client()
    except DefaultCredentialsError:
        raise PermissionError(f"reading {uri} needs Google Cloud credentials (on a workstation: gcloud auth "
                              "application-default login), or STORAGE_EMULATOR_HOST for an emulator") from None


def read_bytes(uri: str | Path) -> bytes:
    """The bytes of one file; FileNotFoundError or IsADirectoryError names the URI."""
    uri = checked(uri)
    local = _local(uri)
    if local is not None:
        if local.is_dir():
            raise IsADirectoryError(f"{uri} is a folder; expected a file")
        try:
            return local.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri} does not exist") from None
    from google.api_core import exceptions

    bucket, name = split_gcs(canonical(uri))
    if not name or name.endswith("/"):
        raise IsADirectoryError(f"{uri} names a bucket or a folder; expected a file")
    try:
        return _client(uri).bucket(bucket).blob(name).download_as_bytes()
    except exceptions.NotFound:
        raise FileNotFoundError(f"{uri} does not exist") from None
    except exceptions.Forbidden as error:
        raise PermissionError(f"reading {uri} is not allowed: {error.message}") from None


def read_text(uri: str | Path) -> str:
    """UTF-8 text of one file; a file that is not UTF-8 raises UnicodeDecodeError."""
    return read_bytes(uri).decode("utf-8")


def _gcs_objects(uri: str) -> list:
    """The objects at `uri` or under it as a folder (not siblings that merely share its text), sorted."""
    from google.api_core import exceptions

    bucket, name = split_gcs(canonical(uri))
    folder = name.rstrip("/") + "/" if name else ""
    try:
        blobs = list(_client(uri).list_blobs(bucket, prefix=name))
    except exceptions.NotFound:
        raise FileNotFoundError(f"{uri}: bucket {bucket!r} does not exist") from None
    except exceptions.Forbidden as error:
        raise PermissionError(f"listing {uri} is not allowed: {error.message}") from None
    return sorted((blob for blob in blobs if (blob.name == name or blob.name.startswith(folder))
                   and not blob.name.endswith("/")),  # folder placeholder objects
                  key=lambda blob: blob.name)


def exists(uri: str | Path) -> bool:
    """A file, or a folder holding at least one file."""
    uri = checked(uri)
    local = _local(uri)
    if local is not None:
        return local.exists()
    return bool(_gcs_objects(uri))


def list_files(uri: str | Path) -> list[str]:
    """Every file at `uri` (a file) or under it (a folder, a gs:// prefix), sorted; gs:// ones as gs://
    URIs whether they were seen through the mount or not, local ones as paths."""
    uri = checked(uri)
    local = _local(uri)
    if local is not None:
        if local.is_file():
            return [canonical(local)]
        if local.is_dir():
            return sorted(canonical(path) for path in local.rglob("*") if path.is_file())
        raise FileNotFoundError(f"{uri} does not exist")
    bucket, _ = split_gcs(canonical(uri))
    found = [f"{GCS_SCHEME}{bucket}/{blob.name}" for blob in _gcs_objects(uri)]
    if not found:
        raise FileNotFoundError(f"no objects under {uri}")
    return found


def download_prefix(uri: str, destination: Path) -> Path:
    """Copy every object under a gs:// prefix into `destination`, keeping relative paths."""
    uri = checked(uri)
    _, prefix = split_gcs(canonical(uri))
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    blobs = _gcs_objects(uri)
    if not blobs:
        raise FileNotFoundError(f"no objects under {uri}")
    for blob in blobs:
        relative = blob.name[len(prefix):] if blob.name.startswith(prefix) else posixpath.basename(blob.name)
        target = Path(destination) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    return Path(destination)


def local_dir(uri: str | Path, scratch: Path | None = None) -> Path:
    """A folder's files on local disk: the folder itself, the mount's view, or a copy downloaded
    into `scratch` (a new temporary folder by default; whoever asked owns it)."""
    uri = checked(uri)
    local = _local(uri)
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        if not local.is_dir():
            raise NotADirectoryError(f"{uri} is a file; expected a folder")
        return local
    return download_prefix(uri, scratch or Path(tempfile.mkdtemp(prefix="gcs-")))
