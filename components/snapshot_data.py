from typing import NamedTuple

from components import project_component


@project_component
def snapshot_data(data_uri: str, data_version: str, snapshot_expiration_days: int
                  ) -> NamedTuple("PinnedData", data_uri=str, data_version=str):
    """Pins the data a run reads. A `bq://` table is snapshotted (CREATE SNAPSHOT TABLE, expiring after
    `snapshot_expiration_days`, 0: never) and a snapshot is used as it is; its name and time become the
    data_version. Files pass through as given. Never cached: a table's rows change under the same name, so
    each run asks again; ingest, keyed on what this returns, is cached when the snapshot is the same."""
    from collections import namedtuple

    from dataprep.bigquery_source import pin_data

    pinned = pin_data(data_uri, data_version, snapshot_expiration_days)
    if pinned.created:
        print(f"snapshot of {data_uri}: {pinned.data_uri} ({pinned.data_version})")
    elif pinned.data_uri != data_uri:
        print(f"{data_uri} is a snapshot: {pinned.data_version}")
    return namedtuple("PinnedData", ["data_uri", "data_version"])(pinned.data_uri, pinned.data_version)
