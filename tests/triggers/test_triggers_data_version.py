"""The listing fingerprint: follows the bytes ingest would read, from metadata only, never from the data.

Cloud Storage is gcp-storage-emulator behind `PagingGcs`, a proxy that records
every request and pages listings as Cloud Storage does (the emulator does not page).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from trigger_helpers import PagingGcs

from dataprep.ingest import find_batches
from tests.gcs_emulator import GcsEmulator
from triggers.submission.data_version import listed_batches, listing_version
from triggers.submission.errors import InvalidRequest

BATCH = b"trip_start_timestamp,fare,tips\n2014-03-01 00:00:00 UTC,10.0,2.5\n"


@pytest.fixture
def bucket(paging_gcs: PagingGcs, gcs: GcsEmulator) -> str:
    name = f"landing-{uuid.uuid4().hex[:12]}"
    gcs.bucket(name)
    return name


def land(gcs: GcsEmulator, bucket: str, partition: str, data: bytes = BATCH, file: str = "batch.csv") -> None:
    gcs.upload(bucket, f"data/processed/{partition}/{file}", data)


def test_a_new_partition_or_an_overwritten_batch_changes_the_version(gcs: GcsEmulator, bucket: str) -> None:
    month = f"gs://{bucket}/data/processed/2014/03"
    land(gcs, bucket, "2014/03/01/0000")
    first = listing_version(month)
    assert listing_version(month) == first  # the same listing, the same version

    land(gcs, bucket, "2014/03/02/0000")
    added = listing_version(month)
    land(gcs, bucket, "2014/03/02/0000", BATCH)  # the same bytes uploaded again: a new generation
    overwritten = listing_version(month)
    assert len({first, added, overwritten}) == 3
    assert len(first) == 16 and int(first, 16) >= 0


def test_files_ingest_does_not_read_do_not_count(gcs: GcsEmulator, bucket: str) -> None:
    land(gcs, bucket, "2014/03/01/0000")
    month = f"gs://{bucket}/data/processed/2014/03"
    before = listing_version(month)
    land(gcs, bucket, "2014/03/01/0000", file="batch.csv.tmp")           # an upload in progress
    land(gcs, bucket, "2014/03/01/0000", file="_COPYING_")
    land(gcs, bucket, "2014/030/01/0000")                                # a sibling prefix, not under 2014/03/
    land(gcs, bucket, "2014/04/01/0000")
    assert listing_version(month) == before


def test_several_prefixes_and_a_batch_named_directly(gcs: GcsEmulator, bucket: str) -> None:
    land(gcs, bucket, "2014/03/01/0000")
    land(gcs, bucket, "2014/04/01/0000")
    march, april = (f"gs://{bucket}/data/processed/2014/{month}" for month in ("03", "04"))
    both = listing_version(f"{march},{april}")
    assert both not in (listing_version(march), listing_version(april))
    assert listing_version(f" {march} ,{april},") == both  # spaces and empty parts as ingest reads them
    direct = f"{march}/01/0000/batch.csv"
    assert listing_version(direct) == listing_version(f"{march}/01/0000")


def test_only_metadata_is_requested_and_every_page_is_read(paging_gcs: PagingGcs, gcs: GcsEmulator,
                                                          bucket: str) -> None:
    for day in range(1, 11):
        land(gcs, bucket, f"2014/03/{day:02d}/0000")
    month = f"gs://{bucket}/data/processed/2014/03"
    one_page = listing_version(month)
    paging_gcs.requests.clear()
    paging_gcs.page_size = 3

    assert listing_version(month) == one_page  # ten objects in pages of 3: all of them, once
    assert len(paging_gcs.requests) == 4
    for request in paging_gcs.requests:
        assert request.startswith(f"GET /storage/v1/b/{bucket}/o?"), request
        assert "alt=media" not in request and "/download/" not in request
    assert all("pageToken=" in request for request in paging_gcs.requests[1:])


def test_a_missing_bucket_is_an_invalid_request(paging_gcs: PagingGcs) -> None:
    with pytest.raises(InvalidRequest, match=r"listing gs://no-such-bucket-x/data for its data version: HTTP 404"):
        listing_version("gs://no-such-bucket-x/data")


def test_local_files_are_versioned_by_stat_and_match_what_ingest_reads(tmp_path: Path) -> None:
    landing = tmp_path / "processed"
    for partition in ("2014/03/01/0000", "2014/03/02/0000"):
        (landing / partition).mkdir(parents=True)
        (landing / partition / "batch.csv").write_bytes(BATCH)
    (landing / "2014/03/01/0000/batch.csv.tmp").write_bytes(b"partial")
    (landing / "2014/03/01/0000/notes.txt").write_bytes(b"x")
    first = listing_version(str(landing))
    assert listing_version(str(landing)) == first

    batch = landing / "2014/03/02/0000/batch.csv"
    stat = batch.stat()
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten, same size
    touched = listing_version(str(landing))
    (landing / "2014/03/03/0000").mkdir(parents=True)
    (landing / "2014/03/03/0000/batch.csv").write_bytes(BATCH)
    added = listing_version(str(landing))
    assert len({first, touched, added}) == 3

    # The files behind the version are the ones ingest reads.
    assert [path for path, _ in listed_batches(str(landing))] == find_batches(str(landing))


def test_a_local_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"data_uri '.*nowhere': no such folder or file here.*pass data_version"):
        listing_version(str(tmp_path / "nowhere"))
