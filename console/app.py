"""The local console's web app (Starlette, pages rendered on the server by Jinja2) and its command line.

    python runner.py console [--port 8095] [--local-dir DIR]

Read-only, on 127.0.0.1 only. Pages read well without JavaScript; a run in progress (and its log)
refreshes itself with a meta refresh. Every page reads the state afresh; whatever part of it cannot be
read becomes a note in place (console/state.py), and a page that fails for any other reason still
answers with its frame and the reason, never with a bare 500.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import mimetypes
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from console import dag, plots
from console.address import ADDRESS_FILE, DEFAULT_PORT, HOST
from console.state import (
    FAILED,
    INTERRUPTED,
    NOT_RUN,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    LocalState,
    Run,
    batch_runs,
    endpoint_view,
    guarded,
)
from contract.paths import PROJECT_ROOT
from evaluation.report import _STYLE as REPORT_STYLE
from pipelines.settings import SETTINGS
from storage.local_files import write_json_atomically

log = logging.getLogger("console")
TEMPLATES = Path(__file__).parent / "templates"
REFRESH_SECONDS = 3  # a run in progress, and a running step's log
_STATE_CSS = {SUCCEEDED: "ok", FAILED: "no", RUNNING: "run", INTERRUPTED: "no", PENDING: "pending",
              SKIPPED: "skipped", NOT_RUN: "not-run"}
# What a file under the local state is shown as; anything else is offered as it is.
_TEXT_FILES = {".log", ".pbtxt", ".txt", ".jsonl", ".yaml", ".yml", ".csv"}


def _when(moment: datetime.datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "–"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _number(value: Any, digits: int = 4) -> str:
    """Counts as whole numbers, measures with `digits` decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}f}"


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)


