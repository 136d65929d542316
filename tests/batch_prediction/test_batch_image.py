"""The pipeline image holds what the batch prediction template's steps import, all of it pinned."""

from __future__ import annotations

import importlib.metadata
import json
import re

from contract.paths import PROJECT_ROOT
from pipelines.compile import COMPILED_DIR
from tests.pipeline.test_pipeline_image import DOCKERFILE, _closure, _copies, _covered, _instructions
from tests.pipeline.vertex_rehearsal import container_launcher, step_program


def test_the_image_holds_and_pins_what_the_batch_steps_import():
    spec = json.loads((COMPILED_DIR / "batch_prediction_pipeline.json").read_text())
    programs = [step_program(spec, name) for name, component in spec["components"].items()
                if "executorLabel" in component and container_launcher(spec, name) is None]
    assert {program.function_name for program in programs} == {
        "resolve_batch_model", "plan_batch_job", "publish_batch_job_output"}
    files, third_party = _closure([program.source for program in programs])
    relative = sorted(path.relative_to(PROJECT_ROOT).as_posix() for path in files)
    assert "batch_prediction/vertex_job.py" in relative and "serving/instances.py" in relative
    copies = _copies(_instructions(DOCKERFILE.read_text()))
    assert not [path for path in relative if not _covered(path, copies)], "components/Dockerfile misses a COPY"
    lock = {re.sub(r"[-_.]+", "-", name).lower() for name in
            re.findall(r"^([A-Za-z0-9_.\-]+)==", (PROJECT_ROOT / "requirements.lock").read_text(), re.M)}
    providers = importlib.metadata.packages_distributions()
    assert {"duckdb", "pyarrow"} <= third_party
    unpinned = {name for name in third_party
                if not {re.sub(r"[-_.]+", "-", dist).lower() for dist in providers.get(name, [])} & lock}
    assert not unpinned, f"imported by the batch steps but not pinned in requirements.lock: {unpinned}"
