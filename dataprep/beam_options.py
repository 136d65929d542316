"""Beam options for the pipeline's Beam steps (transform, evaluate), given as TFX gives them.

Two pipeline parameters reach every Beam step: `beam_runner` (DirectRunner
locally, DataflowRunner at scale) and `beam_pipeline_args`, the list of Beam
flags TFX calls by that name (`--project=...`, `--region=...`,
`--temp_location=gs://...`, `--service_account_email=...`,
`--machine_type=...`, `--max_num_workers=...`, `--sdk_container_image=...`,
`--subnetwork=...`). They are checked here, before any work, so a Dataflow run
missing a setting is refused with its name instead of failing inside Beam.

The workers' network is asked for explicitly: without `--network` or `--subnetwork`
Dataflow assumes an auto mode VPC network named `default`, and a project without
one (organisations often forbid it) cannot start a worker
(https://cloud.google.com/dataflow/docs/guides/specifying-networks). A project that
has it says `--network=default`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import time

from storage import uri as storage_uri

DIRECT_RUNNER = "DirectRunner"
DATAFLOW_RUNNER = "DataflowRunner"
RUNNERS = (DIRECT_RUNNER, DATAFLOW_RUNNER)
# What a Dataflow job cannot start without, and an example of each.
DATAFLOW_REQUIRED = {"project": "--project=my-project", "region": "--region=us-central1",
                     "temp_location": "--temp_location=gs://my-bucket/dataflow/tmp"}
NETWORK_EXAMPLE = "--subnetwork=regions/us-central1/subnetworks/dataflow (or --network=NAME, e.g. --network=default)"
# Dataflow takes a network by name only, a subnetwork as a full URL (required for Shared VPC) or as
# regions/REGION/subnetworks/NAME, in the workers' region (specifying-networks, above).
_NETWORK_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBNETWORK = re.compile(r"(https://www\.googleapis\.com/compute/v1/projects/[^/]+/)?"
                         r"regions/(?P<region>[a-z0-9-]+)/subnetworks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


class BeamOptionsError(ValueError):
    """beam_runner or beam_pipeline_args cannot run; the message names the setting and an example."""


@dataclasses.dataclass(frozen=True)
class BeamOptions:
    runner: str
    args: tuple[str, ...]  # what Beam's PipelineOptions takes, --runner first

    @property
    def on_dataflow(self) -> bool:
        return self.runner == DATAFLOW_RUNNER

    def location(self, path: str) -> str:
        """Where Beam reads or writes `path`. Dataflow's workers have no /gcs/ mount, so there a mounted
        path becomes its gs:// URI; the DirectRunner runs in the step, beside the mount or a local folder,
        and keeps the path (so the GCS emulator stands in for Cloud Storage in tests)."""
        return storage_uri.canonical(path) if self.on_dataflow else str(path)

    def pipeline_options(self):
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(list(self.args))

    def local_runner(self):
        """On the DirectRunner, the runner object to give Beam: its FnApiRunner, the one that honours
        `--direct_num_workers` and `--direct_running_mode`. Beam 2.77's DirectRunner first tries Prism, a Go
        runner it downloads from GitHub on first use (offline the download fails and it falls back), which
        ignores them: the same run would differ by machine. None on Dataflow (`--runner` decides)."""
        if self.on_dataflow:
            return None
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(self.pipeline_options().get_all_options())
        return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))

    def work_location(self, local_scratch: str, name: str) -> str:
        """Where a step's Beam stages leave results for the launching process: a fresh folder under the job's
        temp_location on Dataflow (its workers cannot see this machine), else the step's local scratch."""
        temp = self.temp_location()
        return storage_uri.join(temp, f"{name}-{time.time_ns()}") if self.on_dataflow and temp else local_scratch

    def temp_location(self) -> str | None:
        return self.pipeline_options().get_all_options().get("temp_location")


# glibc's mallopt parameters (malloc.h) and what the Beam steps set them to: see release_freed_memory.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 64 * 1024
_FREED_MEMORY_RELEASED = False


def release_freed_memory() -> None:
    """Makes this process, and the Beam worker processes it starts, hand freed memory back to the system.

    The data steps' Beam workers turn each chunk into pandas columns of a few hundred KB and free them. With
    glibc's defaults those blocks come from the heap, whose freed space fragments and stays resident: a
    worker's peak grew with the rows it had read (validation: 1.33-1.44x from 1x to 20x the sample). Blocks
    of 64 KiB and more mapped on their own, and the heap's free top trimmed at once, keep the peak flat
    (1.20-1.29x; docs/scale.md) at the same speed. Called once per process, where a worker's work starts
    (a Dataflow worker too); the environment variables reach worker processes Beam starts here. Nothing
    to do off glibc."""
    global _FREED_MEMORY_RELEASED
    if _FREED_MEMORY_RELEASED:
        return
    _FREED_MEMORY_RELEASED = True
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(_MMAP_THRESHOLD_BYTES))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl)
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, 0)