def build_app(local_dir: Path) -> Starlette:
    state = LocalState(local_dir)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    shown_dir = state.local_dir.relative_to(PROJECT_ROOT) if state.local_dir.is_relative_to(PROJECT_ROOT) else \
        state.local_dir
    templates.env.globals.update(local_dir=state.local_dir, shown_dir=shown_dir, report_style=REPORT_STYLE,
                                 state_css=_STATE_CSS, refresh_seconds=REFRESH_SECONDS)
    templates.env.filters.update(when=_when, duration=_duration, number=_number, value=_value)

    def page(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A page that fails for a reason no reader foresaw still answers: its frame, and why."""
        @functools.wraps(handler)
        async def guarded_page(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # the page says what broke, instead of a 500
                log.error("%s failed:\n%s", request.url.path, traceback.format_exc())
                return templates.TemplateResponse(request, "note.html", {
                    "title": "This page could not be built", "section": "",
                    "notes": [f"Reading the local state for {request.url.path} failed: {type(error).__name__}: "
                              f"{error}. The state may be changing right now (reload), or be damaged."]})
        return guarded_page

    def not_found(request: Request, what: str) -> Response:
        return templates.TemplateResponse(request, "note.html", {"title": "Not found", "section": "",
                                                                 "notes": [what]}, status_code=404)

    @page
    async def runs_page(request: Request) -> Response:
        notes: list[str] = []
        runs = guarded(notes, "the runs", state.runs, [])
        jobs = guarded(notes, "the local pipelines API's jobs", lambda: state.jobs_without_runs(runs), [])
        return templates.TemplateResponse(request, "runs.html", {
            "title": "Pipeline runs", "section": "runs", "runs": runs, "jobs": jobs, "notes": notes,
            "refresh": any(run.in_progress for run in runs) or any(
                job.get("state") in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING") for job in jobs),
            "pipeline_root": state.pipeline_root})

    @page
    async def run_page(request: Request) -> Response:
        run = state.run(request.path_params["name"])
        if run is None:
            return not_found(request, f"There is no run {request.path_params['name']!r} in {state.pipeline_root}.")
        graph = None
        if run.spec:
            graph = guarded(run.notes, "the DAG", lambda: dag.svg(run.spec, _look(run), lambda task: f"#step-{task}"))
        return templates.TemplateResponse(request, "run.html", {
            "title": f"Run {run.name}", "section": "runs", "run": run, "graph": graph, "notes": run.notes,
            "refresh": run.in_progress, "run_log": state.run_log(run.name, None) is not None})

    @page
    async def log_page(request: Request) -> Response:
        name, task = request.path_params["name"], request.path_params.get("task")
        path = state.run_log(name, task)
        run = state.run(name)
        if path is None or run is None:
            return not_found(request, f"Run {name!r} has no log{' for step ' + repr(task) if task else ''} "
                                      f"(runs by older code kept none; a step that never started has none).")
        text = path.read_text(encoding="utf-8", errors="replace")
        step = run.steps.get(task) if task else None
        running = (step.state == RUNNING) if step else run.in_progress
        return templates.TemplateResponse(request, "log.html", {
            "title": f"Log of {task or 'the whole run'}", "section": "runs", "run": run, "task": task,
            "text": text, "path": path, "notes": [], "refresh": running})

    @page
    async def models_page(request: Request) -> Response:
        notes: list[str] = []
        models = guarded(notes, "the registry", lambda: state.models(notes), [])
        return templates.TemplateResponse(request, "models.html", {
            "title": "Models", "section": "models", "models": models, "notes": notes, "registry": state.registry_dir})

    @page
    async def model_page(request: Request) -> Response:
        name = request.path_params["name"]
        if not (state.registry_dir / name / "versions").is_dir() or name.startswith("."):
            return not_found(request, f"There is no model {name!r} in the registry {state.registry_dir}.")
        model = state.model(name)
        return templates.TemplateResponse(request, "model.html", {
            "title": f"Model {name}", "section": "models", "model": model, "notes": model.notes})

    @page
    async def endpoint_page(request: Request) -> Response:
        name = request.path_params.get("name", "")
        notes: list[str] = []
        endpoints = guarded(notes, "the endpoints", state.endpoint_dirs, [])
        chosen = next((folder for endpoint, folder in endpoints if endpoint == name), None)
        if chosen is None:
            if name:
                return not_found(request, f"There is no local endpoint {name!r} under {state.local_dir}.")
            return templates.TemplateResponse(request, "endpoint.html", {
                "title": "Endpoint", "section": "endpoint", "view": None, "endpoints": endpoints, "plot": None,
                "notes": notes + [f"No model was ever deployed from this state: {state.local_dir / 'endpoint'} "
                                  "does not exist. `make run` deploys the model it registers."]})
        runs = guarded(notes, "the runs", state.runs, [])
        view = endpoint_view(state, name, chosen, runs)
        plot = guarded(view.notes, "the metrics plot", lambda: plots.endpoint_over_time(view.metrics, view.labels())) \
            if view.metrics else None
        return templates.TemplateResponse(request, "endpoint.html", {
            "title": f"Endpoint {name or 'local'}", "section": "endpoint", "view": view, "endpoints": endpoints,
            "plot": plot, "notes": notes + view.notes})

    @page
    async def monitoring_page(request: Request) -> Response:
        notes: list[str] = []
        results = guarded(notes, "the drift results", lambda: state.drift_results(notes), [])
        return templates.TemplateResponse(request, "monitoring.html", {
            "title": "Model monitoring", "section": "monitoring", "results": results, "notes": notes})

    @page
    async def batch_page(request: Request) -> Response:
        notes: list[str] = []
        runs = guarded(notes, "the runs", state.runs, [])
        found = guarded(notes, "the batch prediction runs", lambda: batch_runs(state, runs), [])
        return templates.TemplateResponse(request, "batch.html", {
            "title": "Batch predictions", "section": "batch", "batch_runs": found, "notes": notes})

    @page
    async def files_page(request: Request) -> Response:
        relative = request.path_params.get("path", "")
        path = state.resolve_file(relative)
        if path is None or not path.exists():
            return not_found(request, f"{relative!r} is not a file or folder of the local state {state.local_dir}.")
        if path.is_dir():
            entries = sorted(path.iterdir(), key=lambda entry: (not entry.is_dir(), entry.name))
            return templates.TemplateResponse(request, "files.html", {
                "title": str(path.relative_to(state.local_dir)) or ".", "section": "", "path": path, "notes": [],
                "entries": [(entry, state.file_link(entry)) for entry in entries]})
        media = ("text/plain; charset=utf-8" if path.suffix in _TEXT_FILES else
                 mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        return FileResponse(path, media_type=media)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "local_dir": str(state.local_dir)})

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    return Starlette(routes=[
        Route("/", home), Route("/health", health),
        Route("/runs", runs_page), Route("/runs/{name}", run_page),
        Route("/runs/{name}/log", log_page), Route("/runs/{name}/log/{task}", log_page),
        Route("/models", models_page), Route("/models/{name}", model_page),
        Route("/endpoint", endpoint_page), Route("/endpoints/{name}", endpoint_page),
        Route("/monitoring", monitoring_page), Route("/batch", batch_page),
        Route("/files/{path:path}", files_page),
    ])


def _look(run: Run) -> Callable[[str], dag.StepLook]:
    def look(task: str) -> dag.StepLook:
        step = run.steps.get(task)
        if step is None:
            return dag.StepLook("not-run", "not run")
        detail = step.state + (f" · {_duration(step.seconds)}" if step.seconds is not None else "")
        return dag.StepLook(_STATE_CSS.get(step.state, "unknown"), detail)
    return look


def serve(port: int, local_dir: Path) -> int:
    """Serves on 127.0.0.1:port until Ctrl-C or SIGTERM; says where the console is in the state folder."""
    import socket

    import uvicorn

    local_dir = Path(local_dir).resolve()
    app = build_app(local_dir)  # before the address is told: it answers as soon as it is
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError as error:
        listener.close()
        print(f"error: cannot listen on {HOST}:{port}: {error.strerror} (another console there? --port PORT)",
              file=sys.stderr)
        return 2
    listener.listen(128)  # connections wait from now on, before the server runs: the address below is good at once
    url = f"http://{HOST}:{listener.getsockname()[1]}"
    address_file = local_dir / ADDRESS_FILE
    if local_dir.is_dir():
        write_json_atomically(address_file, {"url": url, "pid": os.getpid()})
    print(f"local console on {url} (read-only, state in {local_dir}); Ctrl-C stops it", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    # uvicorn stops on SIGTERM or Ctrl-C, then raises the signal again with the handlers it found: these let the
    # address file go before the process does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        try:
            if json.loads(address_file.read_text()).get("pid") == os.getpid():
                address_file.unlink()
        except (OSError, ValueError):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner.py console", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT}; "
                                                                        "0: any free port)")
    parser.add_argument("--local-dir", type=Path, default=SETTINGS.local_dir,
                        help="local mode's state folder (default: $MLOPS_LOCAL_DIR or local/)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0-65535")
    return serve(args.port, args.local_dir)
