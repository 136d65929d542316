"""The local endpoint's API for code (the canary step) and for the CLI.

    endpoint = LocalEndpoint("local/endpoint")
    canary_id = endpoint.deploy("local/registry/.../model", "canary", {"0": 10, "1": 90})
    endpoint.stats()["1"]["errors"], endpoint.update_split({canary_id: 100}), endpoint.undeploy("1")

Calls mirror Vertex AI's Endpoint: `"0"` in a deploy's split is the model being
deployed; an update gives the whole split; an undeploy is refused while the
model has traffic. While `endpoint serve` runs, calls go through it over HTTP
(a deploy returns once the new model answers its health check); otherwise they
change the state directory, holding serve.lock so that no router starts
meanwhile, and the next `serve` starts what it holds. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from serving.endpoint import (
    ROUTER_FILE,
    SERVE_LOCK,
    EndpointError,
    EndpointStore,
    UndeployRefused,
    check_model_uri,
    default_state_dir,
    normalize_model_uri,
)


class LocalEndpoint:
    def __init__(self, state_dir: str | Path | None = None, deploy_timeout_s: float = 300.0) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.store = EndpointStore(self.state_dir)
        self.deploy_timeout_s = deploy_timeout_s

    @property
    def endpoint_id(self) -> str:
        return self.store.read().endpoint_id

    def router_url(self) -> str | None:
        """The URL of the router serving this state directory, if one answers."""
        try:
            url = json.loads((self.state_dir / ROUTER_FILE).read_text())["url"]
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return url if response.status == 200 else None
        except (OSError, ValueError, KeyError):
            return None

    def deploy(self, model_uri: str, display_name: str = "",
               traffic_split: Mapping[str, int] | None = None) -> str:
        """Deploy a model (local directory or gs:// prefix); returns its deployed model id."""
        model_uri = normalize_model_uri(model_uri)
        check_model_uri(model_uri)
        with self._router_or_offline() as url:
            if url is None:
                return self.store.deploy(model_uri, display_name, traffic_split)
            body: dict[str, Any] = {"deployedModel": {"model": model_uri, "displayName": display_name}}
            if traffic_split is not None:
                body["trafficSplit"] = dict(traffic_split)
            answer = self._call(url, "POST", ":deployModel", body, timeout_s=self.deploy_timeout_s)
            return answer["deployedModel"]["id"]

    def update_split(self, traffic_split: Mapping[str, int]) -> dict[str, int]:
        """Replace the whole traffic split; returns it as stored."""
        with self._router_or_offline() as url:
            if url is None:
                return self.store.update_split(traffic_split).traffic_split
            return self._call(url, "PATCH", "", {"trafficSplit": dict(traffic_split)})["trafficSplit"]

    def undeploy(self, deployed_model_id: str, traffic_split: Mapping[str, int] | None = None) -> dict[str, int]:
        """Undeploy a model without traffic (or move its traffic in the same call); returns the split."""
        body: dict[str, Any] = {"deployedModelId": deployed_model_id}
        if traffic_split is not None:
            body["trafficSplit"] = dict(traffic_split)
        with self._router_or_offline() as url:
            if url is None:
                return self.store.undeploy(deployed_model_id, traffic_split).traffic_split
            return self._call(url, "POST", ":undeployModel", body)["trafficSplit"]

    def describe(self) -> dict[str, Any]:
        """Deployed models (with their state while serving) and the traffic split."""
        url = self.router_url()
        if url:
            return self._call(url, "GET", "")
        state = self.store.read()
        return {"name": state.endpoint_id, "url": None, "revision": state.revision,
                "trafficSplit": state.traffic_split,
                "deployedModels": [{"id": deployed.id, "model": deployed.model_uri,
                                    "displayName": deployed.display_name, "createTime": deployed.create_time,
                                    "state": "not serving"} for deployed in state.deployed_models]}

    def stats(self, reset: bool = False) -> dict[str, dict[str, Any]]:
        """Per deployed model: requests, errors, clientErrors, errorRate, latencyMs p50/p95/p99.

        Counted by the running router since it started or since the last reset
        (`reset=True` returns the counts and starts afresh); empty when not serving.
        """
        url = self.router_url()
        if not url:
            return {}
        stats = self._call(url, "GET", "/v1/stats", absolute=True)["deployedModels"]
        if reset:
            self._call(url, "POST", "/v1/stats:reset", {}, absolute=True)
        return stats

    def predict(self, instances: list[Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One prediction request through the running endpoint: {"predictions", "deployedModelId"}."""
        url = self.router_url()
        if not url:
            raise EndpointError(f"no endpoint is serving from {self.state_dir}: "
                                "start it with `python runner.py endpoint serve`")
        return self._call(url, "POST", ":predict", {"instances": instances, "parameters": dict(parameters or {})})

    @contextlib.contextmanager
    def _router_or_offline(self) -> Iterator[str | None]:
        """The running router's URL, or None with serve.lock held so no router starts meanwhile."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / SERVE_LOCK, "a+") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                url = self.router_url()
                if not url:
                    raise EndpointError(f"an endpoint holds {self.state_dir} but does not answer yet "
                                        "(starting?): retry in a moment") from None
                yield url
                return
            try:
                yield None
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _call(self, url: str, method: str, path: str, body: Mapping[str, Any] | None = None,
              timeout_s: float = 30.0, absolute: bool = False) -> dict[str, Any]:
        """A call to the router: `path` follows /v1/endpoints/{id} unless `absolute`."""
        target = f"{url}{path}" if absolute else f"{url}/v1/endpoints/{self.endpoint_id}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(target, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                details = json.loads(error.read())["error"]
            except (ValueError, KeyError, TypeError):
                raise EndpointError(f"{method} {target}: HTTP {error.code}") from None
            if details.get("status") == "FAILED_PRECONDITION":
                raise UndeployRefused(details["message"]) from None
            raise EndpointError(details["message"]) from None
