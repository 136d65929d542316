"""Cloud Function (2nd gen): a finalized data batch in Cloud Storage submits a training run.

Trigger: Eventarc `google.cloud.storage.object.v1.finalized` on the data bucket.
Entry point: `on_object_finalized`. See docs/triggers.md.
"""

import functions_framework

from triggers.config import NewDataConfig
from triggers.events import new_data
from triggers.events.policy import CloudEventLike, run_trigger
from triggers.submission.pipeline_jobs import VertexTarget

# At import on purpose: a bad configuration fails the deploy, not every event.
CONFIG = NewDataConfig.from_env()
TARGET = VertexTarget.from_config(CONFIG.vertex)


@functions_framework.cloud_event
def on_object_finalized(event: CloudEventLike) -> None:
    run_trigger(new_data.TRIGGER, event.get("id"), lambda: new_data.run_for_object(event, CONFIG), TARGET)
