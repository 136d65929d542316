"""Local pipelines API: the Vertex AI `pipelineJobs` REST resource on this machine, runs by kfp.local.

    python runner.py pipelines serve [--port 8091] [--local-dir local]   # then, elsewhere:
    MLOPS_VERTEX_API_ENDPOINT=http://127.0.0.1:8091 python runner.py --submit --template ... --param ...
    python runner.py pipelines list [--local-dir local]                  # the runs and their states

Routes (the paths `triggers.submission.pipeline_jobs` and aiplatform call):
- `POST /v1/projects/P/locations/L/pipelineJobs?pipelineJobId=ID` creates a run: the body is a
  PipelineJob; its `pipelineSpec.pipelineInfo.name` picks the local pipeline (`LOCAL_PIPELINES`, the
  same definition the template was compiled from) and `runtimeConfig.parameterValues` are its
  parameters. An id that exists answers 409 ALREADY_EXISTS, as Vertex does.
- `GET .../pipelineJobs/ID` and `GET .../pipelineJobs` (newest first) with each run's `state`:
  PIPELINE_STATE_PENDING, _RUNNING, _SUCCEEDED or _FAILED (with `error.message`: the failed step's own
  error).

Runs execute one at a time (this is a 2-core machine), each in a child process that dies with the
server. State lives on disk under `LOCAL_DIR/pipeline_jobs/ID/job.json` (atomic writes), so the run
list survives a restart; a run that was RUNNING when the server died (kill -9, a crash) is marked
FAILED on the next start, never left running forever, and PENDING runs are started again.

Every request is held to the aiplatform v1 discovery document (fidelity/discovery.py), as the stand-ins
are: a field or parameter Vertex does not define gets Vertex's 400, and every reply is a PipelineJob (or a
list of them) as Vertex defines it. What only this machine knows of a run (its pipeline, process and log)
stays in the state file, under `localRun`, never on the wire.

Where it differs from Vertex: `runtimeConfig.gcsOutputDirectory` is recorded but the run writes under
`LOCAL_DIR/pipeline_root`; a run registers into the local registry `LOCAL_DIR/registry` unless its
parameters name another folder (`registry_uri=vertex` fails the run with that reason); no auth
(loopback only); no cancel, no paging (every run in one list).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from contract.paths import PROJECT_ROOT
from fidelity import discovery
from pipelines.local_run import LOCAL_PIPELINES
from pipelines.settings import SETTINGS
from serving.processes import die_with_parent
from storage.local_files import write_json_atomically
from triggers.submission.pipeline_jobs import JOB_ID_PATTERN, MAX_JOB_ID_LENGTH

DEFAULT_PORT = 8091
PENDING, RUNNING = "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"
SUCCEEDED, FAILED = "PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED"
JOB_FILE, LOG_FILE, RESULT_FILE = "job.json", "run.log", "result.json"
_COLLECTION = re.compile(r"/v1/(projects/[^/]+/locations/[^/]+)/pipelineJobs")
_RESOURCE = re.compile(r"/v1/(projects/[^/]+/locations/[^/]+)/pipelineJobs/([^/:]+)")
# google.rpc.Code values Vertex puts in PipelineJob.error.
_RPC_UNKNOWN, _RPC_ABORTED, _RPC_INVALID = 2, 10, 3


# What only this machine knows of a run; kept in job.json, never sent (Vertex's PipelineJob has no such field).
LOCAL_FIELD = "localRun"


def public(job: Mapping) -> dict:
    """A stored run as Vertex describes a PipelineJob."""
    return {key: value for key, value in job.items() if key != LOCAL_FIELD}


class AlreadyServing(RuntimeError):
    pass


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code

    def body(self) -> dict:
        return {"error": {"code": self.status, "status": self.code, "message": str(self)}}


def read_job(root: Path, job_id: str) -> dict | None:
    try:
        return json.loads((root / job_id / JOB_FILE).read_text())
    except FileNotFoundError:
        return None


def read_jobs(root: Path) -> list[dict]:
    """Every stored run, newest first: not the lock, not a create's staging folder (.ID-...)."""
    found = [job for path in root.iterdir()
             if JOB_ID_PATTERN.fullmatch(path.name) and (job := read_job(root, path.name))]
    return sorted(found, key=lambda job: job["createTime"], reverse=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def local_pipeline_for(pipeline_name: str) -> str:
    """The `LOCAL_PIPELINES` key of a template's `pipelineInfo.name` (`training-pipeline` -> `training`)."""
    for key, compiled_name in LOCAL_PIPELINES.items():
        if compiled_name.replace("_", "-") == pipeline_name:
            return key
    known = ", ".join(name.replace("_", "-") for name in LOCAL_PIPELINES.values())
    raise ApiError(400, "INVALID_ARGUMENT", f"pipelineSpec.pipelineInfo.name {pipeline_name!r} has no local form; "
                                            f"expected one of: {known}")


class LocalPipelineJobs:
    """The run store (`root/ID/job.json`) and the one worker that runs PENDING runs in turn."""

    def __init__(self, local_dir: Path) -> None:
        self.local_dir = Path(local_dir).resolve()
        self.root = self.local_dir / "pipeline_jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        # One server per state folder: two would run the same PENDING run twice.
        self._serve_lock = open(self.root / ".serve.lock", "a")  # noqa: SIM115 (held for the server's life)
        try:
            fcntl.flock(self._serve_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._serve_lock.close()
            raise AlreadyServing(f"another local pipelines API already serves from {self.root}") from None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._child: subprocess.Popen | None = None
        self.recover()
        self._worker = threading.Thread(target=self._work, name="local-pipeline-runs", daemon=True)
        self._worker.start()

    # --- the store -----------------------------------------------------------------------------

    def _read(self, job_id: str) -> dict | None:
        return read_job(self.root, job_id)

    def _write(self, job: dict) -> None:
        job["updateTime"] = _now()
        write_json_atomically(self.root / job["name"].rsplit("/", 1)[-1] / JOB_FILE, job)

    def jobs(self) -> list[dict]:
        return read_jobs(self.root)

    def recover(self) -> None:
        """After a restart: a run left RUNNING died with the previous server; it is FAILED, with the reason."""
        for job in self.jobs():
            if job["state"] == RUNNING:
                _stop_orphan(job.get("localRun", {}).get("pid"), job["name"])
                job.update(state=FAILED, endTime=_now(),
                           error={"code": _RPC_ABORTED, "message": "the local pipelines API stopped while this run "
                                  "was running (killed or crashed); it was marked failed when the API started again"})
                self._write(job)

    # --- the API -------------------------------------------------------------------------------

    def create(self, parent: str, job_id: str | None, body: Any) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_ARGUMENT", "the request body must be a PipelineJob JSON object")
        spec = body.get("pipelineSpec")
        if not isinstance(spec, dict) or not isinstance(spec.get("pipelineInfo"), dict):
            raise ApiError(400, "INVALID_ARGUMENT", "pipelineSpec with pipelineInfo.name is required (the compiled "
                                                    "template; pipelines from templateUri are not run locally)")
        pipeline = local_pipeline_for(spec["pipelineInfo"].get("name"))
        runtime = body.get("runtimeConfig") or {}
        parameters = runtime.get("parameterValues") or {}
        if not isinstance(parameters, dict):
            raise ApiError(400, "INVALID_ARGUMENT", "runtimeConfig.parameterValues must be a JSON object")
        job_id = job_id or f"{spec['pipelineInfo']['name']}-{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M%S%f}"
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise ApiError(400, "INVALID_ARGUMENT", f"pipelineJobId {job_id!r}: expected a lowercase letter then up "
                                                    f"to {MAX_JOB_ID_LENGTH - 1} of [-a-z0-9] ({MAX_JOB_ID_LENGTH} "
                                                    "characters at most)")
        now = _now()
        job = {key: value for key, value in body.items() if key != "pipelineSpec"} | {
            "name": f"{parent}/pipelineJobs/{job_id}", "state": PENDING, "createTime": now, "updateTime": now,
            "localRun": {"pipeline": pipeline, "log": str(self.root / job_id / LOG_FILE)}}
        # The whole folder appears at once, or the id is taken: idempotent across threads and processes.
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{job_id}-"))
        write_json_atomically(staging / JOB_FILE, job)
        write_json_atomically(staging / "pipeline_spec.json", spec)
        try:
            os.rename(staging, self.root / job_id)
        except OSError:
            shutil.rmtree(staging)
            raise ApiError(409, "ALREADY_EXISTS", f"PipelineJob {parent}/pipelineJobs/{job_id} already exists"
                           ) from None
        with self._wake:
            self._wake.notify_all()
        return job

    def get(self, parent: str, job_id: str) -> dict:
        job = self._read(job_id) if JOB_ID_PATTERN.fullmatch(job_id) else None
        if job is None or not job["name"].startswith(f"{parent}/"):
            raise ApiError(404, "NOT_FOUND", f"PipelineJob {parent}/pipelineJobs/{job_id} does not exist")
        return job

    def list(self, parent: str) -> list[dict]:
        return [job for job in self.jobs() if job["name"].startswith(f"{parent}/")]

    # --- the worker ----------------------------------------------------------------------------

    def _next_pending(self) -> dict | None:
        pending = [job for job in self.jobs() if job["state"] == PENDING]
        return min(pending, key=lambda job: job["createTime"]) if pending else None

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (job := self._next_pending()) is None:
                    self._wake.wait(timeout=5)
                if self._stopping:
                    return
            self._run(job)

    def _run(self, job: dict) -> None:
        job_dir = self.root / job["name"].rsplit("/", 1)[-1]
        with open(job_dir / LOG_FILE, "ab") as log:
            # The child dies with this server (prctl); it leads its own process group, so the steps kfp.local
            # starts under it can be stopped with it (on close, and on the next start after a kill -9).
            child = subprocess.Popen([sys.executable, "-m", "pipelines.local_jobs_api", "_run", str(job_dir),
                                      "--local-dir", str(self.local_dir)],
                                     cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        self._child = child
        job.update(state=RUNNING, startTime=_now())
        job["localRun"]["pid"] = child.pid
        self._write(job)
        code = child.wait()
        self._child = None
        try:
            result = json.loads((job_dir / RESULT_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            why = "the local pipelines API was stopped while this run was running" if self._stopping else \
                f"the run's process exited with status {code} before it wrote its result"
            result = {"succeeded": False, "code": _RPC_ABORTED, "error": f"{why}; see {job_dir / LOG_FILE}"}
        job.update(state=SUCCEEDED if result["succeeded"] else FAILED, endTime=_now())
        job["localRun"] |= {key: result[key] for key in ("runDir", "wallSeconds") if key in result}
        if not result["succeeded"]:
            job["error"] = {"code": result.get("code", _RPC_UNKNOWN), "message": result["error"]}
        self._write(job)

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._child.pid, signal.SIGTERM)
        self._worker.join(timeout=30)
        self._serve_lock.close()


def _stop_orphan(pid: Any, job_name: str) -> None:
    """Stops what is left of a run whose server died: its process dies with the server, but a step kfp.local
    had started under it may still be running (and could still register a model). Every process of the run's
    process group is killed, unless the group's leader is alive and is not that run (a recycled pid)."""
    if not isinstance(pid, int):
        return
    with contextlib.suppress(OSError):
        if job_name.rsplit("/", 1)[-1] not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def run_job(job_dir: Path, local_dir: Path) -> int:
    """The child process of one run: the local pipeline with the job's parameters; writes result.json."""
    from pipelines import local_run
    from triggers.submission.errors import ParameterError
    from triggers.submission.templates import PipelineTemplate

    job = json.loads((job_dir / JOB_FILE).read_text())
    values = dict(job.get("runtimeConfig", {}).get("parameterValues") or {})
    template = PipelineTemplate(str(job_dir / "pipeline_spec.json"),
                                json.loads((job_dir / "pipeline_spec.json").read_text()))
    print(f"{_now()} {job['name']}: local pipeline {job['localRun']['pipeline']!r}, parameters {values}", flush=True)
    try:
        template.check_values(values)
        if values.get("registry_uri") == "vertex":
            raise ValueError("registry_uri=vertex needs Vertex AI: a local run registers into a local folder "
                             f"(default {local_dir / 'registry'}); leave it unset or pass a folder")
        # The data set config's own parameter defaults apply as in `runner.py --run local`.
        defaults, _ = local_run.local_parameters(job["localRun"]["pipeline"], {}, values.get("data_uri"),
                                                 values.get("dataset_config"))
    except (ParameterError, ValueError) as error:
        write_json_atomically(job_dir / RESULT_FILE, {"succeeded": False, "code": _RPC_INVALID, "error": str(error)})
        return 2
    run = local_run.run_pipeline(job["localRun"]["pipeline"], local_dir,
                                 started_by=f"local pipelines API: {job['name']}", **(defaults | values))
    errors = "; ".join(f"{task} failed: {error}" for task, error in run.step_errors.items())
    write_json_atomically(job_dir / RESULT_FILE, {
        "succeeded": run.succeeded, "runDir": str(run.run_dir) if run.run_dir else None,
        "wallSeconds": round(run.wall_seconds, 1), "error": errors or "the run failed; see its log"})
    return 0 if run.succeeded else 1


class _Handler(BaseHTTPRequestHandler):
    jobs: LocalPipelineJobs  # set by serve()

    def _reply(self, status: int, body: Mapping) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self) -> tuple[int, Mapping]:
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "GET" and parts.path in ("/", "/health"):
            return 200, {"status": "ok"}
        api = discovery.load("aiplatform.v1")
        try:
            api.check_request(discovery.route((api,), self.command, self.path), parts.query, body)
        except discovery.Invalid as error:
            raise ApiError(error.status, error.code, str(error)) from None
        if match := _COLLECTION.fullmatch(parts.path):
            if self.command == "POST":
                try:
                    request = json.loads(body or b"null")
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ApiError(400, "INVALID_ARGUMENT", "the request body is not JSON") from None
                job_id = parse_qs(parts.query).get("pipelineJobId", [None])[0]
                return 200, public(self.jobs.create(match.group(1), job_id, request))
            if self.command == "GET":
                return 200, {"pipelineJobs": [public(job) for job in self.jobs.list(match.group(1))]}
        elif (match := _RESOURCE.fullmatch(parts.path)) and self.command == "GET":
            return 200, public(self.jobs.get(match.group(1), match.group(2)))
        raise ApiError(404, "NOT_FOUND", f"no route {self.command} {parts.path}: this local API serves "
                                         "pipelineJobs create, get and list")

    def _handle(self) -> None:
        try:
            status, body = self._route()
        except ApiError as error:
            status, body = error.status, error.body()
        self._reply(status, body)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 (http.server's naming)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        print(f"{_now()} {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", file=sys.stderr)


def serve(port: int, local_dir: Path) -> int:
    """Serves on 127.0.0.1:port until SIGTERM or Ctrl-C."""
    try:
        discovery.load("aiplatform.v1")  # before listening: a missing document is named, not met per request
    except discovery.DiscoveryNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{port}: {error.strerror} (another server there? --port PORT)",
              file=sys.stderr)
        return 2
    try:
        jobs = LocalPipelineJobs(local_dir)
    except AlreadyServing as error:
        server.server_close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    server.RequestHandlerClass = type("Handler", (_Handler,), {"jobs": jobs})
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"local pipelines API on http://127.0.0.1:{server.server_address[1]} (runs and state in {jobs.root}); "
          f"point MLOPS_VERTEX_API_ENDPOINT at it", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        jobs.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner.py pipelines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the local pipelines API")
    serve_parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    list_parser = commands.add_parser("list", help="the runs and their states")
    run_parser = commands.add_parser("_run", help=argparse.SUPPRESS)
    run_parser.add_argument("job_dir", type=Path)
    for sub in (serve_parser, list_parser, run_parser):
        sub.add_argument("--local-dir", type=Path, default=SETTINGS.local_dir,
                         help="local mode's state folder (default: $MLOPS_LOCAL_DIR or local/)")
    args = parser.parse_args(argv)
    if args.command == "_run":
        return run_job(args.job_dir, args.local_dir)
    if args.command == "list":
        root = args.local_dir / "pipeline_jobs"
        jobs = read_jobs(root) if root.is_dir() else []
        for job in reversed(jobs):
            error = job.get("error", {}).get("message", "")
            print(f"{job['createTime']}  {job['state'].removeprefix('PIPELINE_STATE_'):<9}  "
                  f"{job['name'].rsplit('/', 1)[-1]}  {error}")
        if not jobs:
            print(f"no runs in {root}")
        return 0
    return serve(args.port, args.local_dir)


if __name__ == "__main__":
    sys.exit(main())
