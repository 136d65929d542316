"""What a Vertex AI endpoint keeps: its deployed models and traffic split, with Vertex's rules.

The rules (as Vertex AI applies them to `Endpoint.traffic_split`):
- keys are deployed model ids, values whole percentages 0-100 summing to 100;
  a deployed model missing from a split gets 0;
- deploy: the split may name `"0"`, the model being deployed in this call; with
  no split the new model gets 100 on an empty endpoint, and 0 otherwise (the
  current split stays);
- update: the whole split is given at once; `"0"` is not allowed;
- undeploy: refused while the model has traffic, unless the same call moves it
  (a new split without the model) or it is the last model (the split empties).

State lives in one JSON file (`endpoint.json` in the state directory), replaced
atomically (temporary file, fsync, rename, fsync of the directory): a crash
mid-change leaves the old state or the new one, never a mix. `EndpointStore`
serialises writers with a lock file. No HTTP and no TensorFlow here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.model_inputs import INPUT_SPEC_FILE
from contract.paths import DEFAULT_LOCAL_DIR, LOCAL_DIR_ENV
from storage.local_files import file_lock, write_json_atomically


def default_state_dir() -> Path:
    """Local mode's endpoint, where the deploy step puts it: `endpoint/` in MLOPS_LOCAL_DIR (default local/ in
    the project, whatever the working directory)."""
    return Path(os.environ.get(LOCAL_DIR_ENV) or DEFAULT_LOCAL_DIR) / "endpoint"
STATE_FILE = "endpoint.json"
ROUTER_FILE = "router.json"  # where a running router says where it listens
SERVE_LOCK = "serve.lock"  # held by the running router for its whole life, and by offline edits
NEW_MODEL_KEY = "0"  # Vertex's key for "the model this deploy call creates"


class EndpointError(ValueError):
    """A request the endpoint refuses; the message says which rule and what was given."""


class UndeployRefused(EndpointError):
    """Undeploying a model that still has traffic (Vertex: FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class DeployedModel:
    id: str
    model_uri: str
    display_name: str
    create_time: str


@dataclass(frozen=True)
class EndpointState:
    endpoint_id: str = "local"
    deployed_models: tuple[DeployedModel, ...] = ()
    # Every deployed model has an entry, 0 included, so a reader sees all of them.
    traffic_split: dict[str, int] = field(default_factory=dict)
    next_id: int = 1
    revision: int = 0

    def deployed_model(self, deployed_model_id: str) -> DeployedModel:
        for deployed in self.deployed_models:
            if deployed.id == deployed_model_id:
                return deployed
        raise EndpointError(f"no deployed model {deployed_model_id!r} on endpoint {self.endpoint_id!r}; "
                            f"deployed: {self.ids() or 'none'}")

    def ids(self) -> list[str]:
        return [deployed.id for deployed in self.deployed_models]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deployed_models"] = [asdict(deployed) for deployed in self.deployed_models]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointState:
        deployed_models = tuple(DeployedModel(**deployed) for deployed in data["deployed_models"])
        state = cls(endpoint_id=data["endpoint_id"], deployed_models=deployed_models,
                    traffic_split=dict(data["traffic_split"]), next_id=int(data["next_id"]),
                    revision=int(data["revision"]))
        if deployed_models:
            validate_split(state.traffic_split, set(state.ids()))
        return state


def validate_split(split: Any, deployed_ids: set[str], new_model: bool = False) -> dict[str, int]:
    """The split completed with a 0 for every deployed model not named, or EndpointError."""
    if not isinstance(split, Mapping) or not split:
        raise EndpointError(f"a traffic split is a non-empty map {{deployed model id: percent}}, "
                            f"got {split!r}")
    allowed = deployed_ids | ({NEW_MODEL_KEY} if new_model else set())
    for key, percent in split.items():
        if key not in allowed:
            hint = ' ("0" names the model being deployed, only in a deploy)' if key == NEW_MODEL_KEY else ""
            raise EndpointError(f"traffic split key {key!r} is not a deployed model id{hint}; "
                                f"expected one of {sorted(allowed)}")
        if type(percent) is not int or not 0 <= percent <= 100:
            raise EndpointError(f"traffic split value for {key!r} must be a whole percent 0-100, "
                                f"got {percent!r}")
    total = sum(split.values())
    if total != 100:
        raise EndpointError(f"traffic split percentages must sum to 100, got {total} in {dict(split)}")
    return {key: split.get(key, 0) for key in sorted(allowed, key=_id_order)}


def plan_deploy(state: EndpointState, model_uri: str, display_name: str,
                traffic_split: Mapping[str, int] | None = None) -> tuple[EndpointState, str]:
    """The state after deploying `model_uri`, and the new deployed model's id."""
    if not model_uri:
        raise EndpointError("model_uri is empty: expected the exported model directory or gs:// prefix")
    new_id = str(state.next_id)
    deployed_ids = set(state.ids())
    if traffic_split is None:
        split = dict(state.traffic_split) if deployed_ids else {}
        split[new_id] = 0 if deployed_ids else 100
    else:
        checked = validate_split(traffic_split, deployed_ids, new_model=True)
        split = {(new_id if key == NEW_MODEL_KEY else key): percent for key, percent in checked.items()}
    deployed = DeployedModel(id=new_id, model_uri=model_uri, display_name=display_name or f"model-{new_id}",
                             create_time=datetime.now(UTC).isoformat(timespec="seconds"))
    return replace(state, deployed_models=(*state.deployed_models, deployed),
                   traffic_split=_ordered(split), next_id=state.next_id + 1,
                   revision=state.revision + 1), new_id


def plan_update_split(state: EndpointState, traffic_split: Mapping[str, int]) -> EndpointState:
    if not state.deployed_models:
        raise EndpointError("the endpoint has no deployed models: deploy one first")
    split = validate_split(traffic_split, set(state.ids()))
    return replace(state, traffic_split=split, revision=state.revision + 1)


def plan_undeploy(state: EndpointState, deployed_model_id: str,
                  traffic_split: Mapping[str, int] | None = None) -> EndpointState:
    state.deployed_model(deployed_model_id)  # must exist
    remaining = tuple(deployed for deployed in state.deployed_models if deployed.id != deployed_model_id)
    remaining_ids = {deployed.id for deployed in remaining}
    if traffic_split is not None and remaining:
        kept = traffic_split.get(deployed_model_id, 0)
        if kept != 0:
            raise UndeployRefused(f"the split given with undeploy still sends {kept}% to deployed model "
                                  f"{deployed_model_id}")
        others = {key: percent for key, percent in traffic_split.items() if key != deployed_model_id}
        split = validate_split(others, remaining_ids)
    elif not remaining:
        split = {}  # the last model goes, and its traffic with it (as on Vertex)
    else:
        percent = state.traffic_split.get(deployed_model_id, 0)
        if percent:
            raise UndeployRefused(
                f"deployed model {deployed_model_id} still has {percent}% of the traffic: move it first "
                f"(update the split, or pass a split to undeploy), current split {state.traffic_split}")
        split = {key: value for key, value in state.traffic_split.items() if key != deployed_model_id}
    return replace(state, deployed_models=remaining, traffic_split=split, revision=state.revision + 1)


def _id_order(deployed_model_id: str) -> tuple[int, str]:
    return (int(deployed_model_id), "") if deployed_model_id.isdigit() else (1 << 62, deployed_model_id)


def _ordered(split: Mapping[str, int]) -> dict[str, int]:
    return {key: split[key] for key in sorted(split, key=_id_order)}


class EndpointStore:
    """The endpoint's state directory: `endpoint.json` and the lock that serialises its writers."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.path = self.state_dir / STATE_FILE

    def read(self) -> EndpointState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return EndpointState()
        try:
            return EndpointState.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise EndpointError(f"{self.path} is not a valid endpoint state ({error}): "
                                "restore it or remove the directory to start empty") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access for a read-change-write; blocks while another writer holds it."""
        with file_lock(self.state_dir / "state.lock"):
            yield

    def write(self, state: EndpointState) -> None:
        write_json_atomically(self.path, state.to_dict())

    def deploy(self, model_uri: str, display_name: str = "",
               traffic_split: Mapping[str, int] | None = None) -> str:
        with self.locked():
            state, new_id = plan_deploy(self.read(), model_uri, display_name, traffic_split)
            self.write(state)
        return new_id

    def update_split(self, traffic_split: Mapping[str, int]) -> EndpointState:
        with self.locked():
            state = plan_update_split(self.read(), traffic_split)
            self.write(state)
        return state

    def undeploy(self, deployed_model_id: str,
                 traffic_split: Mapping[str, int] | None = None) -> EndpointState:
        with self.locked():
            state = plan_undeploy(self.read(), deployed_model_id, traffic_split)
            self.write(state)
        return state


def check_model_uri(model_uri: str) -> None:
    """Refuse a local model directory that is not an exported model (gs:// is checked by the server)."""
    if model_uri.startswith("gs://"):
        return
    directory = Path(model_uri)
    missing = [name for name in ("saved_model.pb", INPUT_SPEC_FILE) if not (directory / name).is_file()]
    if missing:
        raise EndpointError(f"{model_uri!r} is not an exported model directory: missing {', '.join(missing)}")


def normalize_model_uri(model_uri: str) -> str:
    """gs:// prefixes as given; local paths made absolute, as model servers run from the project root."""
    return model_uri if model_uri.startswith("gs://") else str(Path(model_uri).expanduser().resolve())
