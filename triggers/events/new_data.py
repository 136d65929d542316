"""New data: a finalized `PREFIX/YYYY/MM/DD/HHMM/batch.csv` asks for one training run on that partition."""

from __future__ import annotations

import hashlib
import re

from triggers.config import NewDataConfig
from triggers.events.partitions import parse_batch_object, partition_path
from triggers.events.policy import CloudEventLike, object_data, require_type
from triggers.submission.data_version import data_version_value
from triggers.submission.errors import IgnoredEvent
from triggers.submission.pipeline_jobs import RunRequest, make_job_id
from triggers.submission.templates import load_template

TRIGGER = "new-data"
OBJECT_FINALIZED = "google.cloud.storage.object.v1.finalized"
GENERATION = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1


def run_for_object(event: CloudEventLike, config: NewDataConfig) -> RunRequest:
    """The training run a Cloud Storage `object.v1.finalized` event asks for; IgnoredEvent if none."""
    require_type(event, OBJECT_FINALIZED)
    data = object_data(event)
    bucket, name, generation = data.get("bucket"), data.get("name"), data.get("generation")
    if not isinstance(bucket, str) or not isinstance(name, str) or not bucket or not name:
        raise IgnoredEvent("storage event without bucket and name", malformed=True)
    # int64 fields are strings in proto3 JSON; Google's own sample events also use numbers.
    # ASCII digits only (str.isdigit() also accepts "１７" and "²"), read as an int64 so that one
    # generation has one spelling, hence one job id.
    if isinstance(generation, bool) or not isinstance(generation, int | str) or not GENERATION.fullmatch(
            str(generation)) or int(generation) > INT64_MAX:
        raise IgnoredEvent(f"storage event for {name!r} has generation {generation!r}, expected digits "
                           "(an int64 written in ASCII digits)", malformed=True)
    generation = str(int(generation))
    if bucket != config.data_bucket:
        raise IgnoredEvent(f"object gs://{bucket}/{name} is not in the data bucket {config.data_bucket}")
    try:
        start = parse_batch_object(name, config.data_prefix)
    except ValueError as error:
        raise IgnoredEvent(str(error)) from None

    template = load_template(config.template_uri, max_age_seconds=config.vertex.template_cache_seconds)
    # bucket/object#generation names this upload exactly: a redelivery gets the same job id,
    # an overwrite of the same object (new generation) gets a new run.
    upload = hashlib.sha256(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:12]
    return RunRequest(
        template_uri=config.template_uri,
        # The generation names this upload's bytes: an overwrite is not a cache hit of ingest on Vertex.
        parameter_values={**config.vertex.pipeline_parameters,
                          "data_uri": f"gs://{bucket}/{partition_path(config.data_prefix, start)}",
                          **data_version_value(template, lambda: generation)},
        labels={"trigger": TRIGGER, "partition": f"{start:%Y-%m-%d-%H%M}"},
        service_account=config.vertex.service_account,
        job_id=make_job_id(template.name, TRIGGER, f"{start:%Y%m%d%H%M}", upload),
    )