def runs_in_process(beam_runner: str, beam_pipeline_args: list[str] | tuple[str, ...] | None) -> bool:
    """Ingest and validation on the DirectRunner with no Beam flag run their plain-Python form in the step's
    own process: the same functions the Beam graph calls, without the DirectRunner's start-up (a few seconds
    a step, more than the sample's whole work: docs/scale.md). Any flag (such as
    `--direct_num_workers=2 --direct_running_mode=multi_processing`) or DataflowRunner runs the Beam graph."""
    return beam_runner == DIRECT_RUNNER and not beam_pipeline_args


def beam_options(beam_runner: str, beam_pipeline_args: list[str] | tuple[str, ...] | None) -> BeamOptions:
    """The checked options of a Beam step; BeamOptionsError names what is wrong."""

    if beam_runner not in RUNNERS:
        raise BeamOptionsError(f"beam_runner {beam_runner!r}; expected one of {', '.join(RUNNERS)}")
    args = list(beam_pipeline_args or [])
    malformed = [arg for arg in args if not isinstance(arg, str) or not arg.startswith("--")]
    if malformed:
        raise BeamOptionsError(f"beam_pipeline_args {malformed!r}: each must be a Beam flag such as "
                               "'--temp_location=gs://my-bucket/tmp'")
    if any(arg.split("=", 1)[0] == "--runner" for arg in args):
        raise BeamOptionsError("beam_pipeline_args sets --runner; set the pipeline parameter beam_runner instead")
    options = _parsed(args)
    if beam_runner == DATAFLOW_RUNNER:
        missing = [example for name, example in DATAFLOW_REQUIRED.items() if not options.get(name)]
        if missing:
            raise BeamOptionsError(f"beam_runner DataflowRunner needs {', '.join(missing)} in beam_pipeline_args")
        if not storage_uri.is_gcs(options["temp_location"]):
            raise BeamOptionsError(f"--temp_location={options['temp_location']}: Dataflow needs a gs:// location")
        _check_network(options)
    return BeamOptions(beam_runner, (f"--runner={beam_runner}", *args))


def _parsed(args: list[str]) -> dict:
    """Beam's own reading of the flags. Beam ends the process on a bad value (argparse) and drops a flag it
    does not know with a warning: a misspelled `--direct_num_worker=2` would silently run one worker."""
    import contextlib
    import io

    from apache_beam.options.pipeline_options import PipelineOptions

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            known = PipelineOptions(args).get_all_options()
    except SystemExit:
        reason = (said.getvalue().strip().splitlines() or ["not accepted"])[-1].split("error: ", 1)[-1]
        raise BeamOptionsError(f"beam_pipeline_args {args!r}: {reason}") from None
    unknown = sorted(set(PipelineOptions(args).get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        raise BeamOptionsError(f"beam_pipeline_args: {', '.join('--' + name for name in unknown)} is not a Beam "
                               "flag (https://cloud.google.com/dataflow/docs/reference/pipeline-options)")
    return known


def _check_network(options: dict) -> None:
    network, subnetwork = options.get("network"), options.get("subnetwork")
    if not network and not subnetwork:
        raise BeamOptionsError(f"beam_runner DataflowRunner needs the workers' network in beam_pipeline_args: "
                               f"{NETWORK_EXAMPLE}; without one Dataflow uses the VPC network `default`, which "
                               "many projects do not have")
    if network and not _NETWORK_NAME.fullmatch(network):
        raise BeamOptionsError(f"--network={network}: expected a VPC network's name such as 'default' (a "
                               "subnetwork in another project or a custom mode network goes in --subnetwork)")
    if subnetwork:
        match = _SUBNETWORK.fullmatch(subnetwork)
        if not match:
            raise BeamOptionsError(f"--subnetwork={subnetwork}: expected regions/REGION/subnetworks/NAME or "
                                   "https://www.googleapis.com/compute/v1/projects/PROJECT/regions/REGION/"
                                   "subnetworks/NAME (the full URL for a Shared VPC)")
        if match["region"] != options["region"]:
            raise BeamOptionsError(f"--subnetwork={subnetwork} is in {match['region']}, the workers run in "
                                   f"--region={options['region']}: Dataflow needs a subnetwork of the workers' region")
