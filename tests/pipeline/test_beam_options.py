"""beam_runner and beam_pipeline_args: checked before any work, and what each Beam step receives."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from dataprep.beam_options import BeamOptionsError, beam_options

DATAFLOW_ARGS = ["--project=vertex-mlops", "--region=us-central1", "--temp_location=gs://mlops-bucket/dataflow/tmp",
                 "--service_account_email=dataflow-worker@vertex-mlops.iam.gserviceaccount.com",
                 "--machine_type=n1-standard-4", "--max_num_workers=20",
                 "--subnetwork=regions/us-central1/subnetworks/dataflow"]


def test_the_direct_runner_needs_nothing_and_keeps_local_and_mounted_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_GCS_MOUNT", str(tmp_path / "gcs"))
    options = beam_options("DirectRunner", [])
    assert options.args == ("--runner=DirectRunner",) and not options.on_dataflow
    assert options.location(str(tmp_path / "gcs" / "b" / "x")) == str(tmp_path / "gcs" / "b" / "x")


def test_dataflow_gets_every_setting_and_gs_locations_for_mounted_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_GCS_MOUNT", str(tmp_path / "gcs"))
    options = beam_options("DataflowRunner", DATAFLOW_ARGS)
    assert options.args == ("--runner=DataflowRunner", *DATAFLOW_ARGS)
    assert options.location(str(tmp_path / "gcs" / "b" / "examples")) == "gs://b/examples"
    assert options.temp_location() == "gs://mlops-bucket/dataflow/tmp"
    everything = options.pipeline_options().get_all_options()
    assert (everything["service_account_email"], everything["machine_type"], everything["max_num_workers"]) == (
        "dataflow-worker@vertex-mlops.iam.gserviceaccount.com", "n1-standard-4", 20)


@pytest.mark.parametrize("runner, args, message", [
    ("SparkRunner", [], "beam_runner 'SparkRunner'; expected one of DirectRunner, DataflowRunner"),
    ("DataflowRunner", ["--project=p"], "needs --region=us-central1, --temp_location=gs://"),
    ("DataflowRunner", ["--project=p", "--region=r", "--temp_location=/tmp/x"], "needs a gs:// location"),
    ("DirectRunner", ["--runner=DataflowRunner"], "set the pipeline parameter beam_runner instead"),
    ("DirectRunner", ["temp_location=gs://b"], "each must be a Beam flag"),
    ("DirectRunner", [3], "each must be a Beam flag"),
    # Beam itself would end the process on a bad value, and drop a flag it does not know with a warning.
    ("DirectRunner", ["--direct_num_workers=two"], "--direct_num_workers: invalid int value: 'two'"),
    ("DirectRunner", ["--direct_running_mode=threads"], "invalid choice: 'threads'"),
    ("DirectRunner", ["--direct_num_worker=2"], "--direct_num_worker is not a Beam flag"),
    # Without a network Dataflow assumes the VPC network `default`, which a project may not have.
    ("DataflowRunner", DATAFLOW_ARGS[:-1], "needs the workers' network in beam_pipeline_args: --subnetwork="),
    ("DataflowRunner", [*DATAFLOW_ARGS[:-1], "--network=projects/p/global/networks/n"],
     "expected a VPC network's name"),
    ("DataflowRunner", [*DATAFLOW_ARGS[:-1], "--subnetwork=dataflow"], "expected regions/REGION/subnetworks/NAME"),
    ("DataflowRunner", [*DATAFLOW_ARGS[:-1], "--subnetwork=regions/europe-west1/subnetworks/dataflow"],
     "is in europe-west1, the workers run in --region=us-central1"),
])
def test_bad_beam_settings_are_refused_by_name(runner, args, message):
    with pytest.raises(BeamOptionsError, match=message.replace("(", r"\(")):
        beam_options(runner, args)


@pytest.mark.parametrize("network", [
    "--network=default", "--subnetwork=https://www.googleapis.com/compute/v1/projects/host/regions/us-central1/"
                         "subnetworks/shared-vpc-dataflow"])
def test_a_named_network_or_a_shared_vpc_subnetwork_is_accepted(network):
    options = beam_options("DataflowRunner", [*DATAFLOW_ARGS[:-1], network])
    name, value = network.removeprefix("--").split("=", 1)
    assert options.pipeline_options().get_all_options()[name] == value


def test_the_transform_step_refuses_bad_settings_before_starting_its_child(tmp_path):
    from dataprep.transform import run_transform

    with pytest.raises(BeamOptionsError, match="DataflowRunner needs"):
        run_transform(str(tmp_path), "config.yaml", "schema.pbtxt", str(tmp_path / "g"), str(tmp_path / "t"),
                      "DataflowRunner", [])


def test_every_beam_step_receives_the_pipeline_parameters():
    import json

    from pipelines.compile import COMPILED_DIR

    spec = json.loads((COMPILED_DIR / "training_pipeline.json").read_text())
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["beam_runner"]["defaultValue"] == "DirectRunner"
    assert defaults["beam_pipeline_args"]["defaultValue"] == []
    tasks = spec["root"]["dag"]["tasks"]
    for task in ("ingest-data", "validate-data", "transform-data", "evaluate-model"):
        inputs = tasks[task]["inputs"]["parameters"]
        assert inputs["beam_runner"]["componentInputParameter"] == "beam_runner"
        assert inputs["beam_pipeline_args"]["componentInputParameter"] == "beam_pipeline_args"


_FRAGMENTED_HEAP = """
import sys
from dataprep.beam_options import release_freed_memory
if sys.argv[1] == "released":
    release_freed_memory()
def resident_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024
blocks = [bytearray(100_000) for _ in range(1000)]  # 100 MB of a chunk's column-sized blocks
before = resident_mb()
del blocks[::2]  # every other one freed: holes between live blocks, as a worker's chunks leave them
print(before - resident_mb())
"""


@pytest.mark.parametrize("mode, handed_back", [("released", True), ("glibc defaults", False)])
def test_a_worker_hands_freed_chunk_memory_back(mode, handed_back):
    """What keeps the Beam data steps' peak flat (docs/scale.md): blocks of a chunk's size freed between live
    ones leave the process with release_freed_memory(), and stay resident under glibc's defaults."""
    from tests.conftest import require_or_skip

    require_or_skip(platform.libc_ver()[0] == "glibc", "glibc's mallopt: this machine's C library is not glibc")
    glibc_defaults = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    returned = float(subprocess.run([sys.executable, "-c", _FRAGMENTED_HEAP, mode], capture_output=True, text=True,
                                    check=True, env=glibc_defaults).stdout)
    assert (returned > 40) is handed_back, f"{mode}: {returned:.0f} MB of 50 freed went back"
