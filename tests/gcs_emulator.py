"""gcp-storage-emulator on 127.0.0.1, in memory: one server per test session, shared by every area.

Code under test reaches it through `STORAGE_EMULATOR_HOST` (google-cloud-storage honours it);
tests place and inspect objects through `GcsEmulator`, the real client pointed at it.
The server outlives each test, so a test uses a bucket of its own (`new_bucket`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from serving.processes import free_loopback_port

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class GcsEmulator:
    """The running emulator, and the real google-cloud-storage client pointed at it."""

    def __init__(self, url: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.url = url
        self.client = storage.Client(project="test-project", credentials=AnonymousCredentials(),
                                     client_options={"api_endpoint": url})

    def bucket(self, name: str):
        """The bucket, created on first use."""
        bucket = self.client.bucket(name)
        if not bucket.exists():
            self.client.create_bucket(name)
        return bucket

    def new_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.bucket(name)
        return name

    def upload(self, bucket: str, name: str, data: bytes) -> str:
        """`data` as object `name` of `bucket` (created on first use); returns its gs:// URI."""
        self.bucket(bucket).blob(name).upload_from_string(data)
        return f"gs://{bucket}/{name}"

    def upload_bytes(self, uri: str, data: bytes) -> str:
        return self.upload(*_split(uri), data)

    def delete(self, bucket: str, name: str) -> None:
        self.client.bucket(bucket).blob(name).delete()

    def upload_file(self, path: Path, uri: str) -> str:
        return self.upload_bytes(uri, Path(path).read_bytes())

    def upload_tree(self, folder: Path, uri: str) -> list[str]:
        """Every file under `folder` (or the file itself) to `uri/relative path`; returns the URIs."""
        folder = Path(folder)
        if folder.is_file():
            return [self.upload_file(folder, uri)]
        return [self.upload_file(path, f"{uri.rstrip('/')}/{path.relative_to(folder).as_posix()}")
                for path in sorted(folder.rglob("*")) if path.is_file()]

    def download_tree(self, uri: str, destination: Path) -> list[Path]:
        """The object at `uri` (a file) or every object under `uri/` (a folder) into `destination`,
        keeping the object names below the bucket; nothing there is nothing copied."""
        bucket, name = _split(uri)
        written = []
        for blob in self.client.list_blobs(bucket, prefix=name):
            if blob.name == name or blob.name.startswith(name.rstrip("/") + "/"):
                target = Path(destination) / bucket / blob.name
                target.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(target))
                written.append(target)
        return written

    def names(self, uri: str) -> list[str]:
        """Object names (below the bucket) at or under `uri`."""
        bucket, name = _split(uri)
        return sorted(blob.name for blob in self.client.list_blobs(bucket, prefix=name)
                      if blob.name == name or blob.name.startswith(name.rstrip("/") + "/"))


@contextlib.contextmanager
def running_gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator on a free loopback port, in memory, for the block's duration."""
    from gcp_storage_emulator.server import create_server

    port = free_loopback_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, name = uri[len("gs://"):].partition("/")
    return bucket, name
